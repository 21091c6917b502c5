using System.Security.Claims;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace QrOrleans.Gateway.Auth;

/// <summary>A signed-in phone or linked device: the user and the device its token belongs to.</summary>
public sealed record Caller(string UserId, string DeviceId)
{
    public const string UserClaim = "sub";
    public const string DeviceClaim = "did";

    /// <summary>The caller a validated access token names, or null when either claim is missing.</summary>
    public static Caller? From(ClaimsPrincipal? user) =>
        user?.FindFirst(UserClaim)?.Value is { Length: > 0 } userId && user.FindFirst(DeviceClaim)?.Value is { Length: > 0 } deviceId
            ? new Caller(userId, deviceId)
            : null;
}

/// <summary>
/// Short-lived ES256 access tokens. The key lives in a grain so every node of a cluster signs with it; its
/// public half is at /.well-known/jwks.json. JwtBearer validates them (<see cref="BearerAuthentication"/>).
/// </summary>
public sealed class AccessTokens(SigningKeys keys, GatewayOptions options)
{
    public const string Issuer = "qrorleans";
    public const string Audience = "qrorleans";
    private readonly JsonWebTokenHandler _handler = new() { SetDefaultTimesOnTokenCreation = false };

    public TimeSpan Lifetime => options.AccessTokenLifetime;

    /// <summary>The "tokenType" of an answer that carries an access token issued with that thumbprint (or none).</summary>
    public static string TokenType(string? keyThumbprint) => keyThumbprint is null ? "Bearer" : "DPoP";

    /// <param name="keyThumbprint">Binds the token to that key (cnf.jkt, RFC 9449 §6.1); null for a bearer token.</param>
    public async Task<string> IssueAsync(string userId, string deviceId, string? keyThumbprint, CancellationToken ct)
    {
        var key = await keys.GetAsync(ct).ConfigureAwait(false);
        var now = DateTime.UtcNow;
        var claims = new Dictionary<string, object> { [Caller.UserClaim] = userId, [Caller.DeviceClaim] = deviceId, ["jti"] = Guid.NewGuid().ToString("N") };
        if (keyThumbprint is not null)
        {
            claims["cnf"] = new Dictionary<string, object> { ["jkt"] = keyThumbprint };
        }
        return _handler.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = Issuer,
            Audience = Audience,
            IssuedAt = now,
            NotBefore = now,
            Expires = now + options.AccessTokenLifetime,
            Claims = claims,
            SigningCredentials = new SigningCredentials(key.Key, SecurityAlgorithms.EcdsaSha256),
        });
    }

    public async Task<object> JwksAsync(CancellationToken ct)
    {
        var key = await keys.GetAsync(ct).ConfigureAwait(false);
        var p = key.Public;
        return new
        {
            keys = new[]
            {
                new { kty = "EC", crv = "P-256", use = "sig", alg = "ES256", kid = key.Key.KeyId, x = Base64UrlEncoder.Encode(p.Q.X), y = Base64UrlEncoder.Encode(p.Q.Y) },
            },
        };
    }
}

public static class CallerExtensions
{
    /// <summary>The caller of an endpoint that requires <see cref="BearerAuthentication.Policy"/>.</summary>
    public static Caller Caller(this HttpContext context) =>
        Auth.Caller.From(context.User) ?? throw Errors.Unauthenticated(BearerAuthentication.MissingDetail);

    /// <summary>The desktop token of the request, or 401 that says nothing about the session.</summary>
    public static string RequireDesktopToken(this HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        return header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) && header.Length > 7
            ? header[7..].Trim()
            : throw Errors.Unauthenticated("Send 'Authorization: Bearer <desktopToken>'.");
    }

    /// <summary>Operator calls: the X-Api-Key header must equal the configured key.</summary>
    public static void RequireOperator(this HttpContext context)
    {
        var options = context.RequestServices.GetRequiredService<GatewayOptions>();
        var given = context.Request.Headers["X-Api-Key"].ToString();
        if (given.Length == 0 || !Grains.Secrets.FixedTimeEquals(given, options.AdminApiKey))
        {
            throw Errors.Unauthenticated("Send the operator key in the X-Api-Key header.");
        }
    }
}
