using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Orleans.Concurrency;
using Orleans.Placement;
using QrOrleans.Gateway.Observability;
using QrOrleans.Grains;

namespace QrOrleans.Gateway.Dashboard;

/// <summary>
/// What one silo last published about itself: the state of its live activations (its <see cref="ActivationCensus"/>),
/// its recent figures and its totals. <see cref="Gateway"/> is the HTTP address of the gateway co-hosting it.
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.SiloStats")]
public sealed record SiloStats(
    [property: Id(0)] string SiloId,
    [property: Id(1)] DateTimeOffset PublishedAt,
    [property: Id(2)] string? Gateway,
    [property: Id(3)] IReadOnlyDictionary<string, IReadOnlyDictionary<string, int>> Census,
    [property: Id(4)] IReadOnlyList<SecondCount> Served,
    [property: Id(5)] IReadOnlyList<MinuteFigures> Minutes,
    [property: Id(6)] IReadOnlyList<AuditEvent> RecentAudit,
    [property: Id(7)] long TurnConflicts);

/// <summary>
/// One silo's published figures (key = the silo's address, <c>SiloAddress.ToParsableString()</c>). Written only by
/// that silo's <see cref="SiloStatsPublisher"/>, read by every node's dashboard and by GET /v1/cluster.
/// </summary>
[Alias("qrorleans.ISiloStatsGrain")]
public interface ISiloStatsGrain : IGrainWithStringKey
{
    [Alias("Publish")]
    Task PublishAsync(SiloStats stats, CancellationToken ct = default);

    [Alias("Get"), ReadOnly]
    Task<SiloStats?> GetAsync(CancellationToken ct = default);
}

/// <summary>
/// Holds the latest figures in memory only. The source of truth is the publishing silo's own memory, which it copies
/// here whole at least every <see cref="SiloStatsPublisher.Refresh"/>: a lost activation is refilled within seconds,
/// whereas persisting would cost a storage write per silo per second, and rows of dead silos would need deleting.
/// Placed on the silo that first calls it, normally the publisher's own, so publishing stays a local call and a
/// dead silo's figures go with it (the dashboard reads only silos that membership lists as Active).
/// </summary>
[PreferLocalPlacement]
public sealed class SiloStatsGrain : Grain, ISiloStatsGrain
{
    private SiloStats? _latest;

    public Task PublishAsync(SiloStats stats, CancellationToken ct)
    {
        if (_latest is null || stats.PublishedAt >= _latest.PublishedAt)
        {
            _latest = stats;
        }
        return Task.CompletedTask;
    }

    public Task<SiloStats?> GetAsync(CancellationToken ct) => Task.FromResult(_latest);
}

