using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;

namespace QrOrleans.Bench;

/// <summary>
/// Failover time, measured: a private Redis and its own nodes (<see cref="LocalCluster"/>); sessions created on the
/// node about to die (their grains are placed on its silo) with desktops watching them there; kill -9 of that node;
/// then each session is asked for its snapshot (desktop token) through the survivors until it answers. A kill's figure
/// is its slowest session. The node is started again between kills.
/// </summary>
public static class FailoverBench
{
    private const int Victim = 1; // node 2
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;
    private static readonly HttpClient s_http = new(Api.NewHandler()) { Timeout = Timeout.InfiniteTimeSpan };

    public static async Task<int> RunAsync(Args args)
    {
        var kills = Math.Max(1, args.Int("kills", 5));
        var perKill = Math.Max(1, args.Int("sessions", 12));
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            Console.Error.WriteLine("failover: stopping (Ctrl-C)");
            stop.Cancel();
        };
        var ct = stop.Token;
        await using var cluster = await LocalCluster.StartAsync(args, ct);
        var urls = cluster.Nodes.Select(n => n.BaseAddress).ToList();
        var victim = cluster.Nodes[Victim];
        var survivors = urls.Where((_, i) => i != Victim).ToList();
        var tally = new Tally();
        var apis = urls.Select(u => new Api(u)).ToList();
        await using var hubs = new HubPool(urls);
        var slowest = new List<double>();
        try
        {
            Console.WriteLine(string.Create(C, $"failover: kills={kills} sessions per kill={perKill}, node {Victim + 1} is killed each time, cores={Environment.ProcessorCount}"));
            for (var k = 1; k <= kills; k++)
            {
                await cluster.WaitAllActiveAsync(TimeSpan.FromSeconds(60), ct);
                var sessions = await CreateOnAsync(victim.BaseAddress, perKill, ct);
                // Desktops on the victim, half over SignalR and half over SSE; they move to a survivor when it dies.
                using var watching = new CancellationTokenSource();
                var desktops = sessions.Select(s => new FailoverDesktop(s, Victim)).ToList();
                var watches = desktops.Select((d, i) => Task.Run(() => d.RunAsync(i % 2 == 0 ? Transport.SignalR : Transport.Sse, hubs, apis, tally, watching.Token), CancellationToken.None)).ToList();
                foreach (var d in desktops)
                {
                    if (!await d.WaitForAsync(x => x.Version >= 1, TimeSpan.FromSeconds(15), ct))
                    {
                        throw new BenchException($"a desktop on node {Victim + 1} was not told of its session within 15 s");
                    }
                }

                var killed = Stopwatch.GetTimestamp();
                victim.Kill();
                var times = await Task.WhenAll(sessions.Select((s, i) => FirstAnswerAsync(survivors[i % survivors.Count], s, killed, ct)));
                var worst = times.Max();
                slowest.Add(worst);
                var sorted = times.Order().ToArray();
                Console.WriteLine(string.Create(C,
                    $"kill {k}: slowest session answered from a survivor {worst:F2} s after kill -9 (median session {sorted[sorted.Length / 2]:F2} s, fastest {sorted[0]:F2} s); desktops reconnected: {desktops.Count(d => d.Reconnects > 0)}/{desktops.Count}"));
                await watching.CancelAsync();
                await Task.WhenAll(watches);

                var restart = Stopwatch.StartNew();
                await victim.RestartAsync(TimeSpan.FromSeconds(90), ct);
                Console.WriteLine(string.Create(C, $"  node {Victim + 1} started again, ready in {restart.Elapsed.TotalSeconds:F1} s"));
            }
        }
        catch
        {
            cluster.KeepDir = true;
            throw;
        }
        finally
        {
            foreach (var api in apis)
            {
                api.Dispose();
            }
        }
        var all = slowest.Order().ToArray();
        var median = all.Length % 2 == 1 ? all[all.Length / 2] : (all[all.Length / 2 - 1] + all[all.Length / 2]) / 2;
        Console.WriteLine(string.Create(C,
            $"failover: kills={all.Length} median={median:F2}s max={all[^1]:F2}s (per kill: {string.Join(", ", slowest.Select(s => s.ToString("F2", C)))})"));
        return all[^1] <= 3 ? 0 : 1;
    }

    /// <summary>Creates sessions through one node (so their grains live on its silo); no failover.</summary>
    public static async Task<List<CreatedSession>> CreateOnAsync(Uri node, int count, CancellationToken ct)
    {
        using var api = new Api(node);
        var sessions = new List<CreatedSession>();
        for (var i = 0; i < count; i++)
        {
            sessions.Add(await api.CreateSessionAsync(ct));
        }
        return sessions;
    }

    /// <summary>
    /// Asks <paramref name="node"/> for the session's snapshot until it answers 200 (for at most 30 s); the seconds from
    /// <paramref name="since"/> to that answer (infinity if none).
    /// </summary>
    public static Task<double> FirstAnswerAsync(Uri node, CreatedSession session, long since, CancellationToken ct) =>
        UntilAnsweredAsync(() =>
        {
            var request = new HttpRequestMessage(HttpMethod.Get, new Uri(node, $"v1/qr/sessions/{session.SessionId}"));
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", session.DesktopToken);
            return request;
        }, HttpStatusCode.OK, TimeSpan.FromSeconds(30), since, ct);

    /// <summary>Creates a session on <paramref name="node"/> until one is created (for at most 60 s); seconds since <paramref name="since"/>.</summary>
    public static Task<double> UntilCreatedAsync(Uri node, long since, CancellationToken ct) =>
        UntilAnsweredAsync(() => new HttpRequestMessage(HttpMethod.Post, new Uri(node, "v1/qr/sessions"))
        {
            Content = new StringContent("{}", Encoding.UTF8, "application/json"),
        }, HttpStatusCode.Created, TimeSpan.FromSeconds(60), since, ct);

    /// <summary>
    /// Sends a fresh request every 50 ms (each given 5 s) until one answers <paramref name="wanted"/>: the seconds since
    /// <paramref name="since"/> then, or infinity once <paramref name="limit"/> has passed.
    /// </summary>
    private static async Task<double> UntilAnsweredAsync(Func<HttpRequestMessage> request, HttpStatusCode wanted, TimeSpan limit, long since, CancellationToken ct)
    {
        while (Stopwatch.GetElapsedTime(since) < limit)
        {
            using var attempt = CancellationTokenSource.CreateLinkedTokenSource(ct);
            attempt.CancelAfter(TimeSpan.FromSeconds(5));
            try
            {
                using var sent = request();
                using var response = await s_http.SendAsync(sent, attempt.Token);
                if (response.StatusCode == wanted)
                {
                    return Stopwatch.GetElapsedTime(since).TotalSeconds;
                }
            }
            catch (Exception e) when (!ct.IsCancellationRequested && e is HttpRequestException or OperationCanceledException)
            {
                // asked again below
            }
            await Task.Delay(50, ct);
        }
        return double.PositiveInfinity;
    }
}
