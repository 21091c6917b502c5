using QrOrleans.Gateway.Observability;
using QrOrleans.Grains;
using QrOrleans.Runtime;
using QrOrleans.Silo.Runtime;

namespace QrOrleans.Gateway.Dashboard;

/// <summary>What one silo last published about itself: its recent figures and its runtime totals.</summary>
public sealed record SiloStatsState
{
    public required string SiloId { get; init; }
    public required DateTimeOffset PublishedAt { get; init; }
    public IReadOnlyList<SecondCount> Served { get; init; } = [];
    public IReadOnlyList<MinuteFigures> Minutes { get; init; } = [];
    public IReadOnlyList<AuditEvent> RecentAudit { get; init; } = [];
    public IReadOnlyList<PairingQr> PairingQrs { get; init; } = [];
    public long TurnConflicts { get; init; }
    public long RemindersDelivered { get; init; }
    public long RemindersFailed { get; init; }
}

/// <summary>
/// One silo's published figures (key = silo id). Written only by its own silo, so its turns never race; read by
/// every node's dashboard. A row whose silo stopped publishing deletes itself.
/// </summary>
public interface ISiloStatsGrain : IGrain
{
    Task PublishAsync(SiloStatsState stats, CancellationToken ct);

    Task<SiloStatsState?> GetAsync(CancellationToken ct);
}

public sealed class SiloStatsGrain(GrainId id, IGrainRuntime runtime) : Grain<SiloStatsState>(id, runtime), ISiloStatsGrain, IRemindable
{
    public const string TypeName = "silo-stats";

    /// <summary>Rows silent this long are of silos that are gone: nothing in them is still in any window.</summary>
    private static readonly TimeSpan Expiry = TimeSpan.FromMinutes(20);

    public Task PublishAsync(SiloStatsState stats, CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            if (turn.State is null)
            {
                turn.SetReminder("expire", turn.Now + Expiry, Expiry);
            }
            turn.State = stats;
            return true;
        }, ct);

    public async Task<SiloStatsState?> GetAsync(CancellationToken ct) => (await ReadAsync(ct).ConfigureAwait(false))?.State;

    public Task ReceiveReminderAsync(string name, DateTimeOffset dueAt, CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            if (turn.State is { } s && s.PublishedAt < turn.Now - Expiry)
            {
                turn.State = null;
            }
            return true;
        }, ct);
}

/// <summary>
/// Copies this node's figures into its stats row: at most once a second, when they changed, and every 30 s
/// anyway so the runtime totals stay current. One small write per node; no node ever calls another.
/// </summary>
public sealed partial class SiloStatsPublisher(
    IGrainFactory grains, NodeStats stats, SiloIdentity silo, GrainRuntime runtime, ReminderService reminders,
    TimeProvider time, ILogger<SiloStatsPublisher> log) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan Refresh = TimeSpan.FromSeconds(30);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var published = -1L;
        var publishedAt = DateTimeOffset.MinValue;
        using var timer = new PeriodicTimer(Interval, time);
        do
        {
            var changes = stats.Changes;
            var now = time.GetUtcNow();
            if (changes == published && now - publishedAt < Refresh)
            {
                continue;
            }
            try
            {
                await PublishAsync(now, stoppingToken).ConfigureAwait(false);
                (published, publishedAt) = (changes, now);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogPublishFailed(log, e.GetType().Name); // the database is restarting: the next tick tries again
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    public Task PublishAsync(DateTimeOffset now, CancellationToken ct)
    {
        var (served, minutes, audit, pairingQrs) = stats.Snapshot();
        return grains.GetGrain<ISiloStatsGrain>(silo.Id).PublishAsync(new SiloStatsState
        {
            SiloId = silo.Id,
            PublishedAt = now,
            Served = served,
            Minutes = minutes,
            RecentAudit = audit,
            PairingQrs = pairingQrs,
            TurnConflicts = runtime.ConflictRetries,
            RemindersDelivered = reminders.Delivered,
            RemindersFailed = reminders.Failed,
        }, ct);
    }

    [LoggerMessage(LogLevel.Warning, "Publishing this silo's dashboard figures failed: {Error}")]
    private static partial void LogPublishFailed(ILogger log, string error);
}