/// <summary>
/// Copies this silo's census and this node's figures into its stats grain: at most once a second, when something
/// changed, and every <see cref="Refresh"/> anyway. Runs where a silo is co-hosted; a gateway in the Client role has
/// no silo of its own to describe and publishes nothing.
/// </summary>
public sealed partial class SiloStatsPublisher(
    IServiceProvider services, IGrainFactory grains, NodeStats stats, TimeProvider time, ILogger<SiloStatsPublisher> log)
    : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    /// <summary>Bounds how long a stats activation lost with its host silo stays empty, and keeps it from idle collection.</summary>
    public static readonly TimeSpan Refresh = TimeSpan.FromSeconds(5);

    private static readonly string[] Kinds = [ActivationCensus.QrSession, ActivationCensus.LinkedAccount];

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (services.GetService<ILocalSiloDetails>() is not { } silo)
        {
            return;
        }
        var census = services.GetService<ActivationCensus>();
        var siloId = silo.SiloAddress.ToParsableString();
        var published = -1L;
        var publishedCensus = "";
        var publishedAt = DateTimeOffset.MinValue;
        using var timer = new PeriodicTimer(Interval, time);
        do
        {
            var changes = stats.Changes;
            var counts = Kinds.ToDictionary(k => k, k => census?.CountByState(k) ?? new Dictionary<string, int>());
            var countsKey = string.Join(";", counts.SelectMany(k => k.Value.OrderBy(s => s.Key, StringComparer.Ordinal)
                .Select(s => $"{k.Key}/{s.Key}={s.Value}")));
            var now = time.GetUtcNow();
            if (changes == published && countsKey == publishedCensus && now - publishedAt < Refresh)
            {
                continue;
            }
            try
            {
                await grains.GetGrain<ISiloStatsGrain>(siloId).PublishAsync(Build(siloId, now, counts), stoppingToken).ConfigureAwait(false);
                (published, publishedCensus, publishedAt) = (changes, countsKey, now);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogPublishFailed(log, e.GetType().Name); // the silo is starting or stopping: the next tick tries again
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    private SiloStats Build(string siloId, DateTimeOffset now, Dictionary<string, IReadOnlyDictionary<string, int>> census)
    {
        var (served, minutes, audit) = stats.Snapshot();
        var gateway = services.GetService<IServer>()?.Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault();
        return new SiloStats(siloId, now, gateway, census, served, minutes, audit, stats.TurnConflicts);
    }

    [LoggerMessage(LogLevel.Warning, "Publishing this silo's dashboard figures failed: {Error}")]
    private static partial void LogPublishFailed(ILogger log, string error);
}

/// <summary>A silo as Orleans membership lists it, with its published figures if it is active and has published.</summary>
public sealed record RosterSilo(
    string Id, string Address, string Status, DateTimeOffset StartedAt, DateTimeOffset LastHeartbeatAt, int Activations,
    SiloStats? Stats);

/// <param name="Self">This node's silo id, or null for a gateway in the Client role.</param>
/// <param name="Activations">Live activations per grain type, over all silos (Orleans' own statistics).</param>
public sealed record Roster(
    string? Self, IReadOnlyList<RosterSilo> Silos, IReadOnlyDictionary<string, int> Activations,
    IReadOnlyDictionary<string, IReadOnlyDictionary<string, int>> Census);

/// <summary>
/// The cluster as GET /v1/cluster and the dashboard show it: silos from Orleans membership (IManagementGrain), the
/// activations per grain type, and each active silo's published stats, with their censuses added up. Dead silos stay
/// listed while membership keeps them (until <see cref="GoneAfter"/>) but their figures are no longer counted.
/// </summary>
public sealed class ClusterRoster(IGrainFactory grains, IServiceProvider services, TimeProvider time)
{
    public static readonly TimeSpan GoneAfter = TimeSpan.FromMinutes(10);

    /// <summary>
    /// A silo killed a moment ago is still Active in membership until it is evicted (about 3 s): calls to it fail or
    /// hang until then. Its activations and figures are left out meanwhile rather than holding up the whole answer.
    /// </summary>
    private static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(2);

    public async Task<Roster> ReadAsync(CancellationToken ct)
    {
        var management = grains.GetGrain<IManagementGrain>(0);
        var hostsTask = management.GetDetailedHosts(onlyActive: false);
        var statisticsTask = OrDefaultAsync(management.GetSimpleGrainStatistics(), [], ct);
        var hosts = await hostsTask.ConfigureAwait(false);
        var now = time.GetUtcNow();
        var listed = hosts
            .Where(h => h.Status == SiloStatus.Active || now - Utc(h.IAmAliveTime) < GoneAfter)
            .OrderBy(h => Utc(h.StartTime))
            .ToList();
        var statsTasks = listed.Select(h => h.Status == SiloStatus.Active
            ? OrDefaultAsync(Task.Run(() => grains.GetGrain<ISiloStatsGrain>(h.SiloAddress.ToParsableString()).GetAsync(ct)), null, ct)
            : Task.FromResult<SiloStats?>(null)).ToList();
        var statistics = await statisticsTask.ConfigureAwait(false);
        var stats = await Task.WhenAll(statsTasks).ConfigureAwait(false);

        var perSilo = statistics.GroupBy(s => s.SiloAddress).ToDictionary(g => g.Key, g => g.Sum(s => s.ActivationCount));
        var silos = listed.Select((h, i) => new RosterSilo(
            h.SiloAddress.ToParsableString(), h.SiloAddress.Endpoint.ToString(), h.Status.ToString(), Utc(h.StartTime),
            Utc(h.IAmAliveTime), perSilo.GetValueOrDefault(h.SiloAddress), stats[i])).ToList();
        var activations = statistics.GroupBy(s => TypeName(s.GrainType), StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .ToDictionary(g => g.Key, g => g.Sum(s => s.ActivationCount));
        // This node's own silo is counted from its census as it is now, so a change made through this node shows at
        // once; the other silos' counts are as they last published them (at most a second old).
        var self = services.GetService<ILocalSiloDetails>()?.SiloAddress.ToParsableString();
        var local = services.GetService<ActivationCensus>();
        var census = new Dictionary<string, IReadOnlyDictionary<string, int>>();
        foreach (var kind in new[] { ActivationCensus.QrSession, ActivationCensus.LinkedAccount })
        {
            var sum = new Dictionary<string, int>();
            var counted = silos.Select(s => s.Id == self && s.Status == nameof(SiloStatus.Active) && local is not null
                ? local.CountByState(kind)
                : s.Stats?.Census.GetValueOrDefault(kind));
            foreach (var (state, n) in counted.SelectMany(c => c ?? new Dictionary<string, int>()))
            {
                sum[state] = sum.GetValueOrDefault(state) + n;
            }
            census[kind] = sum;
        }
        return new Roster(self, silos, activations, census);
    }

    private static async Task<T> OrDefaultAsync<T>(Task<T> call, T fallback, CancellationToken ct)
    {
        try
        {
            return await call.WaitAsync(AnswerTimeout, ct).ConfigureAwait(false);
        }
        catch (Exception) when (!ct.IsCancellationRequested)
        {
            return fallback;
        }
    }

    /// <summary>
    /// Orleans names a grain type "Namespace.Class,Assembly": the class's full name is enough to tell them apart
    /// (generic names, with their bracketed arguments, stay as Orleans gives them).
    /// </summary>
    private static string TypeName(string grainType) =>
        grainType.Contains('[', StringComparison.Ordinal) || grainType.IndexOf(',', StringComparison.Ordinal) is not (> 0 and var comma)
            ? grainType
            : grainType[..comma];

    /// <summary>Membership times are UTC DateTimes (a default one when a silo never wrote it).</summary>
    private static DateTimeOffset Utc(DateTime t) =>
        t == default ? DateTimeOffset.UnixEpoch : new DateTimeOffset(DateTime.SpecifyKind(t, DateTimeKind.Utc));
}
