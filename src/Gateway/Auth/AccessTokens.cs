using System.Security.Claims;
using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using QrOrleans.QrSessions;
using QrOrleans.Users;

namespace QrOrleans.Gateway.Auth;

/// <summary>A signed-in phone or linked device: the user and the device its token belongs to.</summary>
public sealed record Caller(string UserId, string DeviceId);

/// <summary>
/// Short-lived ES256 access tokens. The key lives in a grain so every node of a cluster signs with it; its
/// public half is at /.well-known/jwks.json. A token is honoured only while its device is not revoked.
/// </summary>
public sealed class AccessTokens(IGrainFactory grains, GatewayOptions options)
{
    private const string DeviceClaim = "did";
    private const string Issuer = "qrorleans";
    private readonly JsonWebTokenHandler _handler = new() { SetDefaultTimesOnTokenCreation = false };
    private Task<(ECDsaSecurityKey Key, ECParameters Public, TokenValidationParameters Validation)>? _key;

    public TimeSpan Lifetime => options.AccessTokenLifetime;

    public async Task<string> IssueAsync(string userId, string deviceId, CancellationToken ct)
    {
        var (key, _, _) = await KeyAsync(ct).ConfigureAwait(false);
        var now = DateTime.UtcNow;
        return _handler.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = Issuer,
            IssuedAt = now,
            NotBefore = now,
            Expires = now + options.AccessTokenLifetime,
            Claims = new Dictionary<string, object> { ["sub"] = userId, [DeviceClaim] = deviceId, ["jti"] = Guid.NewGuid().ToString("N") },
            SigningCredentials = new SigningCredentials(key, SecurityAlgorithms.EcdsaSha256),
        });
    }

    /// <summary>The caller behind a bearer token, or null when the token is bad, expired or its device revoked.</summary>
    public async Task<Caller?> ValidateAsync(string token, CancellationToken ct)
    {
        var (_, _, validation) = await KeyAsync(ct).ConfigureAwait(false);
        var result = await _handler.ValidateTokenAsync(token, validation).ConfigureAwait(false);
        if (!result.IsValid
            || !result.Claims.TryGetValue("sub", out var sub) || sub is not string userId
            || !result.Claims.TryGetValue(DeviceClaim, out var did) || did is not string deviceId)
        {
            return null;
        }
        var active = await grains.GetGrain<IDeviceGrain>(deviceId).IsActiveAsync(userId, ct).ConfigureAwait(false);
        return active ? new Caller(userId, deviceId) : null;
    }

    public async Task<object> JwksAsync(CancellationToken ct)
    {
        var (key, p, _) = await KeyAsync(ct).ConfigureAwait(false);
        return new
        {
            keys = new[]
            {
                new { kty = "EC", crv = "P-256", use = "sig", alg = "ES256", kid = key.KeyId, x = Base64UrlEncoder.Encode(p.Q.X), y = Base64UrlEncoder.Encode(p.Q.Y) },
            },
        };
    }

    private Task<(ECDsaSecurityKey, ECParameters, TokenValidationParameters)> KeyAsync(CancellationToken ct) => _key ??= LoadAsync(ct);

    /// <summary>The key, its public half, and the validation rules built once (every bearer call uses them).</summary>
    private async Task<(ECDsaSecurityKey, ECParameters, TokenValidationParameters)> LoadAsync(CancellationToken ct)
    {
        try
        {
            var material = await grains.GetGrain<ISigningKeyGrain>("default").GetOrCreateAsync(ct).ConfigureAwait(false);
            var ecdsa = ECDsa.Create();
            ecdsa.ImportPkcs8PrivateKey(Convert.FromBase64String(material.PrivateKeyPkcs8Base64), out _);
            var key = new ECDsaSecurityKey(ecdsa) { KeyId = material.KeyId };
            return (key, ecdsa.ExportParameters(false), new TokenValidationParameters
            {
                ValidIssuer = Issuer,
                ValidateAudience = false,
                IssuerSigningKey = key,
                ValidAlgorithms = [SecurityAlgorithms.EcdsaSha256],
                ClockSkew = TimeSpan.FromSeconds(30),
            });
        }
        catch
        {
            _key = null; // a storage outage must not poison the key forever
            throw;
        }
    }
}

public static class CallerExtensions
{
    /// <summary>The bearer token of the request, or null.</summary>
    public static string? BearerToken(this HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        return header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) && header.Length > 7 ? header[7..].Trim() : null;
    }

    /// <summary>The signed-in phone making this request, or 401 unauthenticated.</summary>
    public static async Task<Caller> RequirePhoneAsync(this HttpContext context)
    {
        var token = context.Request.BearerToken() ?? throw Errors.Unauthenticated("Send 'Authorization: Bearer <access token>'.");
        var tokens = context.RequestServices.GetRequiredService<AccessTokens>();
        return await tokens.ValidateAsync(token, context.RequestAborted).ConfigureAwait(false)
            ?? throw Errors.Unauthenticated("The access token is invalid, expired or its device was signed out.");
    }

    /// <summary>The desktop token of the request, or 401 that says nothing about the session.</summary>
    public static string RequireDesktopToken(this HttpRequest request) =>
        request.BearerToken() ?? throw Errors.Unauthenticated("Send 'Authorization: Bearer <desktopToken>'.");

    /// <summary>Operator calls: the X-Api-Key header must equal the configured key.</summary>
    public static void RequireOperator(this HttpContext context)
    {
        var options = context.RequestServices.GetRequiredService<GatewayOptions>();
        var given = context.Request.Headers["X-Api-Key"].ToString();
        if (given.Length == 0 || !CryptographicOperations.FixedTimeEquals(
                System.Text.Encoding.UTF8.GetBytes(given), System.Text.Encoding.UTF8.GetBytes(options.AdminApiKey)))
        {
            throw Errors.Unauthenticated("Send the operator key in the X-Api-Key header.");
        }
    }
}
