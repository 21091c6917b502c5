using QrOrleans.QrSessions;

namespace QrOrleans.Gateway.QrSessions;

/// <summary>A waiting desktop on this node (a SignalR connection, an SSE response, a long-poll).</summary>
public interface ISessionWatcher
{
    /// <summary>A change of the session arrived. Must not block: it runs on the delivery of the grain's message.</summary>
    void OnChanged(QrSessionChanged change);

    /// <summary>Changes may have been missed (membership change, the activation moved): re-read the snapshot.</summary>
    void OnResync();
}

/// <summary>
/// This node's listening to QR sessions: one <see cref="IQrSessionListener"/> per watched session, listed with its
/// grain however many desktops on this node watch it, and unlisted when the last of them leaves.
/// The listing lives in the activation's memory, so when the cluster's membership changes (a dead silo's sessions
/// come back elsewhere, without it) every watched session is listed again, a few times while the cluster settles,
/// and every watcher re-reads its snapshot: a change of that window reaches its desktop a little late, never not at all.
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

    /// <summary>
    /// One watched session on this node. Its own listener reference (made locally, no call): a watch that ends while
    /// the next one for the same session begins can never unlist its successor.
    /// </summary>
    private sealed class Watch : IQrSessionListener
    {
        private readonly SessionWatches _owner;

        public Watch(SessionWatches owner, IClusterClient cluster, string sessionId)
        {
            _owner = owner;
            SessionId = sessionId;
            // The runtime holds an observer only weakly: this watch, kept in the table, keeps it alive.
            Reference = cluster.CreateObjectReference<IQrSessionListener>(this);
        }

        public string SessionId { get; }
        public IQrSessionListener Reference { get; }
        public ISessionWatcher[] Watchers = [];
        public Task? Listening;

        public Task ChangedAsync(QrSessionChanged change)
        {
            foreach (var w in Volatile.Read(ref Watchers))
            {
                w.OnChanged(change);
            }
            return Task.CompletedTask;
        }

        public Task ListenAgainAsync(string sessionId)
        {
            _ = _owner.ListenAgainAsync([this]);
            return Task.CompletedTask;
        }
    }

    /// <summary>
    /// Adds a watcher; the node is listed with the session when this returns, so a snapshot read afterwards misses no
    /// change. Dispose the result to leave.
    /// </summary>
    public async Task<IAsyncDisposable> WatchAsync(string sessionId, ISessionWatcher watcher)
    {
        Watch watch;
        lock (_watches)
        {
            if (!_watches.TryGetValue(sessionId, out watch!))
            {
                watch = new Watch(this, cluster, sessionId);
                _watches[sessionId] = watch;
            }
            watch.Watchers = [.. watch.Watchers, watcher];
            watch.Listening ??= Grain(sessionId).ListenAsync(watch.Reference);
        }
        try
        {
            await watch.Listening.ConfigureAwait(false);
        }
        catch
        {
            lock (_watches)
            {
                if (watch.Listening is { IsFaulted: true })
                {
                    watch.Listening = null; // the next watcher tries again
                }
            }
            await LeaveAsync(watch, watcher).ConfigureAwait(false);
            throw;
        }
        return new Leave(this, watch, watcher);
    }

    private IQrSessionGrain Grain(string sessionId) => cluster.Grain<IQrSessionGrain>(sessionId);

    private async Task LeaveAsync(Watch watch, ISessionWatcher watcher)
    {
        bool last;
        lock (_watches)
        {
            watch.Watchers = [.. watch.Watchers.Where(w => w != watcher)];
            last = watch.Watchers.Length == 0 && _watches.TryGetValue(watch.SessionId, out var current) && current == watch;
            if (last)
            {
                _watches.Remove(watch.SessionId);
            }
        }
        if (!last)
        {
            return;
        }
        try
        {
            if (watch.Listening is { IsCompletedSuccessfully: true })
            {
                await Grain(watch.SessionId).UnlistenAsync(watch.Reference).ConfigureAwait(false);
            }
        }
        catch (Exception e)
        {
            // The cluster is unreachable: the listing ends with the activation, and a message to a deleted
            // reference is dropped.
            LogUnlistenFailed(log, e);
        }
        finally
        {
            _ = DeleteLaterAsync(watch.Reference);
        }
    }

    /// <summary>
    /// A change the grain sent one-way just before it took the unlisting can arrive after the unlisting's answer;
    /// Orleans logs a message to a deleted reference as an Error ("Unexpected target grain"), about twice per
    /// thousand ceremonies under load. So the reference stays a little longer; its watch has no watchers left, and a
    /// late change reaches nobody.
    /// </summary>
    private async Task DeleteLaterAsync(IQrSessionListener reference)
    {
        await Task.Delay(LateChangeGrace).ConfigureAwait(false);
        cluster.DeleteObjectReference<IQrSessionListener>(reference);
    }

    private static readonly TimeSpan LateChangeGrace = TimeSpan.FromSeconds(2);

    /// <summary>Lists this node again with each session (bringing back an activation that went away), then its watchers re-read.</summary>
    private async Task ListenAgainAsync(Watch[] watches)
    {
        await Parallel.ForEachAsync(watches, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (watch, _) =>
        {
            lock (_watches)
            {
                if (!_watches.TryGetValue(watch.SessionId, out var current) || current != watch)
                {
                    return; // left meanwhile: its reference is deleted
                }
            }
            try
            {
                await Grain(watch.SessionId).ListenAsync(watch.Reference).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                // Still settling (the silo that held it is not yet declared dead): the next round lists it.
                LogListenAgainFailed(log, e);
            }
            Resync(watch);
        }).ConfigureAwait(false);
    }

    /// <summary>
    /// After a silo joins or dies, the activations of a dead silo come back elsewhere on their next call, and until
    /// every silo agrees that it is dead a call may still be routed to it. So each watched session is listed again now
    /// and a few times while that settles, and its watchers re-read each time.
    /// </summary>
    public void ResyncAfterMembershipChange(CancellationToken ct)
    {
        _ = Task.Run(async () =>
        {
            await ListenAgainAsync(All()).ConfigureAwait(false);
            foreach (var delay in RebalanceResyncs)
            {
                await Task.Delay(delay, ct).ConfigureAwait(false);
                await ListenAgainAsync(All()).ConfigureAwait(false);
            }
        }, ct);
    }

    private static readonly TimeSpan[] RebalanceResyncs = [TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(8)];

    /// <summary>Every watcher on this node re-reads its snapshot.</summary>
    public void ResyncAll()
    {
        foreach (var watch in All())
        {
            Resync(watch);
        }
    }

    private Watch[] All()
    {
        lock (_watches)
        {
            return [.. _watches.Values];
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

    [LoggerMessage(LogLevel.Debug, "Listing this node again with a session failed; the next round tries again")]
    private static partial void LogListenAgainFailed(ILogger log, Exception e);

    [LoggerMessage(LogLevel.Debug, "Unlisting this node from a session failed")]
    private static partial void LogUnlistenFailed(ILogger log, Exception e);
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
