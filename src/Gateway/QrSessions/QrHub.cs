using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.AspNetCore.SignalR;
using QrOrleans.Gateway.Observability;
using QrOrleans.Gateway.Problems;
using QrOrleans.QrSessions;

namespace QrOrleans.Gateway.QrSessions;

/// <summary>
/// SignalR hub at /hubs/qr. <c>Watch(sessionId, desktopToken)</c> sends <c>state</c> with the snapshot now and
/// on every change. Any node can serve any desktop: changes reach this node through its grain observer (SessionWatches).
/// </summary>
public sealed class QrHub(
    IGrainFactory grains, SessionWatches watches, IHubContext<QrHub> hub, CeremonyTelemetry telemetry, NodeStats stats, ILogger<QrHub> log) : Hub
{
    public async Task Watch(string sessionId, string desktopToken)
    {
        try
        {
            // As the HTTP API's requests, run again once after a write conflict (Problems.ConflictRetry).
            await ConflictRetry.RunAsync(async () =>
            {
                await WatchCoreAsync(sessionId, desktopToken);
                return true;
            }, () => true, stats);
        }
        catch (Exception e) when (e is not HubException && Problems.ProblemResponses.Unavailable(e))
        {
            // As the HTTP API's 503: retryable, and named, rather than SignalR's "unexpected error".
            throw new HubException("storage_unavailable: The cluster's storage is not reachable right now; try again shortly.");
        }
    }

    private async Task WatchCoreAsync(string sessionId, string desktopToken)
    {
        if (!SessionIds.IsWellFormed(sessionId))
        {
            throw new HubException("unauthenticated: a valid desktop token for this session is required.");
        }
        var grain = grains.Grain<IQrSessionGrain>(sessionId);
        var watcher = new Watcher(grain, desktopToken, hub, Context.ConnectionId, telemetry, log);
        IAsyncDisposable watch;
        QrSessionSnapshot snapshot;
        try
        {
            (watch, snapshot) = await watches.WatchAsync(sessionId, desktopToken, watcher, Context.ConnectionAborted);
        }
        catch (GrainException e)
        {
            throw new HubException($"{e.Code}: {e.Detail}");
        }
        var mine = Watches(Context);
        if (mine.TryRemove(sessionId, out var previous))
        {
            await previous.DisposeAsync();
        }
        mine[sessionId] = watch;
        watcher.Deliver(snapshot);
    }

    public async Task Unwatch(string sessionId)
    {
        if (Watches(Context).TryRemove(sessionId, out var watch))
        {
            await watch.DisposeAsync();
        }
    }

    public override async Task OnDisconnectedAsync(Exception? exception)
    {
        var mine = Watches(Context);
        foreach (var id in mine.Keys)
        {
            if (mine.TryRemove(id, out var watch))
            {
                await watch.DisposeAsync();
            }
        }
    }

    private static ConcurrentDictionary<string, IAsyncDisposable> Watches(HubCallerContext context) =>
        (ConcurrentDictionary<string, IAsyncDisposable>)(context.Items.TryGetValue(typeof(QrHub), out var items)
            ? items!
            : context.Items[typeof(QrHub)] = new ConcurrentDictionary<string, IAsyncDisposable>());

    /// <summary>Pushes newer snapshots to one connection; re-reads on resync.</summary>
    private sealed class Watcher(
        IQrSessionGrain grain, string desktopToken, IHubContext<QrHub> hub, string connectionId,
        CeremonyTelemetry telemetry, ILogger log) : ISessionWatcher
    {
        private long _sent;

        public void OnChanged(QrSessionChanged change) => Deliver(change.Snapshot);

        public void OnResync() => _ = ResyncAsync();

        public void Deliver(QrSessionSnapshot snapshot)
        {
            long sent;
            do
            {
                sent = Volatile.Read(ref _sent);
                if (snapshot.Version <= sent)
                {
                    return;
                }
            }
            while (Interlocked.CompareExchange(ref _sent, snapshot.Version, sent) != sent);
            _ = SendAsync(snapshot);
        }

        private async Task SendAsync(QrSessionSnapshot snapshot)
        {
            try
            {
                await hub.Clients.Client(connectionId).SendAsync("state", JsonSerializer.SerializeToElement(snapshot, GrainJson.Options)).ConfigureAwait(false);
                telemetry.DesktopNotified(snapshot, CeremonyTelemetry.SignalR);
            }
            catch (Exception e)
            {
                log.LogDebug(e, "Sending a snapshot to a watcher failed");
            }
        }

        private async Task ResyncAsync()
        {
            try
            {
                Deliver(await grain.GetSnapshotAsync(desktopToken, CancellationToken.None).ConfigureAwait(false));
            }
            catch (Exception e)
            {
                log.LogDebug(e, "Re-reading a snapshot after a resync failed");
            }
        }
    }
}
