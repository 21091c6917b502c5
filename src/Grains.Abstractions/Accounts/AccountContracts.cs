using System.Text.Json;

namespace QrOrleans.Accounts;

/// <summary>States of a linked account (after mautrix bridge states and WAHA session states).</summary>
public static class AccountStates
{
    public const string Unlinked = "unlinked";
    public const string Pairing = "pairing";
    public const string PairingTimedOut = "pairing_timed_out";
    public const string Connected = "connected";
    public const string TransientDisconnect = "transient_disconnect";
    public const string CoolingDown = "cooling_down";
    public const string BadCredentials = "bad_credentials";
    public const string Stopped = "stopped";

    public static readonly IReadOnlyList<string> All =
        [Unlinked, Pairing, PairingTimedOut, Connected, TransientDisconnect, CoolingDown, BadCredentials, Stopped];
}

public static class Platforms
{
    public const string QrOrleans = "qrorleans";
    public const string ILink = "ilink";
    public const string Sandbox = "sandbox";

    public static readonly IReadOnlyList<string> All = [QrOrleans, ILink, Sandbox];
}

/// <summary>How a platform failure is handled (ARCHITECTURE.md, Linked account).</summary>
[GenerateSerializer, Alias("qrorleans.ErrorClass")]
public enum ErrorClass
{
    /// <summary>Logged out / revoked / session expired: re-pairing needed; the owner is told once.</summary>
    Auth,

    /// <summary>Network blips, 5xx: back off and retry, no owner noise unless it lasts.</summary>
    Transient,

    /// <summary>Platform throttle or temporary ban: no calls until <see cref="PlatformException.Until"/>.</summary>
    Cooldown,

    /// <summary>Too many requests: honour <see cref="PlatformException.RetryAfter"/>.</summary>
    RateLimited,
}

/// <summary>
/// A classified failure from a connector. Every connector throws only this for platform errors. It stays on the
/// node that called the platform; what crosses to a grain is a <see cref="PlatformFailure"/>.
/// </summary>
public sealed class PlatformException(ErrorClass errorClass, string code, string message) : Exception(message)
{
    public ErrorClass Class { get; } = errorClass;
    public string Code { get; } = code;
    public DateTimeOffset? Until { get; init; }
    public TimeSpan? RetryAfter { get; init; }
}

/// <summary>What a connector needs to know about the account it works for (in process only, never sent to a grain).</summary>
/// <param name="Settings">The account's <c>connector</c> object from the API (may be Undefined).</param>
public sealed record ConnectorContext(string AccountId, string DisplayName, JsonElement Settings);

/// <summary>One QR code of a pairing ceremony, as the platform issued it.</summary>
/// <param name="QrContent">What the QR encodes (a URL for most platforms).</param>
/// <param name="Handle">Opaque: lets the connector poll this code's status.</param>
public sealed record PairingCode(string QrContent, DateTimeOffset ExpiresAt, string Handle)
{
    /// <summary>The code is a live credential and the handle holds a desktop token and a private key: never printed.</summary>
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("QrContent = (redacted), ExpiresAt = ").Append(ExpiresAt.ToString("O", System.Globalization.CultureInfo.InvariantCulture))
            .Append(", Handle = (redacted)");
        return true;
    }
}

public enum PairingProgress
{
    Waiting,
    Scanned,
    Confirmed,
    Expired,
}

/// <param name="NumberMatch">After a scan, the number the owner must pick on the phone, if the platform has one.</param>
/// <param name="Credentials">On Confirmed: the secret to seal and keep (never logged, never returned by the API).</param>
public sealed record PairingStatus(PairingProgress Progress, string? NumberMatch = null, string? Credentials = null)
{
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("Progress = ").Append(Progress).Append(", NumberMatch = ").Append(NumberMatch)
            .Append(", Credentials = ").Append(Credentials is null ? "null" : "(redacted)");
        return true;
    }
}

/// <param name="Credentials">Rotated credentials to store instead of the old ones, if the platform rotated them.</param>
public sealed record HealthResult(string? Credentials = null);

/// <summary>A platform: pairing by QR code, health checks, sending. Implementations do I/O only; state lives in the grain.</summary>
public interface IPlatformConnector
{
    string Platform { get; }

    Task<PairingCode> BeginPairingAsync(ConnectorContext context, CancellationToken ct);

    /// <summary>Waits up to <paramref name="wait"/> for news about <paramref name="code"/> (long-poll where the platform has one).</summary>
    Task<PairingStatus> PollPairingAsync(ConnectorContext context, PairingCode code, TimeSpan wait, CancellationToken ct);

    Task<HealthResult> CheckHealthAsync(ConnectorContext context, string credentials, CancellationToken ct);

    Task SendMessageAsync(ConnectorContext context, string credentials, string to, string text, CancellationToken ct);

    /// <summary>Best effort: tells the platform the session ends (unlink). Errors are ignored by the caller.</summary>
    Task LogoutAsync(ConnectorContext context, string credentials, CancellationToken ct);
}

/// <summary>
/// Seals credentials at rest: AES-256-GCM with a versioned key ring, the account id as associated data.
/// Export/import wrap the plaintext under a passphrase (PBKDF2-SHA256, ≥ 600,000 iterations).
/// Failures throw <see cref="GrainException"/> with codes <c>credentials_tampered</c>, <c>unknown_key_version</c>,
/// <c>wrong_passphrase</c>, <c>invalid_sealed</c>; nothing is changed by a failed call.
/// </summary>
public interface ICredentialVault
{
    string Seal(string accountId, string plaintext);

    string Unseal(string accountId, string sealedValue);

    /// <summary>True if <paramref name="sealedValue"/> is sealed under an older key version than the current one.</summary>
    bool NeedsResealing(string sealedValue);

    string Export(string accountId, string plaintext, string passphrase);

    /// <summary>The plaintext inside an exported string; the account id it was exported from must match.</summary>
    string Import(string accountId, string exported, string passphrase);
}
