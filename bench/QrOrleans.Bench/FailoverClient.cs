using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace QrOrleans.Bench;

/// <summary>
/// What one logical request came to. <see cref="Status"/> 0: no node answered within the budget.
/// <see cref="Node"/> is the index of the node that answered; <see cref="Trail"/> every attempt, for the report.
/// </summary>
public sealed record Answer(int Status, string? Code, JsonElement Body, int Node, string Trail)
{
    public bool Is2xx => Status is >= 200 and < 300;

    /// <summary>"qr_expired", "503 storage_unavailable", "no answer".</summary>
    public string Why => Status == 0 ? "no_answer" : Status < 500 && Code is not null ? Code : $"{Status}{(Code is null ? "" : " " + Code)}";
}

/// <summary>
/// Every request's fate, with its start and end (Stopwatch timestamps), for the availability figure: answered with
/// anything but a 5xx, or not (a 5xx, or no answer from any node).
/// </summary>
public sealed class Tally
{
    public readonly record struct Entry(long Start, long End, bool Available, string What);

    private readonly ConcurrentQueue<Entry> _entries = new();
    private long _failedOver;

    public IReadOnlyCollection<Entry> Entries => _entries;

    /// <summary>Attempts that found a node gone (refused, reset, timed out) and went on to another node.</summary>
    public long FailedOver => Interlocked.Read(ref _failedOver);

    public void Add(long start, bool available, string what) => _entries.Enqueue(new Entry(start, Stopwatch.GetTimestamp(), available, what));

    public void FailOver() => Interlocked.Increment(ref _failedOver);
}

/// <summary>
/// HTTP to a cluster as a client that knows every node would (or a load balancer in front of them): a request goes
/// to its preferred node; when that node cannot be reached (connection refused or reset, no answer in time) it goes
/// to the next one at once, and after a 5xx it is sent again (next node, 200 ms later) until its budget is spent.
/// Availability counts each 5xx answer and each attempt left without an answer for 10 s as unavailable, and a request
/// that no node answered as one unavailable; an attempt refused or reset by a gone node that failed over to a node
/// that then answered is not unavailable (it is counted in FailedOver).
/// </summary>
public sealed class FailoverClient : IDisposable
{
    private static readonly MediaTypeHeaderValue Json = new("application/json");
    private static readonly TimeSpan AttemptTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan DefaultBudget = TimeSpan.FromSeconds(15);

    private readonly IReadOnlyList<Uri> _nodes;
    private readonly HttpClient _http;

    public FailoverClient(IReadOnlyList<Uri> nodes, Tally tally)
    {
        _nodes = nodes;
        Tally = tally;
        _http = new HttpClient(Api.NewHandler(), disposeHandler: true) { Timeout = Timeout.InfiniteTimeSpan };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd("QrOrleans.Bench/1.0");
    }

    public Tally Tally { get; }

    public int Count => _nodes.Count;

    public async Task<Answer> SendAsync(string what, int preferred, HttpMethod method, string path, string? json = null,
        string? bearer = null, string? adminKey = null, TimeSpan? budget = null, CancellationToken ct = default)
    {
        var until = Stopwatch.GetTimestamp() + (long)((budget ?? DefaultBudget).TotalSeconds * Stopwatch.Frequency);
        var trail = new StringBuilder();
        var node = preferred % _nodes.Count;
        var unreachableInARow = 0;
        var firstStart = Stopwatch.GetTimestamp();
        while (true)
        {
            var start = Stopwatch.GetTimestamp();
            using var request = new HttpRequestMessage(method, new Uri(_nodes[node], path));
            if (json is not null)
            {
                request.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(json)) { Headers = { ContentType = Json } };
            }
            if (bearer is not null)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
            }
            if (adminKey is not null)
            {
                request.Headers.Add("X-Api-Key", adminKey);
            }
            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(ct);
            attempt.CancelAfter(AttemptTimeout);
            try
            {
                using var response = await _http.SendAsync(request, attempt.Token);
                var bytes = await response.Content.ReadAsByteArrayAsync(attempt.Token);
                var status = (int)response.StatusCode;
                var body = bytes.Length > 0 && bytes[0] is (byte)'{' or (byte)'[' ? Parse(bytes) : default;
                var code = body.ValueKind == JsonValueKind.Object && body.TryGetProperty("code", out var c) ? c.GetString() : null;
                trail.Append(CultureInfo.InvariantCulture, $"[{Elapsed(firstStart)} node{node + 1} {status}{(code is null ? "" : " " + code)}]");
                if (status >= 500)
                {
                    Tally.Add(start, available: false, $"{what} node{node + 1} {status} {code}");
                    if (Stopwatch.GetTimestamp() < until)
                    {
                        await Task.Delay(200, ct);
                        node = (node + 1) % _nodes.Count;
                        continue;
                    }
                }
                else
                {
                    Tally.Add(start, available: true, what);
                }
                return new Answer(status, code, body, node, trail.ToString());
            }
            catch (Exception e) when (!ct.IsCancellationRequested && e is HttpRequestException or IOException or SocketException or OperationCanceledException)
            {
                trail.Append(CultureInfo.InvariantCulture, $"[{Elapsed(firstStart)} node{node + 1} {Reason(e)}]");
                if (Stopwatch.GetTimestamp() >= until)
                {
                    Tally.Add(start, available: false, $"{what} no node answered");
                    return new Answer(0, null, default, node, trail.ToString());
                }
                if (e is OperationCanceledException)
                {
                    // a node that holds a request 10 s was not available to that user, whatever comes next
                    Tally.Add(start, available: false, $"{what} node{node + 1} no answer in {AttemptTimeout.TotalSeconds:F0} s");
                }
                else
                {
                    Tally.FailOver();
                }
                node = (node + 1) % _nodes.Count;
                if (++unreachableInARow >= _nodes.Count)
                {
                    // every node tried: give them a moment (a restart, membership catching up)
                    unreachableInARow = 0;
                    await Task.Delay(100, ct);
                }
            }
        }
    }

    private static JsonElement Parse(byte[] bytes)
    {
        try
        {
            using var doc = JsonDocument.Parse(bytes);
            return doc.RootElement.Clone();
        }
        catch (JsonException)
        {
            return default;
        }
    }

    private static string Elapsed(long since) => string.Create(CultureInfo.InvariantCulture, $"+{Stopwatch.GetElapsedTime(since).TotalSeconds:F2}s");

    public static string Reason(Exception e) => e switch
    {
        OperationCanceledException => "timeout",
        HttpRequestException { InnerException: SocketException s } => s.SocketErrorCode.ToString(),
        HttpRequestException { HttpRequestError: var error } when error != HttpRequestError.Unknown => error.ToString(),
        _ => e.GetType().Name,
    };

    public void Dispose() => _http.Dispose();
}
