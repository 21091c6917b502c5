using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;

namespace QrOrleans.Bench;

/// <summary>
/// How the server's cost grows with the work done: N completed ceremonies, then idle. Before, during and after, it
/// reads the live activations (Orleans' grain statistics, through GET /v1/cluster), the reminders left in the
/// reminder table, and the server's RSS. What it checks: after the idle time (the collection age plus a finished
/// session's grace period) activations are back near their level before the run, RSS near its value after
/// warm-up, and no session left a reminder behind.
/// </summary>
public static class GrowthBench
{
    public static async Task<int> RunAsync(Args args)
    {
        var target = args.Target();
        var count = args.Int("count");
        var concurrency = Math.Max(1, args.Int("concurrency", 16));
        var transport = args.Transport();
        var adminKey = args.Get("admin-key") ?? "bench";
        var phoneCount = Math.Max(1, args.Int("phones", 4000));
        var warmupCount = args.Int("warmup", 2000);
        // Collection age (2 min) + a finished session's grace period (2 min) + a minute for timers, reminders and the GC.
        var idleSeconds = args.Int("idle-seconds", 300);
        var pid = args.Get("pid") is not null ? args.Int("pid") : WaitingBench.FindListener(target.Port);
        var c = CultureInfo.InvariantCulture;
        using var api = new Api(target);
        using var admin = new HttpClient { BaseAddress = target };
        admin.DefaultRequestHeaders.Add("X-Api-Key", adminKey);
        Console.WriteLine(string.Create(c, $"growth: target={target} count={count} concurrency={concurrency} transport={transport} phones={phoneCount} idle={idleSeconds}s"));

        var before = await ProbeAsync(admin, pid);
        Console.WriteLine(string.Create(c, $"before: {before}"));
        var (phones, hubs) = await CeremoniesBench.SetupAsync(target, api, adminKey, phoneCount, transport == Transport.SignalR ? Math.Min(concurrency, 16) : 0);
        var warm = new CeremoniesBench.Counters();
        await CeremoniesBench.RunWorkersAsync(api, api, phones, hubs, transport, concurrency, TimeSpan.FromHours(1), warm, null, warmupCount);
        var warmed = await ProbeAsync(admin, pid);
        Console.WriteLine(string.Create(c, $"after warm-up ({warm.Completed} ceremonies, {warm.Errors} errors): {warmed}"));

        var counters = new CeremoniesBench.Counters();
        var clock = Stopwatch.StartNew();
        using var stop = new CancellationTokenSource();
        var peak = warmed;
        var sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    await Task.Delay(TimeSpan.FromSeconds(5), stop.Token);
                    var now = await ProbeAsync(admin, pid);
                    peak = peak with
                    {
                        Activations = Math.Max(peak.Activations, now.Activations),
                        Reminders = Math.Max(peak.Reminders, now.Reminders),
                        RssMb = Math.Max(peak.RssMb, now.RssMb),
                    };
                }
                catch (OperationCanceledException)
                {
                }
            }
        });
        var reporter = CeremoniesBench.ReportAsync(counters, clock, stop.Token);
        await CeremoniesBench.RunWorkersAsync(api, api, phones, hubs, transport, concurrency, TimeSpan.FromHours(6), counters, clock, count);
        var elapsed = clock.Elapsed.TotalSeconds;
        await stop.CancelAsync();
        await Task.WhenAll(sampler, reporter);
        var done = await ProbeAsync(admin, pid);
        peak = peak with { Activations = Math.Max(peak.Activations, done.Activations), RssMb = Math.Max(peak.RssMb, done.RssMb) };
        Console.WriteLine(string.Create(c,
            $"run: {counters.Completed} completed, {counters.Errors} errors in {elapsed:F0} s ({counters.Completed / elapsed:F0}/s); now {done}; peak activations={peak.Activations} reminders={peak.Reminders} rss={peak.RssMb:F0} MB"));
        foreach (var (what, n) in counters.ErrorKinds.OrderByDescending(e => e.Value).Take(5))
        {
            Console.WriteLine(string.Create(c, $"  error x{n}: {what}"));
        }
        foreach (var hub in hubs)
        {
            await hub.DisposeAsync();
        }

        // Idle: nothing calls, apart from these probes (one operator request per 15 s).
        var idle = Stopwatch.StartNew();
        var last = done;
        while (idle.Elapsed.TotalSeconds < idleSeconds)
        {
            await Task.Delay(TimeSpan.FromSeconds(15));
            last = await ProbeAsync(admin, pid);
            Console.WriteLine(string.Create(c, $"  idle t={idle.Elapsed.TotalSeconds,4:F0}s {last}"));
        }
        var share = peak.Activations > 0 ? 100.0 * last.Activations / peak.Activations : 0;
        Console.WriteLine(string.Create(c,
            $"growth: ceremonies={counters.Completed} errors={counters.Errors} peak_activations={peak.Activations} final_activations={last.Activations} ({share:F2}% of peak; {before.Activations} before the run) rss_warm_mb={warmed.RssMb:F0} rss_peak_mb={peak.RssMb:F0} rss_final_mb={last.RssMb:F0} (final-warm={last.RssMb - warmed.RssMb:F0} MB) reminders_peak={peak.Reminders} reminders_final={last.Reminders}"));
        return 0;
    }

    private sealed record Probe(int Activations, int Reminders, double RssMb, string Largest)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"activations={Activations} reminders={Reminders} rss={RssMb:F0} MB largest: {Largest}");
    }

    private static async Task<Probe> ProbeAsync(HttpClient admin, int pid)
    {
        using var doc = JsonDocument.Parse(await admin.GetStringAsync("v1/cluster"));
        var byType = doc.RootElement.GetProperty("activations").EnumerateObject().Select(p => (p.Name, N: p.Value.GetInt32())).ToArray();
        var reminders = doc.RootElement.TryGetProperty("reminders", out var r) && r.ValueKind == JsonValueKind.Number ? r.GetInt32() : -1;
        var largest = string.Join(", ", byType.OrderByDescending(t => t.N).Take(3).Select(t => $"{t.Name}={t.N}"));
        return new Probe(byType.Sum(t => t.N), reminders, WaitingBench.VmRssKb(pid) / 1024.0, largest);
    }
}
