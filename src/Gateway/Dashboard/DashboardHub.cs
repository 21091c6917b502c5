using Microsoft.AspNetCore.SignalR;

namespace QrOrleans.Gateway.Dashboard;

/// <summary>
/// SignalR hub at /hubs/dashboard: a signed-in dashboard receives <c>snapshot</c> at once and then every second.
/// Requests without a valid dashboard cookie never reach it (401 at negotiate and at connect); the check here is
/// a second line.
/// </summary>
public sealed class DashboardHub(DashboardFeed feed, DashboardSessions sessions) : Hub
{
    public override async Task OnConnectedAsync()
    {
        if (Context.GetHttpContext() is not { } http || !sessions.IsSignedIn(http))
        {
            Context.Abort();
            return;
        }
        await Groups.AddToGroupAsync(Context.ConnectionId, DashboardFeed.Group).ConfigureAwait(false);
        feed.Joined();
        Context.Items[DashboardFeed.Group] = true;
        await Clients.Caller.SendAsync("snapshot", await feed.CurrentAsync(Context.ConnectionAborted).ConfigureAwait(false))
            .ConfigureAwait(false);
    }

    public override Task OnDisconnectedAsync(Exception? exception)
    {
        if (Context.Items.Remove(DashboardFeed.Group))
        {
            feed.Left();
        }
        return Task.CompletedTask;
    }
}

/// <summary>
/// Builds the dashboard once a second while this node has dashboards connected, and sends it to all of them: the
/// cost is one query set per node per second, however many dashboards watch.
/// </summary>
public sealed partial class DashboardFeed(
    IServiceProvider services, IHubContext<DashboardHub> hub, TimeProvider time, ILogger<DashboardFeed> log) : BackgroundService
{
    public const string Group = "dashboard";
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    private readonly SemaphoreSlim _building = new(1, 1);
    private int _watchers;
    private long _seq;
    private DashboardSnapshot? _latest;

    public void Joined() => Interlocked.Increment(ref _watchers);

    public void Left() => Interlocked.Decrement(ref _watchers);

    /// <summary>The latest snapshot if it is fresh, else a new one.</summary>
    public async Task<DashboardSnapshot> CurrentAsync(CancellationToken ct)
    {
        var latest = Volatile.Read(ref _latest);
        return latest is not null && time.GetUtcNow() - latest.At < Interval ? latest : await BuildAsync(ct).ConfigureAwait(false);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            if (Volatile.Read(ref _watchers) <= 0)
            {
                continue;
            }
            try
            {
                var snapshot = await BuildAsync(stoppingToken).ConfigureAwait(false);
                await hub.Clients.Group(Group).SendAsync("snapshot", snapshot, stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogBuildFailed(log, e.GetType().Name); // the cluster is not answering: dashboards keep the last figures
            }
        }
    }

    private async Task<DashboardSnapshot> BuildAsync(CancellationToken ct)
    {
        await _building.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            var query = services.GetRequiredService<DashboardQuery>();
            var snapshot = await query.BuildAsync(Interlocked.Increment(ref _seq), ct).ConfigureAwait(false);
            Volatile.Write(ref _latest, snapshot);
            return snapshot;
        }
        finally
        {
            _building.Release();
        }
    }

    public override void Dispose()
    {
        _building.Dispose();
        base.Dispose();
    }

    [LoggerMessage(LogLevel.Warning, "Building the dashboard failed: {Error}")]
    private static partial void LogBuildFailed(ILogger log, string error);
}
