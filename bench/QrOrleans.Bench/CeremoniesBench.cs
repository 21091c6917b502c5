using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;

namespace QrOrleans.Bench;

/// <summary>
/// Full ceremonies as fast as <c>concurrency</c> workers can drive them: create → watch → pending → scan →
/// scanned → approve → approved (timed: approve response → desktop push) → claim. Then the same number of
/// GET /healthz requests at the same concurrency: the ceiling of the HTTP stack on this machine.
/// </summary>
public static class CeremoniesBench
{
    private static readonly TimeSpan StepTimeout = TimeSpan.FromSeconds(10);
    private static long s_nextPhone;

    public static async Task<int> RunAsync(Args args)
    {
        var target = args.Target();
        var seconds = args.Int("seconds");
        var concurrency = Math.Max(1, args.Int("concurrency", 16));
        var transport = args.Transport();
        var adminKey = args.Get("admin-key") ?? "bench";
        // Every claim links a new device to the scanning user and every scan/approve/claim appends to that user's
        // audit trail (rewritten whole on each append): spread ceremonies round-robin over many users, as real
        // traffic is, so that no single user does thousands of sign-ins in one run.
        var phoneCount = Math.Max(1, args.Int("phones", Math.Max(concurrency, 4000)));
        var hubCount = Math.Clamp(args.Int("hubs", concurrency), 1, concurrency);
        // Long enough for tiered JIT to settle on a busy 2-core server: a fresh gateway's background JIT still took 15 %
        // of its CPU 30–40 s after the start under this load and none after 100 s (perf, 2026-12-01), and a 10 s
        // warm-up measured 1.5–2 times the steady CPU per ceremony.
        var warmupSeconds = args.Int("warmup", 45);
        var c = CultureInfo.InvariantCulture;

        using var api = new Api(target);
        // --phone-target: the phone side (scan, approve) goes to another node of the cluster, so every approval
        // reaches the watching desktop through the Orleans stream across silos, not inside one process.
        using var phoneApi = args.Get("phone-target") is { } phoneTarget ? new Api(new Uri(phoneTarget)) : null;
        var phonesApi = phoneApi ?? api;
        Console.WriteLine(string.Create(c,
            $"ceremonies: target={target} seconds={seconds} concurrency={concurrency} transport={transport} phones={phoneCount}{(transport == Transport.SignalR ? $" hubs={hubCount}" : "")} cores={Environment.ProcessorCount}"));

        var (phones, hubs) = await SetupAsync(target, phonesApi, adminKey, phoneCount, transport == Transport.SignalR ? hubCount : 0);

        // Warm-up: a few ceremonies per worker so JIT and connection set-up are not in the figures.
        var warm = new Counters();
        await RunWorkersAsync(api, phonesApi, phones, hubs, transport, concurrency, TimeSpan.FromSeconds(warmupSeconds), warm, null);
        Console.WriteLine(string.Create(c, $"warm-up: {warm.Completed} ceremonies, {warm.Errors} errors"));
        // Counted from here, over the measured ceremonies only (until 2026-12-01 the warm-up's commands were counted
        // too and divided by the measured ceremonies, which inflated "per ceremony" by (warm-up + run) / run).
        var redisBefore = args.Get("redis") is { } redisConfig ? await RedisCeiling.CommandsAsync(redisConfig) : 0;

        // Who uses the 2 cores: the server's CPU time from /proc/<pid>/stat, the generator's own.
        int? serverPid = args.Get("pid") is not null ? args.Int("pid") : TryFindListener(target.Port);
        var serverCpuBefore = serverPid is { } sp ? CpuSeconds(sp) : 0;
        var benchCpuBefore = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
        var machineBefore = MachineBusySeconds();
        var counters = new Counters();
        var requestsBefore = api.Requests + (phoneApi?.Requests ?? 0);
        var clock = Stopwatch.StartNew();
        using var progress = new CancellationTokenSource();
        var reporter = ReportAsync(counters, clock, progress.Token);
        await RunWorkersAsync(api, phonesApi, phones, hubs, transport, concurrency, TimeSpan.FromSeconds(seconds), counters, clock);
        var elapsed = clock.Elapsed.TotalSeconds;
        await progress.CancelAsync();
        await reporter;
        var requests = api.Requests + (phoneApi?.Requests ?? 0) - requestsBefore;
        var redisCommands = args.Get("redis") is { } redisAfter ? await RedisCeiling.CommandsAsync(redisAfter) - redisBefore : 0;
        var benchCpu = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds - benchCpuBefore;
        var serverCpu = serverPid is { } spid ? CpuSeconds(spid) - serverCpuBefore : double.NaN;
        var machineBusy = MachineBusySeconds() - machineBefore;

        var latencies = counters.Latencies.ToArray();
        Array.Sort(latencies);
        var rate = counters.Completed / elapsed;
        Console.WriteLine(string.Create(c,
            $"ceremonies: {counters.Completed} completed, {counters.Errors} errors in {elapsed:F1} s; {requests} HTTP requests ({requests / elapsed:F0} req/s)"));
        Console.WriteLine(string.Create(c,
            $"approve→approved push: p50={Percentile(latencies, 0.50):F2} p90={Percentile(latencies, 0.90):F2} p99={Percentile(latencies, 0.99):F2} max={(latencies.Length > 0 ? latencies[^1] : 0):F2} ms; pushed before the approve response arrived: {counters.PushBeforeResponse}"));
        Console.WriteLine(string.Create(c,
            $"cpu: server {serverCpu:F1} s ({serverCpu / elapsed * 100:F0}% of one core, pid {serverPid?.ToString(c) ?? "?"}), generator {benchCpu:F1} s ({benchCpu / elapsed * 100:F0}%), other processes {machineBusy - serverCpu - benchCpu:F1} s ({(machineBusy - serverCpu - benchCpu) / elapsed * 100:F0}%), machine busy {machineBusy / elapsed * 100:F0}% of {Environment.ProcessorCount * 100}%"));
        if (counters.Completed > 0)
        {
            Console.WriteLine(string.Create(c,
                $"cpu per ceremony: server {serverCpu / counters.Completed * 1e6:F0} µs, generator {benchCpu / counters.Completed * 1e6:F0} µs"));
        }
        foreach (var (what, n) in counters.ErrorKinds.OrderByDescending(e => e.Value).Take(8))
        {
            Console.WriteLine(string.Create(c, $"  error x{n}: {what}"));
        }

        foreach (var hub in hubs)
        {
            await hub.DisposeAsync();
        }

        // The ceiling: as many GET /healthz as the ceremonies sent HTTP requests, same concurrency.
        var serverCpuHealthz = serverPid is { } hp ? CpuSeconds(hp) : double.NaN;
        var benchCpuHealthz = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds;
        var machineHealthz = MachineBusySeconds();
        var ceiling = await HealthzAsync(api, requests, concurrency);
        serverCpuHealthz = (serverPid is { } hp2 ? CpuSeconds(hp2) : double.NaN) - serverCpuHealthz;
        benchCpuHealthz = Process.GetCurrentProcess().TotalProcessorTime.TotalSeconds - benchCpuHealthz;
        machineHealthz = MachineBusySeconds() - machineHealthz;
        Console.WriteLine(string.Create(c, $"healthz: {requests} requests at concurrency {concurrency}: {ceiling.Rate:F0} req/s, {ceiling.Errors} errors"));
        if (requests > 0)
        {
            Console.WriteLine(string.Create(c,
                $"cpu per healthz request: server {serverCpuHealthz / requests * 1e6:F0} µs, generator {benchCpuHealthz / requests * 1e6:F0} µs; other processes {(machineHealthz - serverCpuHealthz - benchCpuHealthz) / (requests / ceiling.Rate) * 100:F0}% of one core"));
        }
        Console.WriteLine(string.Create(c,
            $"ratio: ceremony HTTP req/s / healthz req/s = {requests / elapsed / ceiling.Rate:F3}; healthz req/s per ceremony/s = {ceiling.Rate / Math.Max(rate, 1e-9):F1}"));
        if (args.Get("redis") is { } redis && counters.Completed > 0)
        {
            // Redis's own ceiling, same run: as many raw version-checked writes as the ceremonies sent Redis commands.
            var perCeremony = (double)redisCommands / counters.Completed;
            var writesPerSecond = await RedisCeiling.MeasureAsync(redis, redisCommands, concurrency);
            var bound = writesPerSecond / perCeremony;
            Console.WriteLine(string.Create(c,
                $"redis: {redisCommands} commands during the run ({perCeremony:F1} per ceremony); {redisCommands} raw version-checked writes at concurrency {concurrency}: redis_writes/s={writesPerSecond:F0} redis_bound_ceremonies/s={bound:F0} ratio={rate / bound:F2}"));
        }
        Console.WriteLine(string.Create(c,
            $"ceremonies/s={rate:F1} p50_ms={Percentile(latencies, 0.50):F2} p99_ms={Percentile(latencies, 0.99):F2} ceiling_req/s={ceiling.Rate:F0}"));
        return 0;
    }

