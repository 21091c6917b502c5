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
/// This node's listening to QR sessions, the way Orleans' GPSTracker sample does it: one <see cref="IQrSessionListener"/>
/// for the whole node, listed with each session a desktop here waits on (in the same call that checks the desktop's
/// token and reads the snapshot), and never unlisted: a session's listing ends with the session, and a change of a
/// session nobody here waits on any more is dropped on arrival.
/// The listing lives in the activation's memory, so when the cluster's membership changes (a dead silo's sessions
/// come back elsewhere, without it) every watched session is listed again, a few times while the cluster settles,
/// and every watcher re-reads its snapshot: a change of that window reaches its desktop a little late, never not at all.
/// </summary>
public sealed partial class SessionWatches(IClusterClient cluster, IServiceProvider services, ILogger<SessionWatches> log)
    : BackgroundService, IQrSessionListener
{
    /// <summary>The watchers of each session watched here; an array, replaced whole, so a change reads it without a lock.</summary>
    private readonly Dictionary<string, ISessionWatcher[]> _watches = [];
    private readonly object _referenceLock = new();
    private IQrSessionListener? _reference;

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
    /// This node's listener as the sessions address it: made once (no call), on first use, since the cluster client
    /// may not be connected while the node starts. The runtime holds an observer only weakly: this service keeps it alive.
    /// </summary>
    private IQrSessionListener Reference
    {
        get
        {
            if (Volatile.Read(ref _reference) is { } made)
            {
                return made;
            }
            lock (_referenceLock)
            {
                return _reference ??= cluster.CreateObjectReference<IQrSessionListener>(this);
            }
        }
    }

    /// <summary>
    /// Adds a watcher and answers the session's snapshot: the node is listed with the session by then, so no change
    /// after the snapshot is missed. A wrong token throws (401), and the watcher is gone again. Dispose the first
    /// result to leave.
    /// </summary>
    public async Task<(IAsyncDisposable Leave, QrSessionSnapshot Snapshot)> WatchAsync(
        string sessionId, string desktopToken, ISessionWatcher watcher, CancellationToken ct)
    {
        // Before the call: a change the session pushes while the answer is on its way finds the watcher (which keeps
        // only newer versions, so the answer and the change arrive in either order).
        Add(sessionId, watcher);
        try
        {
            var snapshot = await Grain(sessionId).WatchAsync(desktopToken, Reference, ct).ConfigureAwait(false);
            return (new Leave(this, sessionId, watcher), snapshot);
        }
        catch
        {
            Remove(sessionId, watcher);
            throw;
        }
    }

    private IQrSessionGrain Grain(string sessionId) => cluster.Grain<IQrSessionGrain>(sessionId);

    private void Add(string sessionId, ISessionWatcher watcher)
    {
        lock (_watches)
        {
            _watches[sessionId] = _watches.TryGetValue(sessionId, out var those) ? [.. those, watcher] : [watcher];
        }
    }

    private void Remove(string sessionId, ISessionWatcher watcher)
    {
        lock (_watches)
        {
            if (!_watches.TryGetValue(sessionId, out var those))
            {
                return;
            }
            var left = those.Where(w => w != watcher).ToArray();
            if (left.Length == 0)
            {
                _watches.Remove(sessionId);
            }
            else
            {
                _watches[sessionId] = left;
            }
        }
    }

    private ISessionWatcher[] WatchersOf(string sessionId)
    {
        lock (_watches)
        {
            return _watches.TryGetValue(sessionId, out var those) ? those : [];
        }
    }

    Task IQrSessionListener.ChangedAsync(QrSessionChanged change)
    {
        foreach (var w in WatchersOf(change.Snapshot.SessionId))
        {
            w.OnChanged(change);
        }
        return Task.CompletedTask;
    }

    Task IQrSessionListener.ListenAgainAsync(string sessionId)
    {
        _ = ListenAgainAsync([sessionId]);
        return Task.CompletedTask;
    }

    /// <summary>Lists this node again with each session (bringing back an activation that went away), then its watchers re-read.</summary>
    private async Task ListenAgainAsync(string[] sessionIds)
    {
        await Parallel.ForEachAsync(sessionIds, new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (sessionId, _) =>
        {
            if (WatchersOf(sessionId).Length == 0)
            {
                return; // nobody here waits on it any more
            }
            try
            {
                await Grain(sessionId).ListenAsync(Reference).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                // Still settling (the silo that held it is not yet declared dead): the next round lists it.
                LogListenAgainFailed(log, e);
            }
            Resync(sessionId);
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
        foreach (var sessionId in All())
        {
            Resync(sessionId);
        }
    }

    private string[] All()
    {
        lock (_watches)
        {
            return [.. _watches.Keys];
        }
    }

    private void Resync(string sessionId)
    {
        foreach (var w in WatchersOf(sessionId))
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

    private sealed class Leave(SessionWatches owner, string sessionId, ISessionWatcher watcher) : IAsyncDisposable
    {
        private int _left;

        public ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _left, 1) == 0)
            {
                owner.Remove(sessionId, watcher);
            }
            return ValueTask.CompletedTask;
        }
    }

    [LoggerMessage(LogLevel.Debug, "Listing this node again with a session failed; the next round tries again")]
    private static partial void LogListenAgainFailed(ILogger log, Exception e);
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
