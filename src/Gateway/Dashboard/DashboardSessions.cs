using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using QrOrleans.Dashboard;
using QrOrleans.Grains;

namespace QrOrleans.Gateway.Dashboard;

/// <summary>
/// The dashboard's sign-ins. The cookie is "&lt;random sign-in id + expiry&gt;.&lt;HMAC-SHA256&gt;", keyed by a key
/// derived (HKDF) from the operator key, and it refers to a server-side record, the sign-in's grain
/// (<see cref="IDashboardSignInGrain"/>, in grain storage). A cookie counts only while both hold: the MAC (so a forged
/// cookie costs no grain call, and changing the operator key signs every dashboard out) and the record (so a
/// sign-out ends the sign-in on every node of the cluster at once, and it outlives a node's restart). The operator
/// key itself is never in the cookie or a URL.
/// </summary>
public sealed class DashboardSessions
{
    public const string CookieName = "qro_dashboard";
    public static readonly TimeSpan Lifetime = TimeSpan.FromHours(12);

    private const int IdBytes = 16;
    private readonly byte[] _macKey;
    private readonly byte[] _operatorKeyHash;
    private readonly IGrainFactory _grains;
    private readonly TimeProvider _time;

    public DashboardSessions(GatewayOptions options, IGrainFactory grains, TimeProvider time)
    {
        var operatorKey = Encoding.UTF8.GetBytes(options.AdminApiKey);
        _macKey = HKDF.DeriveKey(HashAlgorithmName.SHA256, operatorKey, 32, info: "qrorleans dashboard session v1"u8.ToArray());
        _operatorKeyHash = SHA256.HashData(operatorKey);
        _grains = grains;
        _time = time;
    }

    /// <summary>Compares hashes, so neither the key's content nor its length shows in the timing.</summary>
    public bool IsOperatorKey(string? candidate) =>
        !string.IsNullOrEmpty(candidate)
        && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(candidate)), _operatorKeyHash);

    /// <summary>
    /// The key of the sign-in grain the request's cookie refers to, if the cookie is authentic and unexpired (whether
    /// the sign-in still stands is the grain's answer); null otherwise.
    /// </summary>
    public string? SignInOf(HttpContext context)
    {
        var cookie = context.Request.Cookies[CookieName];
        if (cookie is not { Length: > 0 and < 200 } || cookie.Split('.') is not [var p, var m]
            || !TryDecode(p, out var payload) || payload.Length != IdBytes + 8 || !TryDecode(m, out var mac)
            || !CryptographicOperations.FixedTimeEquals(HMACSHA256.HashData(_macKey, payload), mac)
            || BinaryPrimitives.ReadInt64BigEndian(payload.AsSpan(IdBytes)) <= _time.GetUtcNow().ToUnixTimeSeconds())
        {
            return null;
        }
        // A hash of the id: the grain's key (which logs and listings may show) is no part of a cookie.
        return Convert.ToHexStringLower(SHA256.HashData(payload.AsSpan(0, IdBytes)));
    }

    /// <summary>Whether the sign-in <paramref name="signIn"/> (a key from <see cref="SignInOf"/>) still stands, on whichever node asks.</summary>
    public Task<bool> IsActiveAsync(string signIn, CancellationToken ct) =>
        _grains.GetGrain<IDashboardSignInGrain>(signIn).IsActiveAsync(ct);

    /// <summary>Signed in: the cookie of a standing sign-in, or (scripts) the operator key in X-Api-Key.</summary>
    public async Task<bool> IsSignedInAsync(HttpContext context) =>
        IsOperatorKey(context.Request.Headers["X-Api-Key"])
        || (SignInOf(context) is { } signIn && await IsActiveAsync(signIn, context.RequestAborted).ConfigureAwait(false));

    /// <summary>Records a new sign-in (until the cookie's end) and sets its cookie.</summary>
    public async Task SignInAsync(HttpContext context)
    {
        var payload = new byte[IdBytes + 8];
        RandomNumberGenerator.Fill(payload.AsSpan(0, IdBytes));
        var expiresAt = DateTimeOffset.FromUnixTimeSeconds((_time.GetUtcNow() + Lifetime).ToUnixTimeSeconds());
        BinaryPrimitives.WriteInt64BigEndian(payload.AsSpan(IdBytes), expiresAt.ToUnixTimeSeconds());
        var signIn = Convert.ToHexStringLower(SHA256.HashData(payload.AsSpan(0, IdBytes)));
        await _grains.GetGrain<IDashboardSignInGrain>(signIn).BeginAsync(expiresAt, context.RequestAborted).ConfigureAwait(false);
        context.Response.Cookies.Append(CookieName, Secrets.Base64Url(payload) + "." + Secrets.Base64Url(HMACSHA256.HashData(_macKey, payload)),
            new CookieOptions
            {
                HttpOnly = true,
                Secure = context.Request.IsHttps,
                SameSite = SameSiteMode.Strict,
                Path = "/",
                MaxAge = Lifetime,
                IsEssential = true,
            });
    }

    /// <summary>Ends the request's sign-in in the cluster (if it has one) and deletes the cookie; the key of the ended sign-in, or null.</summary>
    public async Task<string?> SignOutAsync(HttpContext context)
    {
        var signIn = SignInOf(context);
        if (signIn is not null)
        {
            await _grains.GetGrain<IDashboardSignInGrain>(signIn).EndAsync(context.RequestAborted).ConfigureAwait(false);
        }
        DeleteCookie(context);
        return signIn;
    }

    public static void DeleteCookie(HttpContext context) =>
        context.Response.Cookies.Delete(CookieName, new CookieOptions
        {
            HttpOnly = true, Secure = context.Request.IsHttps, SameSite = SameSiteMode.Strict, Path = "/",
        });

    private static bool TryDecode(string text, out byte[] bytes)
    {
        bytes = [];
        try
        {
            var padded = text.Replace('-', '+').Replace('_', '/');
            bytes = Convert.FromBase64String(padded + new string('=', (4 - padded.Length % 4) % 4));
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }
}
