using Microsoft.AspNetCore.SignalR.Client;

namespace QrOrleans.Tests.Dashboard;

/// <summary>The dashboard's live feed (/hubs/dashboard) as the page holds it, with the sign-in cookie, over WebSockets.</summary>
public sealed class LiveFeed : IAsyncDisposable
{
    private readonly HubConnection _hub;
    private readonly TaskCompletionSource _closed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _snapshots;
    private volatile bool _toldSignedOut;

    private LiveFeed(HubConnection hub)
    {
        _hub = hub;
        _hub.On<System.Text.Json.JsonElement>("snapshot", _ => Interlocked.Increment(ref _snapshots));
        _hub.On("signedOut", () => _toldSignedOut = true);
        _hub.Closed += _ =>
        {
            _closed.TrySetResult();
            return Task.CompletedTask;
        };
    }

    public int Snapshots => Volatile.Read(ref _snapshots);

    public bool ToldSignedOut => _toldSignedOut;

    public HubConnectionState State => _hub.State;

    /// <summary>Connects and waits for the first snapshot.</summary>
    public static async Task<LiveFeed> OpenAsync(Uri node, string cookie)
    {
        var hub = new HubConnectionBuilder()
            .WithUrl(new Uri(node, "/hubs/dashboard"), o =>
            {
                o.Headers["Cookie"] = cookie;
                o.Transports = Microsoft.AspNetCore.Http.Connections.HttpTransportType.WebSockets;
            })
            .Build();
        var feed = new LiveFeed(hub);
        await hub.StartAsync();
        await feed.WaitForSnapshotsAsync(1, TimeSpan.FromSeconds(10));
        return feed;
    }

    public async Task WaitForSnapshotsAsync(int count, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (Snapshots < count)
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new Xunit.Sdk.XunitException($"{Snapshots} snapshots within {timeout.TotalSeconds} s, {count} expected (state {_hub.State}).");
            }
            await Task.Delay(50);
        }
    }

    /// <summary>Waits until the server closed the connection (no reconnect is configured, so closed is final).</summary>
    public async Task WaitClosedAsync(TimeSpan timeout)
    {
        if (await Task.WhenAny(_closed.Task, Task.Delay(timeout)) != _closed.Task)
        {
            throw new Xunit.Sdk.XunitException($"The feed was still {_hub.State} {timeout.TotalSeconds} s after the sign-out.");
        }
    }

    public ValueTask DisposeAsync() => _hub.DisposeAsync();
}
