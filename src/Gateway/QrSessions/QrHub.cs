using System.Text.Json;
using Microsoft.AspNetCore.SignalR;
using QrOrleans.Gateway.Observability;
using QrOrleans.QrSessions;
using QrOrleans.Runtime;

namespace QrOrleans.Gateway.QrSessions;

/// <summary>
/// SignalR hub at /hubs/qr. <c>Watch(sessionId, desktopToken)</c> sends <c>state</c> with the snapshot now and
/// on every change. Any node can serve any desktop: the events reach this node through the stream provider.
/// </summary>
public sealed class QrHub(
    IGrainFactory grains, IGrainStreams streams, IHubContext<QrHub> hub, CeremonyTelemetry telemetry, ILogger<QrHub> log) : Hub
{
    public async Task Watch(string sessionId, string desktopToken)
    {
        if (!SessionIds.IsWellFormed(sessionId))
        {
            throw new HubException("unauthenticated: a valid desktop token for this session is required.");
        }
        var grain = grains.GetGrain<IQrSessionGrain>(sessionId);
        var watcher = new Watcher(sessionId, grain, desktopToken, hub, Context.ConnectionId, telemetry, log);
        var subscription = streams.Subscribe(GrainTypes.QrSessionId(sessionId), watcher);
        QrSessionSnapshot snapshot;
        try
        {
            snapshot = await grain.GetSnapshotAsync(desktopToken, Context.ConnectionAborted).ConfigureAwait(false);
        }
        catch (GrainException e)
        {
            subscription.Dispose();
            throw new HubException($"{e.Code}: {e.Detail}");
        }
        if (Context.Items.Remove(sessionId, out var previous) && previous is IDisposable old)
        {
            old.Dispose();
        }
        Context.Items[sessionId] = subscription;
        watcher.Deliver(snapshot.Version, JsonSerializer.SerializeToElement(snapshot, GrainJson.Options));
    }

    public Task Unwatch(string sessionId)
    {
        if (Context.Items.Remove(sessionId, out var subscription) && subscription is IDisposable d)
        {
            d.Dispose();
        }
        return Task.CompletedTask;
    }

    public override Task OnDisconnectedAsync(Exception? exception)
    {
        foreach (var item in Context.Items.Values)
        {
            (item as IDisposable)?.Dispose();
        }
        Context.Items.Clear();
        return Task.CompletedTask;
    }

    /// <summary>Pushes newer snapshots to one connection; re-reads on resync.</summary>
    private sealed class Watcher(
        string sessionId, IQrSessionGrain grain, string desktopToken, IHubContext<QrHub> hub, string connectionId,
        CeremonyTelemetry telemetry, ILogger log) : IStreamObserver
    {
        private long _sent;

        public void OnNext(StreamEvent e)
        {
            if (e.Version <= Volatile.Read(ref _sent))
            {
                return;
            }
            if (e.Payload.Length == 0)
            {
                _ = ResyncAsync(); // too big for a notification: read it
                return;
            }
            Deliver(e.Version, JsonSerializer.Deserialize<JsonElement>(e.Payload));
        }

        public void OnResync() => _ = ResyncAsync();

        public void Deliver(long version, JsonElement snapshot)
        {
            long sent;
            do
            {
                sent = Volatile.Read(ref _sent);
                if (version <= sent)
                {
                    return;
                }
            }
            while (Interlocked.CompareExchange(ref _sent, version, sent) != sent);
            _ = SendAsync(snapshot);
        }

        private async Task SendAsync(JsonElement snapshot)
        {
            try
            {
                await hub.Clients.Client(connectionId).SendAsync("state", snapshot).ConfigureAwait(false);
                telemetry.DesktopNotified(sessionId, snapshot, CeremonyTelemetry.SignalR);
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
                var snapshot = await grain.GetSnapshotAsync(desktopToken, CancellationToken.None).ConfigureAwait(false);
                Deliver(snapshot.Version, JsonSerializer.SerializeToElement(snapshot, GrainJson.Options));
            }
            catch (Exception e)
            {
                log.LogDebug(e, "Re-reading a snapshot after a resync failed");
            }
        }
    }
}
