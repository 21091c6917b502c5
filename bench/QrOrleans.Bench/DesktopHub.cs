using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Connections;
using Microsoft.AspNetCore.Http.Connections.Client;
using Microsoft.AspNetCore.SignalR;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.AspNetCore.SignalR.Protocol;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace QrOrleans.Bench;

/// <summary>
/// A desktop's connection to /hubs/qr through the SignalR .NET client, with "state" pushes dispatched by sessionId
/// to <see cref="ISessionSink"/>s. Many sessions can be watched over one connection.
/// </summary>
public sealed class DesktopHub : IAsyncDisposable
{
    // Built by hand rather than with HubConnectionBuilder, which gives every connection its own service provider,
    // protocol and serializer cache: for 10,000 desktops in one process that doubled the generator's set-up CPU and
    // cost ~15 KB more per connection. Protocol and (empty) services are shared instead.
    private static readonly IHubProtocol s_protocol = new JsonHubProtocol(Options.Create(new JsonHubProtocolOptions()));
    private static readonly IServiceProvider s_services = new NoServices();

    private readonly HubConnection _connection;
    private readonly ConcurrentDictionary<string, ISessionSink> _watches = new(StringComparer.Ordinal);

    private DesktopHub(IConnectionFactory factory, EndPoint hub)
    {
        _connection = new HubConnection(factory, s_protocol, hub, s_services, NullLoggerFactory.Instance);
        _connection.On<JsonElement>("state", OnState);
        _connection.Closed += e =>
        {
            Close(e ?? new BenchException("hub closed"));
            return Task.CompletedTask;
        };
    }

    /// <summary>Why the connection ended, once it has.</summary>
    public Exception? Error { get; private set; }

    public bool IsOpen => _connection.State == HubConnectionState.Connected && Error is null;

    /// <summary>Connects to ws(s)://host/hubs/qr and completes the handshake.</summary>
    public static async Task<DesktopHub> ConnectAsync(Uri target, CancellationToken ct)
    {
        var hub = new DesktopHub(Factory(target), new UriEndPoint(new Uri(target, "hubs/qr")));
        try
        {
            await hub._connection.StartAsync(ct).ConfigureAwait(false);
            return hub;
        }
        catch
        {
            await hub.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Starts routing "state" pushes for the session to <paramref name="watch"/>, then invokes Watch.</summary>
    public async Task WatchAsync(ISessionSink watch, string desktopToken, CancellationToken ct)
    {
        _watches[watch.SessionId] = watch;
        try
        {
            await _connection.InvokeAsync("Watch", watch.SessionId, desktopToken, ct).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _watches.TryRemove(watch.SessionId, out _);
            watch.Fail(e);
            throw;
        }
    }

    /// <summary>Stops routing and tells the server (a send without completion: the ceremony does not wait for it).</summary>
    public Task UnwatchAsync(string sessionId, CancellationToken ct)
    {
        _watches.TryRemove(sessionId, out _);
        return _connection.SendAsync("Unwatch", sessionId, ct);
    }

    private static HttpConnectionFactory Factory(Uri target)
    {
        // WebSockets only and no negotiate round trip: one upgrade per desktop, so that `waiting` measures what a
        // desktop holds, not a negotiate. No automatic reconnect (no retry policy): a dropped connection is a failure.
        var options = new HttpConnectionOptions
        {
            Url = new Uri(target, "hubs/qr"),
            Transports = HttpTransportType.WebSockets,
            SkipNegotiation = true,
            // SignalR's own pings keep the connection alive; WebSocket-level pings would only add frames.
            WebSocketConfiguration = ws => ws.KeepAliveInterval = Timeout.InfiniteTimeSpan,
        };
        return new HttpConnectionFactory(Options.Create(options), NullLoggerFactory.Instance);
    }

    /// <summary>No services (so no retry policy either); not disposable, since HubConnection disposes its provider.</summary>
    private sealed class NoServices : IServiceProvider
    {
        public object? GetService(Type serviceType) => null;
    }

    private void OnState(JsonElement snapshot)
    {
        // The arrival as the desktop's code sees it: the client has read, parsed and dispatched the message.
        var receivedAt = Stopwatch.GetTimestamp();
        if (SessionWatch.TryRead(snapshot, receivedAt, out var sessionId, out var seen) && _watches.TryGetValue(sessionId, out var watch))
        {
            watch.OnSnapshot(seen);
        }
    }

    private void Close(Exception e)
    {
        Error ??= e;
        foreach (var w in _watches.Values)
        {
            w.Fail(e);
        }
        _watches.Clear();
    }

    public async ValueTask DisposeAsync()
    {
        Error ??= new BenchException("hub disposed");
        await _connection.DisposeAsync().ConfigureAwait(false);
    }
}
