using System.Text.Json.Serialization;

namespace QrOrleans.QrSessions;

public static class QrSessionStates
{
    public const string Pending = "pending";
    public const string Scanned = "scanned";
    public const string Approved = "approved";
    public const string Completed = "completed";
    public const string Rejected = "rejected";
    public const string Cancelled = "cancelled";
    public const string Expired = "expired";

    public static readonly IReadOnlyList<string> All = [Pending, Scanned, Approved, Completed, Rejected, Cancelled, Expired];

    public static bool IsTerminal(string state) => state is Completed or Rejected or Cancelled or Expired;
}

public static class ClientKinds
{
    public static readonly IReadOnlyList<string> All = ["browser", "cli", "agent", "device"];
}

/// <summary>
/// What the desktop says about itself, plus what the gateway saw of its request. <see cref="KeyThumbprint"/> is the
/// RFC 7638 thumbprint of the public key it registered (null: an unkeyed session); its claim must prove that key.
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.Requester")]
public sealed record Requester(
    [property: Id(0)] string ClientName,
    [property: Id(1)] string ClientKind,
    [property: Id(2)] string Browser,
    [property: Id(3)] string Os,
    [property: Id(4)] string Ip,
    [property: Id(5)] DateTimeOffset CreatedAt,
    [property: Id(6)] string? KeyThumbprint = null);

[GenerateSerializer, Immutable, Alias("qrorleans.QrCodeView")]
public sealed record QrCodeView(
    [property: Id(0)] string Url,
    [property: Id(1)] DateTimeOffset ExpiresAt,
    [property: Id(2)] int Rotation,
    [property: Id(3)] int MaxRotations)
{
    /// <summary>The URL holds the code's secret: a snapshot printed in a log (Orleans messages, stream events) never shows it.</summary>
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("Url = (redacted), ExpiresAt = ").Append(ExpiresAt).Append(", Rotation = ").Append(Rotation)
            .Append(", MaxRotations = ").Append(MaxRotations);
        return true;
    }
}

/// <summary>
/// What the desktop (and its watchers) see. Never identifies the scanning user. <see cref="TraceParent"/> is the
/// ceremony's trace for the gateway that delivers the snapshot; it never leaves in JSON.
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.QrSessionSnapshot")]
public sealed record QrSessionSnapshot(
    [property: Id(0)] string SessionId,
    [property: Id(1)] string State,
    [property: Id(2)] long Version,
    [property: Id(3)] DateTimeOffset ExpiresAt,
    [property: Id(4)] QrCodeView? Qr,
    [property: Id(5)] string? NumberMatch,
    [property: Id(6), JsonIgnore] string? TraceParent = null);

[GenerateSerializer, Immutable, Alias("qrorleans.SessionCreated")]
public sealed record SessionCreated(
    [property: Id(0)] string SessionId,
    [property: Id(1)] string DesktopToken,
    [property: Id(2)] QrSessionSnapshot Snapshot)
{
    /// <summary>Orleans prints a grain's answer in its Trace logs: never with the token, nor the code's URL (its secret).</summary>
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("SessionId = ").Append(SessionId).Append(", DesktopToken = (redacted), State = ").Append(Snapshot.State);
        return true;
    }
}

[GenerateSerializer, Immutable, Alias("qrorleans.ScanResult")]
public sealed record ScanResult(
    [property: Id(0)] string SessionId,
    [property: Id(1)] RequesterView Requester,
    [property: Id(2)] IReadOnlyList<string> NumberChoices,
    [property: Id(3)] DateTimeOffset ApproveBefore);

[GenerateSerializer, Immutable, Alias("qrorleans.RequesterView")]
public sealed record RequesterView(
    [property: Id(0)] string ClientName,
    [property: Id(1)] string ClientKind,
    [property: Id(2)] string Browser,
    [property: Id(3)] string Os,
    [property: Id(4)] string Ip,
    [property: Id(5)] DateTimeOffset CreatedAt,
    [property: Id(6)] bool SameNetwork);

/// <summary>
/// Handed to the gateway by a successful claim: who approved, for which client. A begun claim
/// (<see cref="IQrSessionGrain.BeginClaimAsync"/>) also carries the device's fresh refresh token, the grant's id to
/// confirm it with, and the thumbprint the device's tokens are bound to.
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.ClaimGrant")]
public sealed record ClaimGrant(
    [property: Id(0)] string UserId,
    [property: Id(1)] string DeviceId,
    [property: Id(2)] string DeviceName,
    [property: Id(3)] string DeviceKind,
    [property: Id(4)] string Ip,
    [property: Id(5)] string? GrantId = null,
    [property: Id(6)] Users.DeviceSession? Session = null,
    [property: Id(7)] string? KeyThumbprint = null);

/// <summary>
/// A state change of a session, pushed to the nodes that listen to it: the version it reached and what the desktop
/// may see. Never a token, a QR secret's hash or the scanner's identity.
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.QrSessionChanged")]
public sealed record QrSessionChanged([property: Id(0)] long Version, [property: Id(1)] QrSessionSnapshot Snapshot);

