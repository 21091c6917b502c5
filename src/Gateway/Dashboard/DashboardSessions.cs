using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using QrOrleans.Grains;

namespace QrOrleans.Gateway.Dashboard;

/// <summary>
/// The dashboard's sign-in cookie: "&lt;random session id + expiry&gt;.&lt;HMAC-SHA256&gt;", keyed by a key derived
/// (HKDF) from the operator key. Every node of a cluster shares the operator key, so any node verifies a cookie
/// another node issued, with nothing stored; the operator key itself is never in the cookie or a URL. Changing
/// the operator key signs every dashboard out.
/// </summary>
public sealed class DashboardSessions
{
    public const string CookieName = "qro_dashboard";
    public static readonly TimeSpan Lifetime = TimeSpan.FromHours(12);

    private const int IdBytes = 16;
    private readonly byte[] _macKey;
    private readonly byte[] _operatorKeyHash;
    private readonly TimeProvider _time;

    public DashboardSessions(GatewayOptions options, TimeProvider time)
    {
        var operatorKey = Encoding.UTF8.GetBytes(options.AdminApiKey);
        _macKey = HKDF.DeriveKey(HashAlgorithmName.SHA256, operatorKey, 32, info: "qrorleans dashboard session v1"u8.ToArray());
        _operatorKeyHash = SHA256.HashData(operatorKey);
        _time = time;
    }

    /// <summary>Compares hashes, so neither the key's content nor its length shows in the timing.</summary>
    public bool IsOperatorKey(string? candidate) =>
        !string.IsNullOrEmpty(candidate)
        && CryptographicOperations.FixedTimeEquals(SHA256.HashData(Encoding.UTF8.GetBytes(candidate)), _operatorKeyHash);

    public string Issue()
    {
        var payload = new byte[IdBytes + 8];
        RandomNumberGenerator.Fill(payload.AsSpan(0, IdBytes));
        BinaryPrimitives.WriteInt64BigEndian(payload.AsSpan(IdBytes), (_time.GetUtcNow() + Lifetime).ToUnixTimeSeconds());
        return Secrets.Base64Url(payload) + "." + Secrets.Base64Url(HMACSHA256.HashData(_macKey, payload));
    }

    public bool IsValid(string? cookie)
    {
        if (cookie is not { Length: > 0 and < 200 } || cookie.Split('.') is not [var p, var m]
            || !TryDecode(p, out var payload) || payload.Length != IdBytes + 8 || !TryDecode(m, out var mac))
        {
            return false;
        }
        return CryptographicOperations.FixedTimeEquals(HMACSHA256.HashData(_macKey, payload), mac)
            && BinaryPrimitives.ReadInt64BigEndian(payload.AsSpan(IdBytes)) > _time.GetUtcNow().ToUnixTimeSeconds();
    }

    /// <summary>Signed in: a valid dashboard cookie, or (scripts) the operator key in X-Api-Key.</summary>
    public bool IsSignedIn(HttpContext context) =>
        IsValid(context.Request.Cookies[CookieName]) || IsOperatorKey(context.Request.Headers["X-Api-Key"]);

    public void SignIn(HttpContext context) =>
        context.Response.Cookies.Append(CookieName, Issue(), new CookieOptions
        {
            HttpOnly = true,
            Secure = context.Request.IsHttps,
            SameSite = SameSiteMode.Strict,
            Path = "/",
            MaxAge = Lifetime,
            IsEssential = true,
        });

    public static void SignOut(HttpContext context) =>
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
