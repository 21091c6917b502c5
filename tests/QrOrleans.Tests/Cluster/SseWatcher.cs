using System.Diagnostics;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Threading.Channels;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Cluster;

/// <summary>One server-sent event of a session, with when it arrived (<see cref="Stopwatch"/> ticks).</summary>
public sealed record SseEvent(string Event, long Id, JsonElement Data, long ReceivedAt)
{
    public string State => Data.GetProperty("state").GetString()!;

    public long Version => Data.GetProperty("version").GetInt64();

    public int? Rotation => Data.TryGetProperty("qr", out var qr) && qr.ValueKind == JsonValueKind.Object ? qr.GetProperty("rotation").GetInt32() : null;
}

/// <summary>
/// A desktop following its session over <c>GET /v1/qr/sessions/{id}/events</c> on one node: every event is
/// recorded as it arrives, on a single HTTP response (no reconnects: a dropped stream is an ended watcher).
/// </summary>
public sealed class SseWatcher : IAsyncDisposable
{
    private readonly HttpClient _http;
    private readonly HttpResponseMessage _response;
    private readonly CancellationTokenSource _stop = new();
    private readonly Channel<SseEvent> _pending = Channel.CreateUnbounded<SseEvent>();
    private readonly List<SseEvent> _all = [];
    private readonly Task _reader;

    private SseWatcher(HttpClient http, HttpResponseMessage response, Stream body)
    {
        _http = http;
        _response = response;
        _reader = Task.Run(() => ReadAsync(body));
    }

    /// <summary>Every event so far, in arrival order.</summary>
    public IReadOnlyList<SseEvent> Events
    {
        get
        {
            lock (_all)
            {
                return [.. _all];
            }
        }
    }

    /// <summary>Why the stream ended, if it did (null while it is open).</summary>
    public string? Ended { get; private set; }

    public static async Task<SseWatcher> OpenAsync(ClusterNode node, NewSession session)
    {
        var http = new HttpClient { BaseAddress = node.BaseAddress, Timeout = Timeout.InfiniteTimeSpan };
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}/events");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", session.DesktopToken);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("text/event-stream"));
        using var connect = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, connect.Token);
        if (!response.IsSuccessStatusCode || response.Content.Headers.ContentType?.MediaType != "text/event-stream")
        {
            var text = await response.Content.ReadAsStringAsync();
            response.Dispose();
            http.Dispose();
            throw new Xunit.Sdk.XunitException($"SSE on {node.Name}: HTTP {(int)response.StatusCode} {text}");
        }
        return new SseWatcher(http, response, await response.Content.ReadAsStreamAsync());
    }

    private async Task ReadAsync(Stream body)
    {
        try
        {
            using var reader = new StreamReader(body);
            string? name = null, id = null, data = null;
            while (await reader.ReadLineAsync(_stop.Token) is { } line)
            {
                if (line.Length == 0)
                {
                    if (data is not null)
                    {
                        var e = new SseEvent(name ?? "message", long.Parse(id ?? "0", System.Globalization.CultureInfo.InvariantCulture),
                            JsonDocument.Parse(data).RootElement.Clone(), Stopwatch.GetTimestamp());
                        lock (_all)
                        {
                            _all.Add(e);
                        }
                        _pending.Writer.TryWrite(e);
                    }
                    name = id = data = null;
                }
                else if (line.StartsWith("event: ", StringComparison.Ordinal)) { name = line[7..]; }
                else if (line.StartsWith("id: ", StringComparison.Ordinal)) { id = line[4..]; }
                else if (line.StartsWith("data: ", StringComparison.Ordinal)) { data = line[6..]; }
            }
            Ended = "the server ended the stream";
        }
        catch (Exception e)
        {
            Ended = _stop.IsCancellationRequested ? "disposed" : $"{e.GetType().Name}: {e.Message}";
        }
        finally
        {
            _pending.Writer.TryComplete();
        }
    }

    /// <summary>The next event not yet taken; fails after <paramref name="timeout"/> or if the stream ends.</summary>
    public async Task<SseEvent> NextAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            if (await _pending.Reader.WaitToReadAsync(cts.Token) && _pending.Reader.TryRead(out var e))
            {
                return e;
            }
        }
        catch (OperationCanceledException)
        {
            throw new Xunit.Sdk.XunitException(
                $"No SSE event within {timeout.TotalSeconds} s; seen so far: {Describe()}");
        }
        throw new Xunit.Sdk.XunitException($"The SSE stream ended ({Ended}); seen: {Describe()}");
    }

    /// <summary>Takes events until one in <paramref name="state"/> arrives.</summary>
    public async Task<SseEvent> WaitForStateAsync(string state, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            var left = timeout - deadline.Elapsed;
            var e = await NextAsync(left > TimeSpan.Zero ? left : TimeSpan.FromMilliseconds(1));
            if (e.State == state)
            {
                return e;
            }
        }
    }

    public string Describe() => string.Join(", ", Events.Select(e => $"v{e.Version}:{e.State}{(e.Rotation is { } r ? "/r" + r : "")}"));

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _response.Dispose();
        try
        {
            await _reader.WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (TimeoutException)
        {
        }
        _http.Dispose();
        _stop.Dispose();
    }
}

