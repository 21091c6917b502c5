namespace QrOrleans.Runtime;

// The provider SPI: what a storage backend (memory, PostgreSQL) must do. The runtime does the rest.

/// <summary>A grain's persisted state as bytes plus its version (the ETag; 1 after the first write).</summary>
public sealed record StoredGrain(byte[] State, long Etag);

/// <summary>Set (DueAt not null) or clear (DueAt null) one named reminder of the committing grain.</summary>
public sealed record ReminderChange(string Name, DateTimeOffset? DueAt, TimeSpan? Period);

/// <summary>A state change published on the grain's stream. Version is the grain's version after the commit.</summary>
public sealed record StreamEvent(GrainId Grain, long Version, string Payload);

/// <summary>What a turn changes besides the state; committed atomically with it.</summary>
public sealed record TurnEffects(IReadOnlyList<ReminderChange> Reminders, IReadOnlyList<StreamEvent> Events)
{
    public static readonly TurnEffects None = new([], []);
}

/// <summary>The stored version did not match: another turn (on this node or another) committed first.</summary>
public sealed class EtagConflictException(GrainId grain, long? expected)
    : Exception($"Grain {grain} was changed concurrently (expected version {expected?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"}).");

public interface IGrainStore
{
    Task<StoredGrain?> ReadAsync(GrainId id, CancellationToken ct);

    /// <summary>
    /// One atomic commit: the state (null deletes the grain) if the stored version still equals
    /// <paramref name="expectedEtag"/> (null = must not exist), together with the turn's reminder
    /// changes and stream events. Returns the new version; throws <see cref="EtagConflictException"/>.
    /// </summary>
    Task<long> CommitAsync(GrainId id, long? expectedEtag, byte[]? state, TurnEffects effects, CancellationToken ct);
}

/// <summary>A reminder claimed by this node. Seq identifies the exact row version that was claimed.</summary>
public sealed record DueReminder(GrainId Grain, string Name, DateTimeOffset DueAt, TimeSpan? Period, long Seq);

public interface IReminderTable
{
    /// <summary>
    /// Claims up to <paramref name="max"/> reminders due at <paramref name="now"/>. A claimed reminder is
    /// hidden for <paramref name="lease"/>; if it is not completed by then it becomes due again
    /// (at-least-once delivery).
    /// </summary>
    Task<IReadOnlyList<DueReminder>> ClaimDueAsync(DateTimeOffset now, TimeSpan lease, int max, CancellationToken ct);

    /// <summary>The handler succeeded: delete a one-shot reminder or schedule the next period, unless the
    /// grain re-set the reminder meanwhile (its Seq changed).</summary>
    Task CompleteAsync(DueReminder reminder, DateTimeOffset now, CancellationToken ct);

    /// <summary>The number of reminders due now and of those overdue by more than <paramref name="overdueBy"/>.</summary>
    Task<(int Due, int Overdue)> BacklogAsync(DateTimeOffset now, TimeSpan overdueBy, CancellationToken ct);
}

/// <summary>Either an event or a resync: "events may have been missed, re-read snapshots".</summary>
public readonly record struct StreamSignal(StreamEvent? Event)
{
    public static readonly StreamSignal Resync = new(null);
    public bool IsResync => Event is null;
}

public interface IStreamSource
{
    IAsyncEnumerable<StreamSignal> ListenAsync(CancellationToken ct);
}

/// <summary>A node of the cluster as the membership table knows it.</summary>
public sealed record SiloRecord(string Id, string Address, string Status, DateTimeOffset StartedAt, DateTimeOffset LastHeartbeatAt);

public static class SiloStatuses
{
    public const string Active = "active";
    public const string Stopped = "stopped";
    public const string Dead = "dead";
}

/// <summary>The membership table: who is in the cluster, and who stopped sending heartbeats.</summary>
public interface IMembershipTable
{
    Task JoinAsync(SiloRecord silo, CancellationToken ct);

    /// <summary>False if the silo is no longer active there (it was declared dead or left): it must re-join.</summary>
    Task<bool> HeartbeatAsync(string siloId, DateTimeOffset now, CancellationToken ct);

    Task LeaveAsync(string siloId, CancellationToken ct);

    /// <summary>Marks active silos whose last heartbeat is older than <paramref name="before"/> as dead.</summary>
    Task<int> MarkDeadAsync(DateTimeOffset before, CancellationToken ct);

    Task<IReadOnlyList<SiloRecord>> ListAsync(CancellationToken ct);
}

/// <summary>Counts for the cluster view: grains of one type grouped by a top-level string property of their state.</summary>
public interface IGrainStatistics
{
    Task<IReadOnlyDictionary<string, int>> CountByAsync(string grainType, string property, CancellationToken ct);
}

/// <summary>A lease granted to a holder: it is theirs until <see cref="ExpiresAt"/> unless renewed.</summary>
/// <param name="Epoch">The fencing epoch: every grant gets a higher one than any before it, so a write carrying an older one is stale.</param>
public sealed record LeaseGrant(string Key, long Epoch, DateTimeOffset ExpiresAt);

/// <summary>A lease row as the table holds it (for display). A free lease has no holder.</summary>
public sealed record LeaseRecord(string Key, string? Holder, long Epoch, DateTimeOffset? ExpiresAt);

/// <summary>
/// Leases with a fencing epoch, per grain type: one row per leasable grain (e.g. each linked account, whose live
/// platform side exactly one silo runs). Times come from the caller, as with reminders.
/// </summary>
public interface ILeaseTable
{
    /// <summary>Makes a grain leasable (idempotent): a free lease at epoch 0.</summary>
    Task RegisterAsync(string grainType, string key, CancellationToken ct);

    Task UnregisterAsync(string grainType, string key, CancellationToken ct);

    /// <summary>
    /// Grants <paramref name="holder"/> every lease whose holder let it expire, and up to <paramref name="maxFree"/>
    /// free ones; each grant gets a new epoch, higher than every epoch the table granted before (for any key).
    /// </summary>
    Task<IReadOnlyList<LeaseGrant>> AcquireAsync(string grainType, string holder, DateTimeOffset now, TimeSpan duration, int maxFree, CancellationToken ct);

    /// <summary>Extends the given leases if <paramref name="holder"/> still holds them at their epoch; returns those.</summary>
    Task<IReadOnlyList<LeaseGrant>> RenewAsync(string grainType, string holder, IReadOnlyCollection<LeaseGrant> held, DateTimeOffset now, TimeSpan duration, CancellationToken ct);

    /// <summary>Frees the given leases if still held at their epoch (the next grant gets a new epoch).</summary>
    Task ReleaseAsync(string grainType, string holder, IReadOnlyCollection<LeaseGrant> held, CancellationToken ct);

    Task<int> CountAsync(string grainType, CancellationToken ct);

    Task<IReadOnlyList<LeaseRecord>> ListAsync(string grainType, CancellationToken ct);
}
