namespace QrOrleans.Audit;

/// <summary>What happened, in the words the user's "Recent sign-ins and devices" list and the operator's query use.</summary>
public static class AuditActions
{
    /// <summary>The user's phone scanned a sign-in code (the desktop named in <see cref="AuditEntry.Client"/> is asking).</summary>
    public const string QrScanned = "qr_scanned";

    public const string QrApproved = "qr_approved";

    /// <summary>Rejected on the phone, or a wrong number was picked (<see cref="AuditEntry.Detail"/> says which).</summary>
    public const string QrRejected = "qr_rejected";

    /// <summary>The approved desktop claimed its tokens: a new linked device (a sign-in).</summary>
    public const string DeviceLinked = "device_linked";

    public const string DeviceRevoked = "device_revoked";

    /// <summary>A rotated refresh token came back: the device was signed out as a precaution.</summary>
    public const string RefreshTokenReused = "refresh_token_reused";

    public static readonly IReadOnlyList<string> All = [QrScanned, QrApproved, QrRejected, DeviceLinked, DeviceRevoked, RefreshTokenReused];
}

/// <summary>
/// One audit event of a user. Never holds a token, a QR secret or a credential: only who (the acting device),
/// when, from where (IP) and with what (client), plus the session or device it concerns.
/// </summary>
/// <param name="At">Stamped by the audit grain when it appends the entry.</param>
/// <param name="ActorDeviceId">The user's device that acted (the phone that scanned), when a device of the user acted.</param>
/// <param name="Client">The client that acted or that is being linked: "Firefox on Linux (browser)", "Chrome 120 on Android".</param>
/// <param name="DeviceId">The device concerned (linked, revoked), if any.</param>
/// <param name="SessionId">The QR session concerned, if any (the id alone grants nothing).</param>
[GenerateSerializer, Immutable, Alias("qrorleans.AuditEntry")]
public sealed record AuditEntry(
    [property: Id(0)] DateTimeOffset At,
    [property: Id(1)] string Action,
    [property: Id(2)] string Ip,
    [property: Id(3)] string? Client = null,
    [property: Id(4)] string? ActorDeviceId = null,
    [property: Id(5)] string? DeviceId = null,
    [property: Id(6)] string? SessionId = null,
    [property: Id(7)] string? Detail = null);

/// <summary>
/// The audit trail of one user (key = user id): appended to by the gateway after each successful QR or device
/// transition, kept for a configured time and bounded in size.
/// </summary>
[Alias("qrorleans.IAuditGrain")]
public interface IAuditGrain : IGrainWithStringKey
{
    /// <summary>Appends the entry (stamped with the grain's clock) and drops entries past retention or over the bound.</summary>
    [Alias("Append")]
    Task<AuditEntry> AppendAsync(AuditEntry entry, CancellationToken ct = default);

    /// <summary>
    /// Appends the entries a QR session kept (stamped when they happened), in time order among the others, once each: an
    /// entry already held (same session, action and time) is not appended again, so the session may send them again
    /// after a failure or a restart.
    /// </summary>
    [Alias("AppendSession")]
    Task AppendSessionAsync(IReadOnlyList<AuditEntry> entries, CancellationToken ct = default);

    /// <summary>Entries with <paramref name="from"/> ≤ At &lt; <paramref name="to"/> (either open), newest first, at most <paramref name="max"/>.</summary>
    [Alias("List")]
    Task<IReadOnlyList<AuditEntry>> ListAsync(DateTimeOffset? from, DateTimeOffset? to, int max, CancellationToken ct = default);
}