/// <summary>Helpers the cluster tests share.</summary>
public static class ClusterCalls
{
    /// <summary>Seconds since a <see cref="Stopwatch"/> timestamp, or between two.</summary>
    public static double Seconds(long from, long to) => Stopwatch.GetElapsedTime(from, to).TotalSeconds;

    /// <summary>A long-poll: answers when the session's version is past <paramref name="version"/>.</summary>
    public static async Task<(Reply Reply, long At)> LongPollAsync(ClusterNode node, NewSession session, long version, int timeoutSeconds = 20)
    {
        var reply = await node.Api.SendAsync(HttpMethod.Get,
            $"/v1/qr/sessions/{session.SessionId}?waitForVersion={version}&timeout={timeoutSeconds}", null, session.DesktopToken);
        return (reply, Stopwatch.GetTimestamp());
    }

    /// <summary>Operator view of the cluster from one node.</summary>
    public static async Task<JsonElement> ClusterAsync(ClusterNode node) =>
        (await node.Api.SendAsync(HttpMethod.Get, "/v1/cluster", null, apiKey: ClusterNode.AdminKey)).EnsureStatus(200).Body;

    /// <summary>
    /// The membership entries of <paramref name="node"/>'s silo in a /v1/cluster answer (Orleans names a silo by its
    /// endpoint and generation, so a node restarted on the same port has an entry per generation), newest last.
    /// </summary>
    public static IReadOnlyList<JsonElement> SilosOf(JsonElement cluster, ClusterNode node) =>
        cluster.GetProperty("silos").EnumerateArray()
            .Where(s => (s.GetProperty("address").GetString() ?? "").Contains($"127.0.0.1:{node.SiloPort}", StringComparison.Ordinal))
            .ToList();

    /// <summary>Whether the node's silo (any generation) is in <paramref name="status"/> (Orleans' name: Active, Dead, …).</summary>
    public static bool SiloIs(JsonElement cluster, ClusterNode node, string status) =>
        SilosOf(cluster, node).Any(s => string.Equals(s.GetProperty("status").GetString(), status, StringComparison.OrdinalIgnoreCase));

    /// <summary>Whether the node's newest generation is Active and no older one still is (a restart supersedes).</summary>
    public static bool OnlyNewestActive(JsonElement cluster, ClusterNode node)
    {
        var entries = SilosOf(cluster, node).Select(s => s.GetProperty("status").GetString() ?? "").ToList();
        return entries.Count(s => string.Equals(s, "Active", StringComparison.OrdinalIgnoreCase)) == 1;
    }

    public static string DescribeSilos(JsonElement cluster) =>
        string.Join(", ", cluster.GetProperty("silos").EnumerateArray().Select(s => $"{s.GetProperty("address").GetString()}={s.GetProperty("status").GetString()}"));

    /// <summary>Waits until every node's silo is Active in <paramref name="viewer"/>'s view of the cluster.</summary>
    public static async Task AllActiveAsync(ClusterNode viewer, IEnumerable<ClusterNode> silos, TimeSpan timeout)
    {
        JsonElement? last = null;
        await Diagnostics.EventuallyAsync(timeout, async () =>
        {
            var reply = await viewer.Api.SendAsync(HttpMethod.Get, "/v1/cluster", null, apiKey: ClusterNode.AdminKey);
            if (reply.Status != 200)
            {
                return false;
            }
            last = reply.Body;
            return silos.All(n => SiloIs(reply.Body, n, "Active"));
        }, () => $"every silo Active as {viewer.Name} sees it; last view: {(last is { } v ? DescribeSilos(v) : "none")}");
    }
}