/// <summary>One QR sign-in (key = the session id, ≥ 128 random bits generated by the gateway).</summary>
[Alias("qrorleans.IQrSessionGrain")]
public interface IQrSessionGrain : IGrainWithStringKey
{
    /// <summary>Starts the session; the grain key must be a fresh server-generated id.</summary>
    [Alias("Create")]
    Task<SessionCreated> CreateAsync(Requester requester, CancellationToken ct = default);

    /// <summary>The snapshot if <paramref name="desktopToken"/> is this session's; otherwise unauthenticated.</summary>
    [Alias("GetSnapshot")]
    Task<QrSessionSnapshot> GetSnapshotAsync(string desktopToken, CancellationToken ct = default);

    /// <param name="phone">Who scanned, for the user's audit trail (null: nothing to record, as in a grain test).</param>
    [Alias("Scan")]
    Task<ScanResult> ScanAsync(string qrSecret, string userId, string scannerIp, PhoneActor? phone = null, CancellationToken ct = default);

    [Alias("Approve")]
    Task<QrSessionSnapshot> ApproveAsync(string userId, string number, PhoneActor? phone = null, CancellationToken ct = default);

    [Alias("Reject")]
    Task<QrSessionSnapshot> RejectAsync(string userId, PhoneActor? phone = null, CancellationToken ct = default);

    [Alias("Cancel")]
    Task<QrSessionSnapshot> CancelAsync(string desktopToken, CancellationToken ct = default);

    /// <summary>
    /// The claim in one step: approved → completed, device id chosen, nothing minted (an unkeyed session only). The
    /// gateway uses <see cref="BeginClaimAsync"/> and <see cref="ConfirmClaimAsync"/>, which survive a crash between.
    /// </summary>
    [Alias("Claim")]
    Task<ClaimGrant> ClaimAsync(string desktopToken, CancellationToken ct = default);

    /// <summary>
    /// Starts (or, after a failure, restarts) handing out the session's grant: checks the key binding
    /// (<paramref name="proofThumbprint"/> = the thumbprint of a verified DPoP proof, null without one) before anything
    /// changes, records the device id (kept across retries) and a new grant id, and registers the device with the user,
    /// which issues a fresh refresh token (a retry's token replaces the undelivered one). The session stays approved
    /// until <see cref="ConfirmClaimAsync"/>, and the claim window still applies.
    /// </summary>
    [Alias("BeginClaim")]
    Task<ClaimGrant> BeginClaimAsync(string desktopToken, string? proofThumbprint, CancellationToken ct = default);

    /// <summary>
    /// The grant <paramref name="grantId"/> was delivered: approved → completed. Only the latest begun grant confirms
    /// (an older one's refresh token was replaced); confirming it again is a no-op.
    /// </summary>
    /// <param name="desktopIp">Where the claim came from: the linked device's entry in the user's audit trail says so.</param>
    [Alias("ConfirmClaim")]
    Task<QrSessionSnapshot> ConfirmClaimAsync(string desktopToken, string grantId, string? desktopIp = null, CancellationToken ct = default);

    /// <summary>
    /// A desktop starts waiting on this node, in one call: checks <paramref name="desktopToken"/>, lists the node's
    /// <paramref name="listener"/> (idempotent: a node has one for all its sessions) and answers the snapshot, so a change
    /// after the answer always reaches the node. A node is never unlisted: the listing ends with the session.
    /// </summary>
    [Alias("Watch")]
    Task<QrSessionSnapshot> WatchAsync(string desktopToken, IQrSessionListener listener, CancellationToken ct = default);

    /// <summary>
    /// Lists <paramref name="listener"/> again without a token: a node that is already waiting on the session doubts
    /// its listing (the activation moved, the cluster's membership changed). Idempotent.
    /// </summary>
    [Alias("Listen")]
    Task ListenAsync(IQrSessionListener listener, CancellationToken ct = default);
}

/// <summary>
/// The phone that acted, as the user's audit trail names it: the device, the client it ran in ("Chrome 120 on
/// Android") and its IP. The session keeps the entries it makes of it and hands them to the trail once it ends.
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.PhoneActor")]
public sealed record PhoneActor(
    [property: Id(0)] string DeviceId,
    [property: Id(1)] string Client,
    [property: Id(2)] string Ip);

/// <summary>
/// A gateway node's one receiver of the changes of every session watched there (Orleans' GPSTracker shape): a grain
/// observer, so a change is one direct message from the session's activation to each node that waits on it (no stream
/// queue to poll, no subscription state to store). The change names its session. Listeners live only in the
/// activation's memory: a node listens again when the cluster's membership changes (the activation may have moved
/// with a dead silo) and when told to.
/// </summary>
[Alias("qrorleans.IQrSessionListener")]
public interface IQrSessionListener : IGrainObserver
{
    [Orleans.Concurrency.OneWay, Alias("Changed")]
    Task ChangedAsync(QrSessionChanged change);

    /// <summary>The activation is going away while the session still runs: listen again (which brings it back) and re-read.</summary>
    [Orleans.Concurrency.OneWay, Alias("ListenAgain")]
    Task ListenAgainAsync(string sessionId);
}
