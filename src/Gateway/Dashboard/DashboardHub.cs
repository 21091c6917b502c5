using Microsoft.AspNetCore.SignalR;

namespace QrOrleans.Gateway.Dashboard;

/// <summary>
/// SignalR hub at /hubs/dashboard: a signed-in dashboard receives <c>snapshot</c> at once and then every second.
/// Requests without the cookie of a standing sign-in never reach it (401 at negotiate and at connect); the check
/// here is a second line. When the sign-in ends (a sign-out on any node, or its expiry) the connection is told
/// (<c>signedOut</c>) and closed, within about a second (<see cref="SignInWatch"/>).
/// </summary>
public sealed class DashboardHub(DashboardFeed feed, DashboardSessions sessions, SignInWatch watch, IHubContext<DashboardHub> hub) : Hub
{
    private const string Watched = "sign-in";

    /// <summary>How long the farewell may take before the connection is closed regardless.</summary>
    private static readonly TimeSpan FarewellTimeout = TimeSpan.FromSeconds(1);

    public override async Task OnConnectedAsync()
    {
        if (Context.GetHttpContext() is not { } http || !await sessions.IsSignedInAsync(http).ConfigureAwait(false))
        {
            Context.Abort();
            return;
        }
        if (!sessions.IsOperatorKey(http.Request.Headers["X-Api-Key"]) && sessions.SignInOf(http) is { } signIn)
        {
            var connection = Context;
            Context.Items[Watched] = watch.Watch(signIn, async () =>
            {
                // The page goes back to its form at once; closing the connection is what enforces the sign-out.
                using var timeout = new CancellationTokenSource(FarewellTimeout);
                try
                {
                    await hub.Clients.Client(connection.ConnectionId).SendAsync("signedOut", timeout.Token).ConfigureAwait(false);
                }
                finally
                {
                    connection.Abort();
                }
            });
        }
        await Groups.AddToGroupAsync(Context.ConnectionId, DashboardFeed.Group).ConfigureAwait(false);
        feed.Joined();
        Context.Items[DashboardFeed.Group] = true;
        await Clients.Caller.SendAsync("snapshot", await feed.CurrentAsync(Context.ConnectionAborted).ConfigureAwait(false))
            .ConfigureAwait(false);
    }

    public override Task OnDisconnectedAsync(Exception? exception)
    {
        if (Context.Items.TryGetValue(Watched, out var watched) && Context.Items.Remove(Watched))
        {
            (watched as IDisposable)?.Dispose();
        }
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
