namespace QrOrleans.Dashboard;

/// <summary>
/// One sign-in of the dashboard, keyed by a hash of the id its cookie carries (never the id itself, so a grain id in
/// a log or a listing opens nothing). It exists in grain storage from the sign-in until the sign-out or the
/// cookie's end, so every node of the cluster, and a node after a restart, answers alike.
/// </summary>
[Alias("qrorleans.IDashboardSignInGrain")]
public interface IDashboardSignInGrain : IGrainWithStringKey
{
    /// <summary>Records the sign-in until <paramref name="expiresAt"/> (the cookie's end).</summary>
    [Alias("Begin")]
    Task BeginAsync(DateTimeOffset expiresAt, CancellationToken ct = default);

    /// <summary>True while the sign-in stands; an ended or expired one answers false and leaves nothing behind.</summary>
    [Alias("IsActive")]
    Task<bool> IsActiveAsync(CancellationToken ct = default);

    /// <summary>Signs out: the record, its expiry reminder and the activation go. Idempotent.</summary>
    [Alias("End")]
    Task EndAsync(CancellationToken ct = default);
}
