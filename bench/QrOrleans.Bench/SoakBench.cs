using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace QrOrleans.Bench;

/// <summary>
/// A soak with faults: a private Redis and its own nodes (<see cref="LocalCluster"/>), ceremonies at a steady rate
/// (desktop on one node, phone on the next; watched over SignalR and SSE alternately), one node killed with kill -9
/// and started again midway, Redis shut down and started again later. Every ceremony started is classified:
/// completed, refused (by code), or lost: the phone's approve answered 200, yet the desktop was never told
/// (through any node it reconnected to), or could not claim, or the claimed device is not in the phone's list.
/// </summary>
public static class SoakBench
{
    private static readonly TimeSpan PushWait = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan ApprovedWait = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan CeremonyBudget = TimeSpan.FromSeconds(100);
    private const int Victim = 1; // node 2

    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public static async Task<int> RunAsync(Args args)
    {
        var seconds = args.Int("seconds");
        var rate = Math.Max(1, args.Int("rate", 20));
        var phoneCount = Math.Max(1, args.Int("phones", Math.Clamp(rate * 20, 100, 2000)));
        var killAt = args.Int("kill-at", seconds * 35 / 100);
        var redisAt = args.Int("redis-at", seconds * 70 / 100);
        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            Console.Error.WriteLine("soak: stopping (Ctrl-C)");
            stop.Cancel();
        };

        await using var cluster = await LocalCluster.StartAsync(args, stop.Token);
        var urls = cluster.Nodes.Select(n => n.BaseAddress).ToList();
        var n = urls.Count;
        var tally = new Tally();
        using var client = new FailoverClient(urls, tally);
        var apis = urls.Select(u => new Api(u)).ToList();
        await using var hubs = new HubPool(urls);
        try
        {
            Console.WriteLine(string.Create(C,
                $"soak: seconds={seconds} rate={rate}/s nodes={n} phones={phoneCount} kill node {Victim + 1} at {killAt}s, restart Redis at {redisAt}s, fsync={cluster.Redis.Fsync}, cores={Environment.ProcessorCount}"));
            var run = Guid.NewGuid().ToString("N")[..8];
            var phones = new Phone[phoneCount];
            await Parallel.ForEachAsync(Enumerable.Range(0, phoneCount), new ParallelOptions { MaxDegreeOfParallelism = 8, CancellationToken = stop.Token },
                async (i, ct) => phones[i] = await apis[i % n].CreatePhoneAsync(LocalCluster.AdminKey, $"soak-{run}-{i}", ct));
            Console.WriteLine(string.Create(C, $"soak: {phoneCount} phones bootstrapped through the operator API"));

            var soak = new Soak(client, hubs, apis, tally, phones, n);
            var clock = Stopwatch.StartNew();
            var faults = FaultsAsync(cluster, soak, killAt, redisAt, seconds, stop.Token);
            var reporter = ReportAsync(soak, clock, seconds, stop.Token);
            var ceremonies = new List<Task>();
            var interval = 1.0 / rate;
            for (long i = 0; !stop.IsCancellationRequested; i++)
            {
                var due = i * interval;
                if (due >= seconds)
                {
                    break;
                }
                var wait = due - clock.Elapsed.TotalSeconds;
                if (wait > 0)
                {
                    await Task.Delay(TimeSpan.FromSeconds(wait), stop.Token).ContinueWith(_ => { }, TaskScheduler.Default);
                }
                var index = i;
                ceremonies.Add(Task.Run(() => soak.CeremonyAsync(index, stop.Token)));
            }
            Console.WriteLine(string.Create(C, $"soak: {ceremonies.Count} ceremonies started in {clock.Elapsed.TotalSeconds:F1} s; waiting for those in flight"));
            await Task.WhenAll(ceremonies);
            var windows = await faults;
            await reporter.ContinueWith(_ => { }, TaskScheduler.Default);
            var ok = Report(soak, tally, windows, clock.Elapsed.TotalSeconds);
            cluster.KeepDir = !ok || args.Get("keep") is "true" or "yes";
            return ok ? 0 : 1;
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
    }

    /// <summary>A fault's window: from the fault until every probe answered again (seconds).</summary>
    public sealed record Window(string Name, long Start, double Seconds)
    {
        public long End => Start + (long)(Seconds * Stopwatch.Frequency);

        public bool Overlaps(Tally.Entry e) => e.Start <= End && e.End >= Start;
    }

