using QrOrleans.Gateway.Observability;
using QrOrleans.Grains;
using QrOrleans.QrSessions;

namespace QrOrleans.Gateway.Dashboard;

/// <param name="Status">As Orleans membership names it: Active, Joining, ShuttingDown, Dead…</param>
/// <param name="Gateway">The HTTP address of the gateway co-hosting this silo, if it published one.</param>
/// <param name="Activations">Live activations on this silo, all grain types (Orleans' statistics).</param>
public sealed record DashboardSilo(
    string Id, string Address, string Status, DateTimeOffset StartedAt, DateTimeOffset LastHeartbeatAt,
    double HeartbeatAgeSeconds, double ServedPerSecond, bool Self, string? Gateway, int Activations);

/// <summary>One minute of the whole cluster: transitions, completed ceremonies and latency percentiles (seconds).</summary>
public sealed record DashboardMinute(
    DateTimeOffset Minute, long Ceremonies, IReadOnlyDictionary<string, long> Transitions,
    double? CeremonyP50, double? CeremonyP99, double? NotifyP50, double? NotifyP99);

/// <summary>Over the whole window: completed ceremonies, their percentiles, and the totals of the active silos.</summary>
/// <param name="TurnConflicts">Grain calls refused for a stale ETag (InconsistentStateException) since each silo started.</param>
public sealed record DashboardTotals(
    int WindowMinutes, long Ceremonies, double? CeremonyP50, double? CeremonyP99, double? NotifyP50, double? NotifyP99,
    double ServedPerSecond, long TurnConflicts);

/// <param name="Count">Reminders registered in the cluster (Orleans' reminder table); null where this node cannot read it.</param>
public sealed record DashboardReminders(int? Count);

public sealed record DashboardAudit(
    DateTimeOffset At, string UserId, string Action, string Ip, string? Client, string? DeviceId, string? SessionId, string? Detail);

/// <param name="Sessions">Live QR-session activations by state, over the active silos.</param>
/// <param name="Activations">Live activations per grain type, over the cluster.</param>
public sealed record DashboardSnapshot(
    long Seq,
    DateTimeOffset At,
    string Self,
    IReadOnlyList<DashboardSilo> Silos,
    IReadOnlyDictionary<string, int> Sessions,
    IReadOnlyDictionary<string, int> Activations,
    IReadOnlyList<DashboardMinute> Minutes,
    DashboardTotals Totals,
    DashboardReminders Reminders,
    LinkedAccountsView Accounts,
    IReadOnlyList<DashboardAudit> Audit);

/// <summary>
/// Builds the dashboard from Orleans membership and grain statistics (<see cref="ClusterRoster"/>), each active
/// silo's stats grain, and Orleans' reminder table. Any node answers for the whole cluster.
/// </summary>
public sealed class DashboardQuery(ClusterRoster roster, IServiceProvider services, TimeProvider time, ILinkedAccountsSource accounts)
{
    public const int WindowMinutes = 10;
    private const int ServedWindowSeconds = 10;
    private const int AuditShown = 15;

    /// <summary>Reading the whole reminder table is a scan (one row per live session): at most this often.</summary>
    private static readonly TimeSpan ReminderCountAge = TimeSpan.FromSeconds(10);

    private (DateTimeOffset At, int? Count) _reminders = (DateTimeOffset.MinValue, null);

