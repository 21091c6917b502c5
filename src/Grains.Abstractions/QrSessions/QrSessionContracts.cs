using QrOrleans.Runtime;

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

/// <summary>What the desktop says about itself, plus what the gateway saw of its request.</summary>
public sealed record Requester(string ClientName, string ClientKind, string Browser, string Os, string Ip, DateTimeOffset CreatedAt);

public sealed record QrCodeView(string Url, DateTimeOffset ExpiresAt, int Rotation, int MaxRotations);

/// <summary>What the desktop (and its watchers) see. Never identifies the scanning user.</summary>
public sealed record QrSessionSnapshot(
    string SessionId,
    string State,
    long Version,
    DateTimeOffset ExpiresAt,
    QrCodeView? Qr,
    string? NumberMatch);

public sealed record SessionCreated(string SessionId, string DesktopToken, QrSessionSnapshot Snapshot);

public sealed record ScanResult(
    string SessionId,
    RequesterView Requester,
    IReadOnlyList<string> NumberChoices,
    DateTimeOffset ApproveBefore);

public sealed record RequesterView(
    string ClientName, string ClientKind, string Browser, string Os, string Ip, DateTimeOffset CreatedAt, bool SameNetwork);

/// <summary>Handed to the gateway by a successful claim: who approved, for which client. No tokens.</summary>
public sealed record ClaimGrant(string UserId, string DeviceId, string DeviceName, string DeviceKind, string Ip);

public interface IQrSessionGrain : IGrain
{
    /// <summary>Starts the session; the grain key must be a fresh server-generated id.</summary>
    Task<SessionCreated> CreateAsync(Requester requester, CancellationToken ct);

    /// <summary>The snapshot if <paramref name="desktopToken"/> is this session's; otherwise unauthenticated.</summary>
    Task<QrSessionSnapshot> GetSnapshotAsync(string desktopToken, CancellationToken ct);

    Task<ScanResult> ScanAsync(string qrSecret, string userId, string scannerIp, CancellationToken ct);

    Task<QrSessionSnapshot> ApproveAsync(string userId, string number, CancellationToken ct);

    Task<QrSessionSnapshot> RejectAsync(string userId, CancellationToken ct);

    Task<QrSessionSnapshot> CancelAsync(string desktopToken, CancellationToken ct);

    Task<ClaimGrant> ClaimAsync(string desktopToken, CancellationToken ct);
}

public static class GrainTypes
{
    public const string QrSession = "qr";
    public const string User = "user";
    public const string Username = "username";
    public const string Device = "device";
    public const string SigningKey = "signing-key";

    public static GrainId QrSessionId(string sessionId) => new(QrSession, sessionId);
}