    private static async Task<List<Window>> FaultsAsync(LocalCluster cluster, Soak soak, int killAt, int redisAt, int seconds, CancellationToken ct)
    {
        var windows = new List<Window>();
        var clock = Stopwatch.StartNew();
        try
        {
            if (killAt < seconds)
            {
                await Task.Delay(TimeSpan.FromSeconds(Math.Max(0, killAt - 2)), ct);
                var victim = cluster.Nodes[Victim];
                var survivors = cluster.Nodes.Where(x => x != victim).Select(x => x.BaseAddress).ToList();
                // A few sessions of its own on the victim, so that the window is measured even if no ceremony's
                // session happens to live there at the kill.
                var probes = await FailoverBench.CreateOnAsync(victim.BaseAddress, 4, ct);
                await Task.Delay(TimeSpan.FromSeconds(Math.Max(0, killAt - clock.Elapsed.TotalSeconds)), ct);
                var live = soak.LiveOn(Victim);
                // From the moment of the kill, not from its end (Kill waits for the process to be gone).
                var killed = Stopwatch.GetTimestamp();
                victim.Kill();
                soak.Event($"node {Victim + 1} killed (kill -9) with {live.Count} ceremony sessions and {probes.Count} probe sessions on it");
                var times = await Task.WhenAll(probes.Concat(live).Select((s, i) => FailoverBench.FirstAnswerAsync(survivors[i % survivors.Count], s, killed, ct)));
                var window = times.Max();
                windows.Add(new Window("failover", killed, window));
                soak.Event(string.Create(C, $"every session of node {Victim + 1} answered from a survivor {window:F2} s after the kill (slowest of {times.Length})"));
                var restart = Stopwatch.StartNew();
                await victim.RestartAsync(TimeSpan.FromSeconds(90), ct);
                soak.Event(string.Create(C, $"node {Victim + 1} started again, ready in {restart.Elapsed.TotalSeconds:F1} s"));
            }
            if (redisAt < seconds)
            {
                await Task.Delay(TimeSpan.FromSeconds(Math.Max(0, redisAt - clock.Elapsed.TotalSeconds)), ct);
                var down = Stopwatch.GetTimestamp();
                await cluster.Redis.RestartAsync(ct);
                var upAfter = Stopwatch.GetElapsedTime(down).TotalSeconds;
                // Until each node writes again: a session created on it.
                var back = await Task.WhenAll(cluster.Nodes.Select(node => FailoverBench.UntilCreatedAsync(node.BaseAddress, down, ct)));
                var window = back.Max();
                windows.Add(new Window("redis", down, window));
                soak.Event(string.Create(C, $"Redis shut down and started again (answering after {upAfter:F2} s); every node wrote again {window:F2} s after the shutdown"));
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        return windows;
    }

    private static async Task ReportAsync(Soak soak, Stopwatch clock, int seconds, CancellationToken ct)
    {
        var every = TimeSpan.FromSeconds(seconds >= 120 ? 30 : 10);
        while (!ct.IsCancellationRequested && !soak.AllDone(clock, seconds))
        {
            await Task.Delay(every, ct);
            Console.WriteLine(string.Create(C,
                $"  t={clock.Elapsed.TotalSeconds,5:F0}s started={soak.Started} completed={soak.Completed} refused={soak.RefusedCount} lost={soak.LostCount} in_flight={soak.InFlight}"));
        }
    }

    private static bool Report(Soak soak, Tally tally, List<Window> windows, double elapsed)
    {
        foreach (var e in soak.Events)
        {
            Console.WriteLine("fault: " + e);
        }
        foreach (var (code, count) in soak.Refusals.OrderByDescending(r => r.Value))
        {
            Console.WriteLine(string.Create(C, $"refused x{count}: {code}"));
        }
        foreach (var lost in soak.Lost)
        {
            Console.WriteLine("LOST: " + lost);
        }
        var entries = tally.Entries.ToList();
        var inside = entries.Where(e => windows.Any(w => w.Overlaps(e))).ToList();
        var outside = entries.Where(e => !windows.Any(w => w.Overlaps(e))).ToList();
        var unavailable = outside.Where(e => !e.Available).ToList();
        foreach (var group in inside.Where(e => !e.Available).GroupBy(e => windows.First(w => w.Overlaps(e)).Name + ": " + Shape(e.What)).OrderByDescending(g => g.Count()))
        {
            Console.WriteLine(string.Create(C, $"unavailable inside the {group.Key} x{group.Count()}"));
        }
        foreach (var group in unavailable.GroupBy(e => Shape(e.What)).OrderByDescending(g => g.Count()))
        {
            Console.WriteLine(string.Create(C, $"unavailable OUTSIDE the windows x{group.Count()}: {group.Key} (at {string.Join(", ", group.Take(10).Select(e => At(soak, e.Start)))})"));
        }
        var availability = outside.Count == 0 ? 100.0 : 100.0 * (outside.Count - unavailable.Count) / outside.Count;
        var all = entries.Count == 0 ? 100.0 : 100.0 * entries.Count(e => e.Available) / entries.Count;
        var failover = windows.FirstOrDefault(w => w.Name == "failover");
        var redis = windows.FirstOrDefault(w => w.Name == "redis");
        Console.WriteLine(string.Create(C,
            $"requests: {entries.Count} ({entries.Count / elapsed:F0}/s) in {elapsed:F0} s; outside the windows {outside.Count}, unavailable {unavailable.Count}; inside {inside.Count}, unavailable {inside.Count(e => !e.Available)}; failed over to another node {tally.FailedOver}; availability over everything {all:F3}%"));
        Console.WriteLine(string.Create(C,
            $"soak: failover_window={(failover is null ? "none" : $"{failover.Seconds:F2}s")} redis_window={(redis is null ? "none" : $"{redis.Seconds:F2}s")} (requests overlapping them are left out of availability)"));
        Console.WriteLine(string.Create(C,
            $"soak: started={soak.Started} completed={soak.Completed} refused={soak.RefusedCount} lost={soak.LostCount} availability={availability:F3}%"));
        return soak.LostCount == 0 && availability >= 99.9 && (failover is null || failover.Seconds <= 3);
    }

    private static string At(Soak soak, long timestamp) => string.Create(C, $"t={soak.Seconds(timestamp):F1}s");

    /// <summary>A request's description without ids, so that equal failures group.</summary>
    private static string Shape(string what) => what.Length > 90 ? what[..90] : what;

    /// <summary>The run's ceremonies: what each came to.</summary>
    private sealed class Soak(FailoverClient client, HubPool hubs, IReadOnlyList<Api> apis, Tally tally, Phone[] phones, int nodes)
    {
        private readonly long _t0 = Stopwatch.GetTimestamp();
        private readonly ConcurrentDictionary<string, (CreatedSession Session, int Node)> _live = new(StringComparer.Ordinal);
        private readonly ConcurrentQueue<string> _events = new();
        private readonly ConcurrentQueue<string> _lost = new();
        private long _started;
        private long _completed;
        private long _refused;
        private long _lostCount;

        public ConcurrentDictionary<string, int> Refusals { get; } = new(StringComparer.Ordinal);

        public IEnumerable<string> Events => _events;

        public IEnumerable<string> Lost => _lost;

        public long Started => Interlocked.Read(ref _started);

        public long Completed => Interlocked.Read(ref _completed);

        public long RefusedCount => Interlocked.Read(ref _refused);

        public long LostCount => Interlocked.Read(ref _lostCount);

        public long InFlight => Started - Completed - RefusedCount - LostCount;

        public bool AllDone(Stopwatch clock, int seconds) => clock.Elapsed.TotalSeconds > seconds && InFlight == 0;

        public double Seconds(long timestamp) => (double)(timestamp - _t0) / Stopwatch.Frequency;

        public void Event(string what)
        {
            var line = string.Create(C, $"t={Seconds(Stopwatch.GetTimestamp()):F1}s {what}");
            _events.Enqueue(line);
            Console.WriteLine("  " + line);
        }

        /// <summary>The sessions of ceremonies in flight whose session lives on <paramref name="node"/>.</summary>
        public List<CreatedSession> LiveOn(int node) => _live.Values.Where(v => v.Node == node).Select(v => v.Session).ToList();

        public async Task CeremonyAsync(long index, CancellationToken stop)
        {
            Interlocked.Increment(ref _started);
            var phone = phones[index % phones.Length];
            var desktopNode = (int)(index % nodes);
            var phoneNode = (desktopNode + 1) % nodes;
            var transport = index % 2 == 0 ? Transport.SignalR : Transport.Sse;
            var story = new List<string>();
            var started = Seconds(Stopwatch.GetTimestamp());
            using var budget = CancellationTokenSource.CreateLinkedTokenSource(stop);
            budget.CancelAfter(CeremonyBudget);
            var ct = budget.Token;
            FailoverDesktop? desktop = null;
            using var watching = new CancellationTokenSource();
            Task? watch = null;
            var approved = false;
            try
            {
                var create = await Step(story, "create", client.SendAsync("create", desktopNode, HttpMethod.Post, "v1/qr/sessions", "{}", ct: ct));
                if (create.Status != 201)
                {
                    Refuse("create: " + create.Why);
                    return;
                }
                var session = Created(create.Body);
                _live[session.SessionId] = (session, create.Node);
                desktop = new FailoverDesktop(session, create.Node);
                watch = Task.Run(() => desktop.RunAsync(transport, hubs, apis, tally, watching.Token), CancellationToken.None);
                if (!await desktop.WaitForAsync(d => d.Version >= 1, PushWait, ct))
                {
                    Refuse($"desktop ({transport}) not told of its pending session");
                    return;
                }
                var scan = await Step(story, "scan", client.SendAsync("scan", phoneNode, HttpMethod.Post, "v1/qr/scan",
                    $$"""{"token":"{{session.QrToken}}"}""", bearer: phone.Bearer.Parameter, ct: ct));
                if (scan.Status != 200)
                {
                    Refuse("scan: " + scan.Why);
                    return;
                }
                if (!await desktop.WaitForAsync(d => d.NumberMatch is not null, PushWait, ct))
                {
                    Refuse($"desktop ({transport}) not told of the scan (it saw {desktop.State})");
                    return;
                }
                var approve = await Step(story, "approve", client.SendAsync("approve", phoneNode, HttpMethod.Post, $"v1/qr/sessions/{session.SessionId}/approve",
                    $$"""{"number":"{{desktop.NumberMatch}}"}""", bearer: phone.Bearer.Parameter, ct: ct));
                approved = approve.Status == 200;
                if (!approved)
                {
                    // A retried approve whose first attempt did commit answers qr_already_used: then the desktop is told.
                    if (!await desktop.WaitForAsync(IsApproved, TimeSpan.FromSeconds(5), ct))
                    {
                        Refuse("approve: " + approve.Why);
                        return;
                    }
                    story.Add("approve did not answer 200, but the desktop was told approved");
                }
                else if (!await desktop.WaitForAsync(IsApproved, ApprovedWait, ct))
                {
                    Lose($"the desktop was never told approved (last told: {desktop.State} v{desktop.Version})");
                    return;
                }
                var claim = await Step(story, "claim", client.SendAsync("claim", desktop.Node, HttpMethod.Post, $"v1/qr/sessions/{session.SessionId}/claim",
                    bearer: session.DesktopToken, budget: TimeSpan.FromSeconds(30), ct: ct));
                if (claim.Status != 200)
                {
                    Fail("claim: " + claim.Why);
                    return;
                }
                var deviceId = claim.Body.GetProperty("device").GetProperty("id").GetString();
                var devices = await Step(story, "devices", client.SendAsync("devices", phoneNode, HttpMethod.Get, "v1/devices", bearer: phone.Bearer.Parameter, ct: ct));
                if (devices.Status != 200)
                {
                    Fail("GET /v1/devices: " + devices.Why);
                    return;
                }
                if (!devices.Body.EnumerateArray().Any(d => d.GetProperty("id").GetString() == deviceId))
                {
                    Fail("the claimed device is not in the phone's device list");
                    return;
                }
                Interlocked.Increment(ref _completed);
            }
            catch (OperationCanceledException) when (budget.IsCancellationRequested)
            {
                Fail(stop.IsCancellationRequested ? "stopped" : $"no end within {CeremonyBudget.TotalSeconds:F0} s");
            }
            catch (Exception e)
            {
                Fail($"bench error {e.GetType().Name}: {e.Message}");
            }
            finally
            {
                if (desktop is not null)
                {
                    _live.TryRemove(desktop.SessionId, out _);
                }
                await watching.CancelAsync();
                if (watch is not null)
                {
                    await watch;
                }
            }

            void Refuse(string code)
            {
                Interlocked.Increment(ref _refused);
                Refusals.AddOrUpdate(code, 1, static (_, k) => k + 1);
            }

            void Lose(string why)
            {
                Interlocked.Increment(ref _lostCount);
                var watchNotes = desktop is null ? "" : $"; desktop reconnects {desktop.Reconnects}: {string.Join(" | ", desktop.Breaks)}";
                _lost.Enqueue(string.Create(C,
                    $"ceremony {index} started t={started:F1}s {transport} desktop node{desktopNode + 1} phone node{phoneNode + 1} session {desktop?.SessionId}: {why}; steps {string.Join(" ", story)}{watchNotes}"));
            }

            // After the phone's approve answered 200 a failure is a loss; before, a refusal.
            void Fail(string why)
            {
                if (approved)
                {
                    Lose(why);
                }
                else
                {
                    Refuse(why);
                }
            }
        }

        private static bool IsApproved(FailoverDesktop d) => d.State is "approved" or "completed";

        private async Task<Answer> Step(List<string> story, string name, Task<Answer> call)
        {
            var answer = await call;
            story.Add(string.Create(C, $"{name}@t={Seconds(Stopwatch.GetTimestamp()):F1}s{answer.Trail}"));
            return answer;
        }

        private static CreatedSession Created(JsonElement root)
        {
            var url = root.GetProperty("qr").GetProperty("url").GetString()!;
            return new CreatedSession(root.GetProperty("sessionId").GetString()!, root.GetProperty("desktopToken").GetString()!,
                url[(url.LastIndexOf('/') + 1)..].TrimStart('#'));
        }
    }
}