    public async Task<DashboardSnapshot> BuildAsync(long seq, CancellationToken ct)
    {
        var remindersTask = ReminderCountAsync();
        var cluster = await roster.ReadAsync(ct).ConfigureAwait(false);
        var now = time.GetUtcNow();

        var nowSecond = now.ToUnixTimeSeconds();
        double Served(SiloStats? s) => (s?.Served ?? [])
            .Where(c => c.Second >= nowSecond - ServedWindowSeconds && c.Second < nowSecond)
            .Sum(c => c.Count) / (double)ServedWindowSeconds;
        var siloViews = cluster.Silos.Select(s => new DashboardSilo(s.Id, s.Address, s.Status, s.StartedAt, s.LastHeartbeatAt,
            Math.Round(Math.Max(0, (now - s.LastHeartbeatAt).TotalSeconds), 1), Served(s.Stats), s.Id == cluster.Self,
            s.Stats?.Gateway, s.Activations)).ToList();

        var published = cluster.Silos.Select(s => s.Stats).OfType<SiloStats>().ToList();
        var accountsTask = accounts.GetAsync(ct);
        var nowMinute = nowSecond / 60;
        var windowCeremony = new Dictionary<int, long>();
        var windowNotify = new Dictionary<int, long>();
        var minutes = new List<DashboardMinute>();
        for (var minute = nowMinute - WindowMinutes + 1; minute <= nowMinute; minute++)
        {
            var transitions = new Dictionary<string, long>();
            var ceremony = new Dictionary<int, long>();
            var notify = new Dictionary<int, long>();
            foreach (var figures in published.SelectMany(s => s.Minutes).Where(m => m.Minute == minute))
            {
                foreach (var (state, count) in figures.Transitions)
                {
                    transitions[state] = transitions.GetValueOrDefault(state) + count;
                }
                LatencyBuckets.Merge(ceremony, figures.CeremonySeconds);
                LatencyBuckets.Merge(notify, figures.NotifySeconds);
            }
            LatencyBuckets.Merge(windowCeremony, ceremony);
            LatencyBuckets.Merge(windowNotify, notify);
            minutes.Add(new DashboardMinute(DateTimeOffset.FromUnixTimeSeconds(minute * 60), transitions.GetValueOrDefault(QrSessionStates.Completed),
                transitions, Round(LatencyBuckets.Quantile(ceremony, 0.5)), Round(LatencyBuckets.Quantile(ceremony, 0.99)),
                Round(LatencyBuckets.Quantile(notify, 0.5)), Round(LatencyBuckets.Quantile(notify, 0.99))));
        }

        var totals = new DashboardTotals(WindowMinutes, minutes.Sum(m => m.Ceremonies),
            Round(LatencyBuckets.Quantile(windowCeremony, 0.5)), Round(LatencyBuckets.Quantile(windowCeremony, 0.99)),
            Round(LatencyBuckets.Quantile(windowNotify, 0.5)), Round(LatencyBuckets.Quantile(windowNotify, 0.99)),
            siloViews.Sum(s => s.ServedPerSecond), published.Sum(s => s.TurnConflicts));

        var audit = published.SelectMany(s => s.RecentAudit)
            .OrderByDescending(a => a.Entry.At)
            .Take(AuditShown)
            .Select(a => new DashboardAudit(a.Entry.At, a.UserId, a.Entry.Action, a.Entry.Ip, a.Entry.Client, a.Entry.DeviceId,
                a.Entry.SessionId, a.Entry.Detail))
            .ToList();

        var sessions = cluster.Census[ActivationCensus.QrSession];
        return new DashboardSnapshot(seq, now, cluster.Self ?? "", siloViews,
            QrSessionStates.All.ToDictionary(s => s, s => sessions.GetValueOrDefault(s)),
            cluster.Activations, minutes, totals, new DashboardReminders(await remindersTask.ConfigureAwait(false)),
            await accountsTask.ConfigureAwait(false), audit);
    }

    /// <summary>
    /// Orleans keeps no backlog figure, only the reminders themselves: their number (ReadRows(0, 0) is the whole
    /// ring). A gateway in the Client role has no reminder table to read.
    /// </summary>
    private async Task<int?> ReminderCountAsync()
    {
        var (at, count) = _reminders;
        var now = time.GetUtcNow();
        if (now - at < ReminderCountAge || services.GetService<IReminderTable>() is not { } table)
        {
            return count;
        }
        try
        {
            count = (await table.ReadRows(0, 0).ConfigureAwait(false)).Reminders.Count;
        }
        catch (Exception)
        {
            // the reminder store is away for a moment: the dashboard keeps the last count rather than failing
        }
        _reminders = (now, count);
        return count;
    }

    private static double? Round(double? seconds) => seconds is { } s ? Math.Round(s, 4) : null;
}
