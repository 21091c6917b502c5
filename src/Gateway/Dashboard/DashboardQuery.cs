using QrOrleans.Gateway.Observability;
using QrOrleans.QrSessions;
using QrOrleans.Runtime;
using QrOrleans.Silo.Runtime;

namespace QrOrleans.Gateway.Dashboard;

public sealed record DashboardSilo(
    string Id, string Address, string Status, DateTimeOffset StartedAt, DateTimeOffset LastHeartbeatAt,
    double HeartbeatAgeSeconds, double ServedPerSecond, bool Self);

/// <summary>One minute of the whole cluster: transitions, completed ceremonies and latency percentiles (seconds).</summary>
public sealed record DashboardMinute(
    DateTimeOffset Minute, long Ceremonies, IReadOnlyDictionary<string, long> Transitions,
    double? CeremonyP50, double? CeremonyP99, double? NotifyP50, double? NotifyP99);

/// <summary>Over the whole window: completed ceremonies, their percentiles, and the runtime totals of the listed silos.</summary>
public sealed record DashboardTotals(
    int WindowMinutes, long Ceremonies, double? CeremonyP50, double? CeremonyP99, double? NotifyP50, double? NotifyP99,
    double ServedPerSecond, long TurnConflicts, long RemindersDelivered, long RemindersFailed);

public sealed record DashboardReminders(int Due, int Overdue, int OverdueAfterSeconds);

public sealed record DashboardAudit(
    DateTimeOffset At, string UserId, string Action, string Ip, string? Client, string? DeviceId, string? SessionId, string? Detail);

public sealed record DashboardSnapshot(
    long Seq,
    DateTimeOffset At,
    string Self,
    IReadOnlyList<DashboardSilo> Silos,
    IReadOnlyDictionary<string, int> Sessions,
    IReadOnlyList<DashboardMinute> Minutes,
    DashboardTotals Totals,
    DashboardReminders Reminders,
    LinkedAccountsView Accounts,
    IReadOnlyList<DashboardAudit> Audit);

/// <summary>
/// Builds the dashboard from what every node shares: the membership table (silos and heartbeats), the grain table
/// (sessions by state), the reminder table (backlog) and each silo's published stats row. Any node answers for
/// the whole cluster without calling another.
/// </summary>
public sealed class DashboardQuery(
    IMembershipTable membership, IGrainStatistics statistics, IReminderTable reminders, IGrainFactory grains,
    SiloIdentity self, TimeProvider time, ILinkedAccountsSource accounts)
{
    public const int WindowMinutes = 10;
    private const int ServedWindowSeconds = 10;
    private const int AuditShown = 15;
    private static readonly TimeSpan OverdueAfter = TimeSpan.FromSeconds(5);

    /// <summary>Silos gone this long leave the list (their rows stay in the membership table).</summary>
    private static readonly TimeSpan GoneAfter = TimeSpan.FromMinutes(10);

    public async Task<DashboardSnapshot> BuildAsync(long seq, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var sessionsTask = statistics.CountByAsync(GrainTypes.QrSession, "state", ct);
        var backlogTask = reminders.BacklogAsync(now, OverdueAfter, ct);
        var silos = (await membership.ListAsync(ct).ConfigureAwait(false))
            .Where(s => s.Status == SiloStatuses.Active || now - s.LastHeartbeatAt < GoneAfter)
            .ToList();
        var stats = await Task.WhenAll(silos.Select(s => grains.GetGrain<ISiloStatsGrain>(s.Id).GetAsync(ct))).ConfigureAwait(false);
        var sessions = await sessionsTask.ConfigureAwait(false);
        var (due, overdue) = await backlogTask.ConfigureAwait(false);

        var nowSecond = now.ToUnixTimeSeconds();
        double Served(SiloStatsState? s) => (s?.Served ?? [])
            .Where(c => c.Second >= nowSecond - ServedWindowSeconds && c.Second < nowSecond)
            .Sum(c => c.Count) / (double)ServedWindowSeconds;
        var siloViews = silos.Select((s, i) => new DashboardSilo(s.Id, s.Address, s.Status, s.StartedAt, s.LastHeartbeatAt,
            Math.Round(Math.Max(0, (now - s.LastHeartbeatAt).TotalSeconds), 1), Served(stats[i]), s.Id == self.Id)).ToList();

        var published = stats.OfType<SiloStatsState>().ToList();
        var accountsTask = accounts.GetAsync(published.SelectMany(s => s.PairingQrs).ToList(), ct);
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
            siloViews.Sum(s => s.ServedPerSecond),
            published.Sum(s => s.TurnConflicts), published.Sum(s => s.RemindersDelivered), published.Sum(s => s.RemindersFailed));

        var audit = published.SelectMany(s => s.RecentAudit)
            .OrderByDescending(a => a.Entry.At)
            .Take(AuditShown)
            .Select(a => new DashboardAudit(a.Entry.At, a.UserId, a.Entry.Action, a.Entry.Ip, a.Entry.Client, a.Entry.DeviceId,
                a.Entry.SessionId, a.Entry.Detail))
            .ToList();

        return new DashboardSnapshot(seq, now, self.Id, siloViews,
            QrSessionStates.All.ToDictionary(s => s, s => sessions.GetValueOrDefault(s)),
            minutes, totals, new DashboardReminders(due, overdue, (int)OverdueAfter.TotalSeconds),
            await accountsTask.ConfigureAwait(false), audit);
    }

    private static double? Round(double? seconds) => seconds is { } s ? Math.Round(s, 4) : null;
}
