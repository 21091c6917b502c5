using System.Buffers.Text;
using System.Text.Json;
using QrOrleans.Accounts;
using QrOrleans.KeyBinding;

namespace QrOrleans.Grains.Connectors.QrOrleansServer;

/// <summary>
/// What <see cref="PairingCode.Handle"/> carries for this platform: the server, the sign-in session and its desktop
/// token, the version and QR rotation the code was issued at, and the private key the session was created with
/// (<see cref="DpopKey.Export"/>; the claim must prove it). Encoded as <c>qro1.&lt;base64url JSON&gt;</c>.
/// The desktop token and the key are secrets: the handle must never be logged (<see cref="ToString"/> hides them).
/// </summary>
internal sealed record PairingHandle(
    string Server, string SessionId, string DesktopToken, long Version, int Rotation, DateTimeOffset ExpiresAt, string? Key = null)
{
    private const string Prefix = "qro1.";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public Uri ServerUri => new(Server);

    public string Encode() => Prefix + Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(this, Json));

    /// <summary>The handle, or null if it is not one this connector issued.</summary>
    public static PairingHandle? TryDecode(string? handle)
    {
        if (handle is null || !handle.StartsWith(Prefix, StringComparison.Ordinal))
        {
            return null;
        }
        try
        {
            var decoded = JsonSerializer.Deserialize<PairingHandle>(Base64Url.DecodeFromChars(handle.AsSpan(Prefix.Length)), Json);
            return decoded is { Server.Length: > 0, SessionId.Length: > 0, DesktopToken.Length: > 0 }
                   && Uri.TryCreate(decoded.Server, UriKind.Absolute, out _)
                ? decoded
                : null;
        }
        catch (Exception e) when (e is JsonException or FormatException)
        {
            return null;
        }
    }

    public override string ToString() => $"PairingHandle {{ Server = {Server}, SessionId = {SessionId}, DesktopToken = ***, Key = *** }}";
}
