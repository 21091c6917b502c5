using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace QrOrleans.Bench;

/// <summary>
/// The minimum of the SignalR JSON hub protocol over a raw WebSocket (no negotiate): handshake, invocations with
/// completions, "state" pushes dispatched by sessionId to <see cref="SessionWatch"/>es, and client pings.
/// Many sessions can be watched over one connection.
/// </summary>
public sealed class HubConnection : IAsyncDisposable
{
    private const byte RecordSeparator = 0x1E;
    private static readonly byte[] Ping = "{\"type\":6}\u001e"u8.ToArray();
    private static readonly byte[] Handshake = "{\"protocol\":\"json\",\"version\":1}\u001e"u8.ToArray();

    private readonly ClientWebSocket _socket = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly ConcurrentDictionary<string, SessionWatch> _watches = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _invocations = new(StringComparer.Ordinal);
    private readonly CancellationTokenSource _closed = new();
    private byte[] _buffer = new byte[4096];
    private int _filled;
    private long _nextInvocation;
    private Task? _receiving;
    private Timer? _pinger;

    /// <summary>Why the connection ended, once it has.</summary>
    public Exception? Error { get; private set; }

    public bool IsOpen => _socket.State == WebSocketState.Open && Error is null;

    /// <summary>Connects to ws(s)://host/hubs/qr directly (skipping negotiate) and completes the handshake.</summary>
    public static async Task<HubConnection> ConnectAsync(Uri target, HttpMessageInvoker invoker, CancellationToken ct)
    {
        var hub = new HubConnection();
        try
        {
            var ws = new UriBuilder(target) { Scheme = target.Scheme == "https" ? "wss" : "ws", Path = "/hubs/qr" }.Uri;
            hub._socket.Options.KeepAliveInterval = Timeout.InfiniteTimeSpan; // SignalR pings below keep it alive
            await hub._socket.ConnectAsync(ws, invoker, ct).ConfigureAwait(false);
            await hub._socket.SendAsync(Handshake, WebSocketMessageType.Text, true, ct).ConfigureAwait(false);
            await hub.ReadHandshakeAsync(ct).ConfigureAwait(false);
            hub._receiving = Task.Run(hub.ReceiveLoopAsync, CancellationToken.None);
            // The server drops a client it has not heard from for 30 s; ping every 10 s (jittered).
            var period = TimeSpan.FromMilliseconds(10_000 + Random.Shared.Next(2_000));
            hub._pinger = new Timer(static s => _ = ((HubConnection)s!).PingAsync(), hub, period, period);
            return hub;
        }
        catch
        {
            await hub.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Starts routing "state" pushes for the session to <paramref name="watch"/>, then invokes Watch.</summary>
    public async Task WatchAsync(SessionWatch watch, string desktopToken, CancellationToken ct)
    {
        _watches[watch.SessionId] = watch;
        try
        {
            await InvokeAsync("Watch", [watch.SessionId, desktopToken], ct).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            _watches.TryRemove(watch.SessionId, out _);
            watch.Fail(e);
            throw;
        }
    }

    /// <summary>Stops routing and tells the server (fire-and-forget invocation: no completion comes back).</summary>
    public Task UnwatchAsync(string sessionId, CancellationToken ct)
    {
        _watches.TryRemove(sessionId, out _);
        return SendAsync(Message(null, "Unwatch", [sessionId]), ct);
    }

    public async Task InvokeAsync(string target, string[] arguments, CancellationToken ct)
    {
        var id = Interlocked.Increment(ref _nextInvocation).ToString(CultureInfo.InvariantCulture);
        var completion = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _invocations[id] = completion;
        try
        {
            if (Error is { } error)
            {
                throw new BenchException($"hub closed: {error.Message}");
            }
            await SendAsync(Message(id, target, arguments), ct).ConfigureAwait(false);
            await completion.Task.WaitAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            _invocations.TryRemove(id, out _);
        }
    }

    private static byte[] Message(string? invocationId, string target, string[] arguments)
    {
        var output = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(output))
        {
            json.WriteStartObject();
            json.WriteNumber("type", 1);
            if (invocationId is not null)
            {
                json.WriteString("invocationId", invocationId);
            }
            json.WriteString("target", target);
            json.WriteStartArray("arguments");
            foreach (var a in arguments)
            {
                json.WriteStringValue(a);
            }
            json.WriteEndArray();
            json.WriteEndObject();
        }
        output.Write([RecordSeparator]);
        return output.WrittenSpan.ToArray();
    }

    private async Task SendAsync(ReadOnlyMemory<byte> frame, CancellationToken ct)
    {
        await _sendLock.WaitAsync(ct).ConfigureAwait(false);
        try
        {
            await _socket.SendAsync(frame, WebSocketMessageType.Text, true, ct).ConfigureAwait(false);
        }
        finally
        {
            _sendLock.Release();
        }
    }

    private async Task PingAsync()
    {
        if (!IsOpen)
        {
            return;
        }
        try
        {
            await SendAsync(Ping, _closed.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or ObjectDisposedException)
        {
            // the receive loop reports the failure
        }
    }

    private async Task ReadHandshakeAsync(CancellationToken ct)
    {
        while (true)
        {
            var result = await ReceiveChunkAsync(ct).ConfigureAwait(false);
            if (result.MessageType == WebSocketMessageType.Close)
            {
                throw new BenchException("hub closed during the handshake");
            }
            var end = Array.IndexOf(_buffer, RecordSeparator, 0, _filled);
            if (end < 0)
            {
                continue;
            }
            var response = Encoding.UTF8.GetString(_buffer, 0, end);
            if (response.Contains("\"error\"", StringComparison.Ordinal))
            {
                throw new BenchException($"hub handshake refused: {response}");
            }
            Consume(end + 1);
            return;
        }
    }

    private async ValueTask<ValueWebSocketReceiveResult> ReceiveChunkAsync(CancellationToken ct)
    {
        if (_buffer.Length - _filled < 1024)
        {
            Array.Resize(ref _buffer, _buffer.Length * 2);
        }
        var result = await _socket.ReceiveAsync(_buffer.AsMemory(_filled), ct).ConfigureAwait(false);
        _filled += result.Count;
        return result;
    }

    private void Consume(int count)
    {
        Buffer.BlockCopy(_buffer, count, _buffer, 0, _filled - count);
        _filled -= count;
    }

    private async Task ReceiveLoopAsync()
    {
        try
        {
            // Messages left over from the handshake read.
            Dispatch(Stopwatch.GetTimestamp());
            while (!_closed.IsCancellationRequested)
            {
                var result = await ReceiveChunkAsync(_closed.Token).ConfigureAwait(false);
                if (result.MessageType == WebSocketMessageType.Close)
                {
                    throw new BenchException($"hub closed by server: {_socket.CloseStatus} {_socket.CloseStatusDescription}");
                }
                Dispatch(Stopwatch.GetTimestamp());
            }
        }
        catch (Exception e)
        {
            Close(e is OperationCanceledException && _closed.IsCancellationRequested ? new BenchException("hub disposed") : e);
        }
    }

    /// <summary>Handles every complete (0x1E-terminated) message in the buffer.</summary>
    private void Dispatch(long receivedAt)
    {
        var start = 0;
        while (true)
        {
            var end = Array.IndexOf(_buffer, RecordSeparator, start, _filled - start);
            if (end < 0)
            {
                break;
            }
            Handle(_buffer.AsMemory(start, end - start), receivedAt);
            start = end + 1;
        }
        if (start > 0)
        {
            Consume(start);
        }
    }

    private void Handle(ReadOnlyMemory<byte> message, long receivedAt)
    {
        using var doc = JsonDocument.Parse(message);
        var root = doc.RootElement;
        switch (root.GetProperty("type").GetInt32())
        {
            case 1 when root.TryGetProperty("target", out var target) && target.ValueEquals("state"):
                if (root.TryGetProperty("arguments", out var args) && args.GetArrayLength() > 0
                    && SessionWatch.TryRead(args[0], receivedAt, out var sessionId, out var seen)
                    && _watches.TryGetValue(sessionId, out var watch))
                {
                    watch.OnSnapshot(seen);
                }
                break;
            case 3:
                var id = root.TryGetProperty("invocationId", out var inv) ? inv.GetString() : null;
                if (id is not null && _invocations.TryGetValue(id, out var completion))
                {
                    if (root.TryGetProperty("error", out var error))
                    {
                        completion.TrySetException(new BenchException($"hub: {error.GetString()}"));
                    }
                    else
                    {
                        completion.TrySetResult();
                    }
                }
                break;
            case 7:
                throw new BenchException($"hub close message: {(root.TryGetProperty("error", out var why) ? why.GetString() : "no error")}");
            default:
                break; // 6 = ping: nothing to do (we ping on our own timer)
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
        foreach (var c in _invocations.Values)
        {
            c.TrySetException(e);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_pinger is not null)
        {
            await _pinger.DisposeAsync().ConfigureAwait(false);
        }
        await _closed.CancelAsync().ConfigureAwait(false);
        _socket.Abort();
        if (_receiving is not null)
        {
            await _receiving.ConfigureAwait(false);
        }
        _socket.Dispose();
        _closed.Dispose();
        _sendLock.Dispose();
    }
}
