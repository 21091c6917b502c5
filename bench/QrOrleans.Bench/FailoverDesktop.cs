using System.Diagnostics;
using Microsoft.AspNetCore.SignalR;

namespace QrOrleans.Bench;

/// <summary>One SignalR connection per node, shared by the desktops that watch through it; reconnected on demand.</summary>
public sealed class HubPool(IReadOnlyList<Uri> nodes) : IAsyncDisposable
{
    private readonly DesktopHub?[] _hubs = new DesktopHub?[nodes.Count];
    private readonly SemaphoreSlim[] _locks = nodes.Select(_ => new SemaphoreSlim(1, 1)).ToArray();

    public async Task<DesktopHub> GetAsync(int node, CancellationToken ct)
    {
        await _locks[node].WaitAsync(ct);
        try
        {
            if (_hubs[node] is { IsOpen: true } open)
            {
                return open;
            }
            if (_hubs[node] is { } closed)
            {
                _ = closed.DisposeAsync().AsTask();
            }
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(5));
            return _hubs[node] = await DesktopHub.ConnectAsync(nodes[node], timeout.Token);
        }
        finally
        {
            _locks[node].Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var hub in _hubs)
        {
            if (hub is not null)
            {
                await hub.DisposeAsync();
            }
        }
    }
}

/// <summary>
/// A desktop following one session as a real one would: over SignalR or SSE on a node, and when that connection
/// breaks (the node died), again on the next node, which sends the current snapshot first. It keeps the newest
/// snapshot it was told of; <see cref="WaitForAsync"/> waits for a condition on it.
/// </summary>
public sealed class FailoverDesktop : ISessionSink
{
    private readonly object _lock = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource<Exception> _broken = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public FailoverDesktop(CreatedSession session, int node)
    {
        Session = session;
        Node = node;
    }

    public CreatedSession Session { get; }

    public string SessionId => Session.SessionId;

    /// <summary>The node the desktop is connected to (or last tried).</summary>
    public int Node { get; private set; }

    public string State { get; private set; } = "none";

    public long Version { get; private set; }

    public string? NumberMatch { get; private set; }

    /// <summary>Connections opened after the first one.</summary>
    public int Reconnects { get; private set; }

    /// <summary>Why watching failed, each time it did (for the report).</summary>
    public List<string> Breaks { get; } = [];

    public void OnSnapshot(Seen seen)
    {
        TaskCompletionSource changed;
        lock (_lock)
        {
            if (seen.Version <= Version)
            {
                return;
            }
            (Version, State) = (seen.Version, seen.State);
            NumberMatch = seen.NumberMatch ?? NumberMatch;
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }
        changed.TrySetResult();
    }

    public void Fail(Exception e)
    {
        lock (_lock)
        {
            _broken.TrySetResult(e);
        }
    }

    /// <summary>True once <paramref name="condition"/> holds, false if it did not within <paramref name="timeout"/>.</summary>
    public async Task<bool> WaitForAsync(Func<FailoverDesktop, bool> condition, TimeSpan timeout, CancellationToken ct)
    {
        var until = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            Task changed;
            lock (_lock)
            {
                if (condition(this))
                {
                    return true;
                }
                changed = _changed.Task;
            }
            var left = until - Stopwatch.GetTimestamp();
            if (left <= 0)
            {
                return false;
            }
            try
            {
                await changed.WaitAsync(TimeSpan.FromSeconds((double)left / Stopwatch.Frequency), ct);
            }
            catch (TimeoutException)
            {
                return condition(this);
            }
        }
    }

    /// <summary>Watches until <paramref name="ct"/> is cancelled, moving to the next node whenever the connection breaks.</summary>
    public async Task RunAsync(Transport transport, HubPool hubs, IReadOnlyList<Api> apis, Tally tally, CancellationToken ct)
    {
        var first = true;
        while (!ct.IsCancellationRequested)
        {
            Task<Exception> broken;
            lock (_lock)
            {
                _broken = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
                broken = _broken.Task;
            }
            if (!first)
            {
                Reconnects++;
            }
            first = false;
            var node = Node;
            SseStream? sse = null;
            DesktopHub? hub = null;
            var start = Stopwatch.GetTimestamp();
            try
            {
                if (transport == Transport.SignalR)
                {
                    hub = await hubs.GetAsync(node, ct);
                    start = Stopwatch.GetTimestamp();
                    await hub.WatchAsync(this, Session.DesktopToken, ct);
                }
                else
                {
                    sse = await SseStream.OpenAsync(apis[node], Session, this, ct);
                }
                tally.Add(start, available: true, "watch");
                var why = await broken.WaitAsync(ct);
                Note($"node{node + 1} {transport} broke: {Short(why)}");
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (HubException e)
            {
                // The hub answered: with the session's refusal ("unauthenticated: …"), "storage_unavailable: …", or for
                // anything unexpected on the server SignalR's generic message; the last two are 5xx in all but name.
                // SignalR words a HubException "An unexpected error occurred invoking 'Watch' on the server. HubException: <message>".
                var unexpected = !e.Message.Contains("HubException: ", StringComparison.Ordinal)
                    || e.Message.Contains("HubException: storage_unavailable", StringComparison.Ordinal);
                tally.Add(start, available: !unexpected, $"watch node{node + 1} signalr {(unexpected ? "server error" : Short(e))}");
                Note($"node{node + 1} Watch refused: {Short(e)}");
            }
            catch (BenchException e) when (e.Status != 0)
            {
                tally.Add(start, available: e.Status < 500, $"watch node{node + 1} sse {e.Message}");
                Note($"node{node + 1} SSE refused: {e.Message}");
            }
            catch (Exception e)
            {
                // the node could not be reached: go to the next one, as a client behind a load balancer would
                tally.FailOver();
                Note($"node{node + 1} {transport} unreachable: {Short(e)}");
            }
            finally
            {
                if (hub is not null)
                {
                    try
                    {
                        await hub.UnwatchAsync(SessionId, CancellationToken.None);
                    }
                    catch (Exception)
                    {
                        // the connection is gone: nothing to tell it
                    }
                }
                if (sse is not null)
                {
                    await sse.DisposeAsync();
                }
            }
            Node = (node + 1) % apis.Count;
            try
            {
                await Task.Delay(100, ct);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    private void Note(string what)
    {
        lock (_lock)
        {
            if (Breaks.Count < 20)
            {
                Breaks.Add(what);
            }
        }
    }

    private static string Short(Exception e) => e.Message.Length > 100 ? e.Message[..100] : e.Message;
}