    /// <summary>Phones (user + device access token), spread over many users, and the desktops' hub connections.</summary>
    internal static async Task<(Phone[] Phones, DesktopHub[] Hubs)> SetupAsync(Uri target, Api phonesApi, string adminKey, int phoneCount, int hubCount)
    {
        var run = Guid.NewGuid().ToString("N")[..8];
        var phones = new Phone[phoneCount];
        await Parallel.ForEachAsync(Enumerable.Range(0, phoneCount), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, ct) =>
            phones[i] = await phonesApi.CreatePhoneAsync(adminKey, $"bench-{run}-{i}", ct));
        var hubs = new DesktopHub[hubCount];
        await Parallel.ForEachAsync(Enumerable.Range(0, hubs.Length), new ParallelOptions { MaxDegreeOfParallelism = 16 }, async (i, ct) =>
            hubs[i] = await DesktopHub.ConnectAsync(target, ct));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"setup: {phones.Length} phones, {hubs.Length} hub connections"));
        return (phones, hubs);
    }

    internal sealed class Counters
    {
        private long _completed;
        private long _errors;
        private long _pushBeforeResponse;

        public long Completed => Interlocked.Read(ref _completed);

        public long Errors => Interlocked.Read(ref _errors);

        public long PushBeforeResponse => Interlocked.Read(ref _pushBeforeResponse);

        public ConcurrentBag<double> Latencies { get; } = [];

        public ConcurrentDictionary<string, int> ErrorKinds { get; } = new(StringComparer.Ordinal);

        public void Complete(double latencyMs, bool pushBeforeResponse)
        {
            Latencies.Add(latencyMs);
            Interlocked.Increment(ref _completed);
            if (pushBeforeResponse)
            {
                Interlocked.Increment(ref _pushBeforeResponse);
            }
        }

        public void Fail(Exception e)
        {
            Interlocked.Increment(ref _errors);
            var what = e switch
            {
                BenchException => e.Message,
                TimeoutException => "timeout: " + e.Message,
                _ => e.GetType().Name + ": " + e.Message,
            };
            ErrorKinds.AddOrUpdate(what.Length > 160 ? what[..160] : what, 1, static (_, n) => n + 1);
        }
    }

    /// <summary>Workers run ceremonies until <paramref name="duration"/> is over, or <paramref name="count"/> were started.</summary>
    internal static async Task RunWorkersAsync(Api api, Api phoneApi, Phone[] phones, DesktopHub[] hubs, Transport transport, int concurrency,
        TimeSpan duration, Counters counters, Stopwatch? clock, long count = long.MaxValue)
    {
        var until = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
        long started = 0;
        var workers = Enumerable.Range(0, concurrency).Select(w => Task.Run(async () =>
        {
            var hub = hubs.Length > 0 ? hubs[w % hubs.Length] : null;
            while (Stopwatch.GetTimestamp() < until && Interlocked.Increment(ref started) <= count)
            {
                var phone = phones[(int)((ulong)Interlocked.Increment(ref s_nextPhone) % (ulong)phones.Length)];
                try
                {
                    var (latency, early) = await CeremonyAsync(api, phoneApi, phone, hub, transport);
                    counters.Complete(latency, early);
                }
                catch (Exception e)
                {
                    counters.Fail(e);
                    if (hub is { IsOpen: false })
                    {
                        counters.Fail(new BenchException($"worker {w} stops: its hub connection is closed ({hub.Error?.Message})"));
                        return;
                    }
                }
            }
        })).ToArray();
        await Task.WhenAll(workers);
    }

    /// <summary>One ceremony; returns the approve-response → desktop-approved latency in ms.</summary>
    private static async Task<(double LatencyMs, bool PushBeforeResponse)> CeremonyAsync(Api api, Api phoneApi, Phone phone, DesktopHub? hub, Transport transport)
    {
        using var timeout = new CancellationTokenSource(StepTimeout * 3);
        var ct = timeout.Token;
        var session = await api.CreateSessionAsync(ct);
        var watch = new SessionWatch(session.SessionId);
        SseStream? sse = null;
        try
        {
            if (hub is not null)
            {
                await hub.WatchAsync(watch, session.DesktopToken, ct);
            }
            else
            {
                sse = await SseStream.OpenAsync(api, session, watch, ct);
            }
            await Step(watch.Pending, "pending", ct);
            await phoneApi.ScanAsync(phone, session.QrToken, ct);
            var scanned = await Step(watch.Scanned, "scanned", ct);
            var number = scanned.NumberMatch ?? throw new BenchException("scanned snapshot without numberMatch");
            var approvedAt = await phoneApi.ApproveAsync(phone, session.SessionId, number, ct);
            var approved = await Step(watch.Approved, "approved", ct);
            var latency = Math.Max(0, approved.ReceivedAt - approvedAt) * 1000.0 / Stopwatch.Frequency;
            await api.ClaimAsync(session, ct);
            return (latency, approved.ReceivedAt < approvedAt);
        }
        finally
        {
            if (hub is not null)
            {
                try
                {
                    await hub.UnwatchAsync(session.SessionId, CancellationToken.None);
                }
                catch (Exception) when (!hub.IsOpen)
                {
                    // the worker notices the closed connection
                }
            }
            if (sse is not null)
            {
                await sse.DisposeAsync();
            }
        }
    }

    private static async Task<Seen> Step(Task<Seen> wait, string state, CancellationToken ct)
    {
        try
        {
            return await wait.WaitAsync(StepTimeout, ct);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"desktop did not see {state} within {StepTimeout.TotalSeconds:F0} s");
        }
    }

    internal static async Task ReportAsync(Counters counters, Stopwatch clock, CancellationToken ct)
    {
        var last = 0L;
        var lastAt = 0.0;
        try
        {
            while (true)
            {
                await Task.Delay(TimeSpan.FromSeconds(2), ct);
                var done = counters.Completed;
                var at = clock.Elapsed.TotalSeconds;
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  t={at,5:F1}s completed={done} errors={counters.Errors} rate={(done - last) / (at - lastAt):F0}/s"));
                (last, lastAt) = (done, at);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static async Task<(double Rate, long Errors)> HealthzAsync(Api api, long count, int concurrency)
    {
        long issued = 0, errors = 0;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(_ => Task.Run(async () =>
        {
            while (Interlocked.Increment(ref issued) <= count)
            {
                try
                {
                    if (!await api.HealthzAsync(CancellationToken.None))
                    {
                        Interlocked.Increment(ref errors);
                    }
                }
                catch (HttpRequestException)
                {
                    Interlocked.Increment(ref errors);
                }
            }
        })));
        return (count / clock.Elapsed.TotalSeconds, errors);
    }

    private static int? TryFindListener(int port)
    {
        try
        {
            return WaitingBench.FindListener(port);
        }
        catch (ArgumentException)
        {
            return null;
        }
    }

    /// <summary>utime + stime of a process, in seconds (/proc/&lt;pid&gt;/stat, clock ticks of 1/100 s).</summary>
    public static double CpuSeconds(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        // Fields after the ")" that closes the command name: state is field 3, utime 14, stime 15.
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / 100.0;
    }

    /// <summary>Non-idle CPU time of the whole machine, in seconds (first line of /proc/stat).</summary>
    public static double MachineBusySeconds()
    {
        var fields = File.ReadLines("/proc/stat").First().Split(' ', StringSplitOptions.RemoveEmptyEntries);
        long total = 0;
        for (var i = 1; i <= 8 && i < fields.Length; i++)
        {
            total += long.Parse(fields[i], CultureInfo.InvariantCulture);
        }
        var idle = long.Parse(fields[4], CultureInfo.InvariantCulture) + long.Parse(fields[5], CultureInfo.InvariantCulture);
        return (total - idle) / 100.0;
    }

    public static double Percentile(double[] sorted, double p)
    {
        if (sorted.Length == 0)
        {
            return 0;
        }
        var rank = (int)Math.Ceiling(p * sorted.Length) - 1;
        return sorted[Math.Clamp(rank, 0, sorted.Length - 1)];
    }
}
