using Orleans.Streams;
using QrOrleans.QrSessions;

namespace QrOrleans.Gateway.QrSessions;

/// <summary>A waiting desktop on this node (a SignalR connection, an SSE response, a long-poll).</summary>
public interface ISessionWatcher
{
    /// <summary>A change of the session arrived on its stream. Must not block: it runs on the stream's delivery.</summary>
    void OnChanged(QrSessionChanged change);

    /// <summary>Events may have been missed (stream failure, membership change): re-read the snapshot.</summary>
    void OnResync();
}

/// <summary>
/// This node's subscriptions to QR session streams: one Orleans stream subscription per watched session, however
/// many desktops on this node watch it, released when the last of them leaves. When the cluster's membership
/// changes, or a stream reports an error, every watcher re-reads its snapshot: memory streams are not durable, so a
/// lost event may delay an update but never lose it.
/// </summary>
public sealed partial class SessionWatches(IClusterClient cluster, IServiceProvider services, ILogger<SessionWatches> log)
    : BackgroundService
{
    private readonly Dictionary<string, Watch> _watches = [];

    /// <summary>Sessions with at least one watcher on this node.</summary>
    public int Count
    {
        get
        {
            lock (_watches)
            {
                return _watches.Count;
            }
        }
    }

    private sealed class Watch(string sessionId)
    {
        public string SessionId { get; } = sessionId;
        public ISessionWatcher[] Watchers = [];
        public Task<StreamSubscriptionHandle<QrSessionChanged>>? Subscription;
    }

    /// <summary>
    /// Adds a watcher; the stream subscription exists when this returns, so a snapshot read afterwards misses no
    /// change. Dispose the result to leave.
    /// </summary>
    public async Task<IAsyncDisposable> WatchAsync(string sessionId, ISessionWatcher watcher)
    {
        Watch watch;
        lock (_watches)
        {
            if (!_watches.TryGetValue(sessionId, out watch!))
            {
                watch = new Watch(sessionId);
                _watches[sessionId] = watch;
            }
            watch.Watchers = [.. watch.Watchers, watcher];
            watch.Subscription ??= SubscribeAsync(watch);
        }
        try
        {
            await watch.Subscription.ConfigureAwait(false);
        }
        catch
        {
            lock (_watches)
            {
                if (watch.Subscription is { IsFaulted: true })
                {
                    watch.Subscription = null; // the next watcher tries again
                }
            }
            await LeaveAsync(watch, watcher).ConfigureAwait(false);
            throw;
        }
        return new Leave(this, watch, watcher);
    }

    private Task<StreamSubscriptionHandle<QrSessionChanged>> SubscribeAsync(Watch watch) =>
        Stream(watch.SessionId).SubscribeAsync(
            (change, _) =>
            {
                foreach (var w in Volatile.Read(ref watch.Watchers))
                {
                    w.OnChanged(change);
                }
                return Task.CompletedTask;
            },
            error =>
            {
                LogStreamError(log, error);
                Resync(watch);
                return Task.CompletedTask;
            });

    private async Task LeaveAsync(Watch watch, ISessionWatcher watcher)
    {
        Task<StreamSubscriptionHandle<QrSessionChanged>>? release = null;
        lock (_watches)
        {
            watch.Watchers = [.. watch.Watchers.Where(w => w != watcher)];
            if (watch.Watchers.Length == 0 && _watches.TryGetValue(watch.SessionId, out var current) && current == watch)
            {
                _watches.Remove(watch.SessionId);
                release = watch.Subscription;
            }
        }
        if (release is not null)
        {
            try
            {
                await (await release.ConfigureAwait(false)).UnsubscribeAsync().ConfigureAwait(false);
            }
            catch (Exception e)
            {
                // The subscription never came to be, or the cluster is unreachable: nothing more to release here.
                LogUnsubscribeFailed(log, e);
            }
        }
    }

    private IAsyncStream<QrSessionChanged> Stream(string sessionId) =>
        cluster.GetStreamProvider(OrleansNames.Streams).GetStream<QrSessionChanged>(StreamId.Create(OrleansNames.QrSessionStream, sessionId));

    /// <summary>
    /// After a silo joins or dies, memory stream queues move between silos for a few seconds, and an event published
    /// meanwhile can be lost. So watchers re-read now and again while that settles: a change of that window reaches
    /// its desktop a little late, never not at all.
    /// </summary>
    public void ResyncAfterMembershipChange(CancellationToken ct)
    {
        ResyncAll();
        _ = Task.Run(async () =>
        {
            foreach (var delay in RebalanceResyncs)
            {
                await Task.Delay(delay, ct).ConfigureAwait(false);
                ResyncAll();
            }
        }, ct);
    }

    private static readonly TimeSpan[] RebalanceResyncs = [TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(8)];

    /// <summary>Every watcher on this node re-reads its snapshot.</summary>
    public void ResyncAll()
    {
        Watch[] all;
        lock (_watches)
        {
            all = [.. _watches.Values];
        }
        foreach (var watch in all)
        {
            Resync(watch);
        }
    }

    private static void Resync(Watch watch)
    {
        foreach (var w in Volatile.Read(ref watch.Watchers))
        {
            w.OnResync();
        }
    }

    /// <summary>Follows membership where this node is a silo; a client gateway hears of it through <see cref="ClusterConnection"/>.</summary>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (services.GetService<IClusterMembershipService>() is not { } membership)
        {
            return;
        }
        try
        {
            long version = -1;
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(stoppingToken).ConfigureAwait(false))
            {
                if (version >= 0 && snapshot.Version.Value != version)
                {
                    ResyncAfterMembershipChange(stoppingToken);
                }
                version = snapshot.Version.Value;
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping
        }
    }

    private sealed class Leave(SessionWatches owner, Watch watch, ISessionWatcher watcher) : IAsyncDisposable
    {
        private int _left;

        public ValueTask DisposeAsync() =>
            Interlocked.Exchange(ref _left, 1) == 0 ? new ValueTask(owner.LeaveAsync(watch, watcher)) : ValueTask.CompletedTask;
    }

    [LoggerMessage(LogLevel.Warning, "A session stream failed; its watchers re-read their snapshots")]
    private static partial void LogStreamError(ILogger log, Exception e);

    [LoggerMessage(LogLevel.Debug, "Releasing a session stream subscription failed")]
    private static partial void LogUnsubscribeFailed(ILogger log, Exception e);
}

/// <summary>
/// In the Client role: a lost or regained connection to the cluster's gateways makes every watcher re-read.
/// Resolves the watches only when told: they depend on the cluster client, which is built with this observer.
/// </summary>
public sealed class ClusterConnection(IServiceProvider services) : IClusterConnectionStatusObserver
{
    public void NotifyClusterConnectionLost() => services.GetRequiredService<SessionWatches>().ResyncAll();

    public void NotifyGatewayCountChanged(int currentNumberOfGateways, int previousNumberOfGateways, bool connectionRecovered) =>
        services.GetRequiredService<SessionWatches>().ResyncAfterMembershipChange(CancellationToken.None);
}
