using System.Text.Json;
using System.Text.Json.Serialization;
using QrOrleans.Accounts;
using QrOrleans.KeyBinding;

// The namespace is not "…Connectors.QrOrleans": a namespace of that name would shadow the root namespace
// for every file under QrOrleans.Grains.Connectors that writes a fully qualified "QrOrleans.Accounts.…".

namespace QrOrleans.Grains.Connectors.QrOrleansServer;

/// <summary>
/// What a confirmed QrOrleans pairing yields, stored (sealed) by the grain as one JSON string:
/// <c>{"v":1,"serverUrl":"https://…/","deviceId":"…","userId":"…","refreshToken":"…","key":"…"}</c>.
/// The refresh token rotates on every use, so every health check hands back a new value that must replace this one.
/// The device's DPoP private key lives in the same string, so the vault seals it with the token it is bound to and an
/// export carries both (a refresh token without its key is refused by the server).
/// </summary>
/// <param name="ServerUrl">The server the device belongs to (always with a trailing slash).</param>
/// <param name="DeviceId">The linked device: what the owner sees in their devices list and can revoke.</param>
/// <param name="UserId">The owner whose device this is.</param>
/// <param name="RefreshToken">The device's refresh token. Never logged, never in an exception message.</param>
/// <param name="Key">The P-256 private key the device's tokens are bound to (PKCS#8, base64url); null for a device
/// paired with a server that does not bind keys (its tokens are plain bearer tokens). Never logged.</param>
public sealed record QrOrleansCredentials(string ServerUrl, string DeviceId, string? UserId, string RefreshToken, string? Key = null)
{
    private const int CurrentVersion = 1;

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public string ToJson() => JsonSerializer.Serialize(new Stored(CurrentVersion, ServerUrl, DeviceId, UserId, RefreshToken, Key), Json);

    public QrOrleansCredentials WithRefreshToken(string refreshToken) => this with { RefreshToken = refreshToken };

    /// <summary>Reads stored credentials; anything unreadable means the account must pair again.</summary>
    public static QrOrleansCredentials Parse(string? credentials)
    {
        Stored? stored = null;
        if (!string.IsNullOrWhiteSpace(credentials))
        {
            try
            {
                stored = JsonSerializer.Deserialize<Stored>(credentials, Json);
            }
            catch (JsonException)
            {
                stored = null;
            }
        }
        if (stored is not { V: CurrentVersion, ServerUrl: { Length: > 0 } serverUrl, DeviceId: { Length: > 0 } deviceId, RefreshToken: { Length: > 0 } refreshToken }
            || !Uri.TryCreate(serverUrl, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http")
            || (stored.Key is not null && !IsUsableKey(stored.Key)))
        {
            throw new PlatformException(ErrorClass.Auth, "invalid_credentials",
                "The stored QrOrleans credentials are missing or unreadable; pair the account again.");
        }
        return new QrOrleansCredentials(serverUrl, deviceId, stored.UserId, refreshToken, stored.Key);
    }

    internal Uri Server => ServerUrls.WithTrailingSlash(new Uri(ServerUrl));

    /// <summary>The key the tokens are bound to, to sign this call's proofs with (null: an unbound device). Dispose it.</summary>
    internal DpopKey? OpenKey() => DpopKey.TryImport(Key);

    /// <summary>A record prints all its members by default; this one must never print the token or the key.</summary>
    public override string ToString() =>
        $"QrOrleansCredentials {{ ServerUrl = {ServerUrl}, DeviceId = {DeviceId}, RefreshToken = ***, Key = {(Key is null ? "none" : "***")} }}";

    private static bool IsUsableKey(string key)
    {
        using var opened = DpopKey.TryImport(key);
        return opened is not null;
    }

    private sealed record Stored(int V, string? ServerUrl, string? DeviceId, string? UserId, string? RefreshToken, string? Key = null);
}
