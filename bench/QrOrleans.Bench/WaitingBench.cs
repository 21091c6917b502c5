using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace QrOrleans.Bench;

/// <summary>
/// Holds <c>count</c> desktops watching their pending sessions at once, each over its own WebSocket (SignalR) or
/// its own event stream (SSE), as real desktops do, and reports the server's RSS growth per waiting desktop.
/// </summary>
public static partial class WaitingBench
{
    public static async Task<int> RunAsync(Args args)
    {
        var target = args.Target();
        var count = Math.Max(1, args.Int("count"));
        var transport = args.Transport();
        var parallel = Math.Max(1, args.Int("parallel", 64));
        var settle = args.Int("settle", 5);
        var warmup = args.Int("warmup", 200);
        var pid = args.Get("pid") is not null ? args.Int("pid") : FindListener(target.Port);
        // To split the figure: "sessions" creates the sessions but watches none; "connections" opens the hub
        // connections (handshake done) but creates no session; "http" holds idle keep-alive HTTP/1.1 connections
        // that each answered one GET /healthz (Kestrel's own cost); "all" is the real thing.
        var part = (args.Get("part") ?? "all") switch
        {
            "all" => Part.All,
            "sessions" => Part.Sessions,
            "connections" when transport == Transport.SignalR => Part.Connections,
            "http" => Part.Http,
            var other => throw new ArgumentException($"--part must be all, sessions or connections (SignalR only), not '{other}'"),
        };
        var c = CultureInfo.InvariantCulture;
        Console.WriteLine(string.Create(c,
            $"waiting: target={target} count={count} transport={transport} part={part} server pid={pid} parallel={parallel} cores={Environment.ProcessorCount}"));

        using var api = new Api(target);

        // Warm-up: the same path a few hundred times (JIT, pools, first allocations), then let go of them.
        if (warmup > 0)
        {
            var warm = await HoldAsync(api, transport, Part.All, warmup, parallel, quiet: true);
            await warm.DisposeAsync();
            Console.WriteLine(string.Create(c, $"warm-up: {warm.Watching} desktops watched and closed ({warm.Errors} errors)"));
        }
        await Task.Delay(TimeSpan.FromSeconds(settle));
        var before = VmRssKb(pid);
        Console.WriteLine(string.Create(c, $"server VmRSS before: {before} kB"));

        var clock = Stopwatch.StartNew();
        await using var held = await HoldAsync(api, transport, part, count, parallel, quiet: false);
        var opened = clock.Elapsed.TotalSeconds;
        Console.WriteLine(string.Create(c,
            $"{held.Watching} desktops watching ({held.Errors} errors) after {opened:F1} s; settling {settle} s"));
        await Task.Delay(TimeSpan.FromSeconds(settle));
        var after = VmRssKb(pid);
        var alive = held.Alive();
        Console.WriteLine(string.Create(c, $"server VmRSS after: {after} kB (+{after - before} kB); still connected: {alive}/{held.Watching}"));
        foreach (var (what, n) in held.ErrorKinds.OrderByDescending(e => e.Value).Take(5))
        {
            Console.WriteLine(string.Create(c, $"  error x{n}: {what}"));
        }
        var perWaiting = alive > 0 ? (after - before) / (double)alive : double.NaN;
        Console.WriteLine(string.Create(c, $"waiting={alive} kb_per_waiting={perWaiting:F1}"));
        return held.Errors == 0 && alive == count ? 0 : 1;
    }

    /// <summary>What is being held open: hub connections or event streams, one per desktop.</summary>
    private sealed class Held : IAsyncDisposable
    {
        public List<DesktopHub> Hubs { get; } = [];
        public List<SseStream> Streams { get; } = [];
        public List<SessionWatch> Watches { get; } = [];
        public List<IdleHttpConnection> Sockets { get; } = [];
        public Dictionary<string, int> ErrorKinds { get; } = new(StringComparer.Ordinal);
        public int Watching { get; set; }
        public int Errors { get; set; }

        /// <summary>Desktops whose connection is still open and whose watch has not failed.</summary>
        public int Alive()
        {
            lock (this)
            {
                var failed = Watches.Count(w => w.Pending.IsFaulted || w.Scanned.IsFaulted);
                var closedHubs = Hubs.Count(h => !h.IsOpen) + Sockets.Count(t => !t.IsOpen);
                return Watching - Math.Max(failed, closedHubs);
            }
        }

        public async ValueTask DisposeAsync()
        {
            await Parallel.ForEachAsync(Hubs, new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (h, _) => await h.DisposeAsync());
            foreach (var t in Sockets)
            {
                t.Dispose();
            }
            await Parallel.ForEachAsync(Streams, new ParallelOptions { MaxDegreeOfParallelism = 32 }, async (s, _) => await s.DisposeAsync());
        }
    }

    private enum Part
    {
        All,
        Sessions,
        Connections,
        Http,
    }

    private static async Task<Held> HoldAsync(Api api, Transport transport, Part part, int count, int parallel, bool quiet)
    {
        var held = new Held();
        var done = 0;
        await Parallel.ForEachAsync(Enumerable.Range(0, count), new ParallelOptions { MaxDegreeOfParallelism = parallel }, async (_, ct) =>
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            DesktopHub? hub = null;
            SseStream? sse = null;
            try
            {
                SessionWatch? watch = null;
                if (part == Part.Http)
                {
                    var tcp = await IdleHttpConnection.OpenAsync(api.Target, timeout.Token);
                    lock (held)
                    {
                        held.Sockets.Add(tcp);
                    }
                }
                else if (part == Part.Connections)
                {
                    hub = await DesktopHub.ConnectAsync(api.Target, timeout.Token);
                }
                else
                {
                    var session = await api.CreateSessionAsync(timeout.Token);
                    watch = new SessionWatch(session.SessionId);
                    if (part == Part.Sessions)
                    {
                        // created, nobody watching
                    }
                    else if (transport == Transport.SignalR)
                    {
                        hub = await DesktopHub.ConnectAsync(api.Target, timeout.Token);
                        await hub.WatchAsync(watch, session.DesktopToken, timeout.Token);
                        await watch.Pending.WaitAsync(timeout.Token);
                    }
                    else
                    {
                        sse = await SseStream.OpenAsync(api, session, watch, timeout.Token);
                        await watch.Pending.WaitAsync(timeout.Token);
                    }
                }
                lock (held)
                {
                    if (watch is not null)
                    {
                        held.Watches.Add(watch);
                    }
                    if (hub is not null)
                    {
                        held.Hubs.Add(hub);
                    }
                    if (sse is not null)
                    {
                        held.Streams.Add(sse);
                    }
                    held.Watching++;
                }
            }
            catch (Exception e)
            {
                if (hub is not null)
                {
                    await hub.DisposeAsync();
                }
                if (sse is not null)
                {
                    await sse.DisposeAsync();
                }
                lock (held)
                {
                    held.Errors++;
                    var what = e is BenchException ? e.Message : e.GetType().Name + ": " + e.Message;
                    held.ErrorKinds[what] = held.ErrorKinds.GetValueOrDefault(what) + 1;
                }
            }
            var n = Interlocked.Increment(ref done);
            if (!quiet && n % 1000 == 0)
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  {n}/{count} desktops set up"));
            }
        });
        return held;
    }

    /// <summary>VmRSS of the process, in kB, from /proc/&lt;pid&gt;/status.</summary>
    public static long VmRssKb(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return long.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }
        throw new InvalidOperationException($"no VmRSS in /proc/{pid}/status");
    }

    /// <summary>The pid listening on the port, from `ss -ltnpH`; or an error asking for --pid.</summary>
    public static int FindListener(int port)
    {
        try
        {
            using var ss = Process.Start(new ProcessStartInfo("ss", "-ltnpH") { RedirectStandardOutput = true, UseShellExecute = false })!;
            var output = ss.StandardOutput.ReadToEnd();
            ss.WaitForExit();
            foreach (var line in output.Split('\n'))
            {
                // LISTEN 0 512 127.0.0.1:5080 0.0.0.0:* users:(("QrOrleans.Gatew",pid=1234,fd=300))
                var columns = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (columns.Length >= 4 && columns[3].EndsWith(":" + port.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
                    && PidRegex().Match(line) is { Success: true } m)
                {
                    return int.Parse(m.Groups[1].ValueSpan, CultureInfo.InvariantCulture);
                }
            }
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // no ss on this machine
        }
        throw new ArgumentException($"could not find the process listening on port {port}; pass --pid");
    }

    [GeneratedRegex(@"pid=(\d+)")]
    private static partial Regex PidRegex();
}

/// <summary>A raw keep-alive HTTP/1.1 connection that answered one GET /healthz and then sits idle.</summary>
public sealed class IdleHttpConnection : IDisposable
{
    private readonly System.Net.Sockets.Socket _socket;

    private IdleHttpConnection(System.Net.Sockets.Socket socket) => _socket = socket;

    public bool IsOpen => _socket.Connected && !(_socket.Poll(0, System.Net.Sockets.SelectMode.SelectRead) && _socket.Available == 0);

    public static async Task<IdleHttpConnection> OpenAsync(Uri target, CancellationToken ct)
    {
        var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        try
        {
            await socket.ConnectAsync(target.Host, target.Port, ct);
            await socket.SendAsync(System.Text.Encoding.ASCII.GetBytes($"GET /healthz HTTP/1.1\r\nHost: {target.Authority}\r\n\r\n"), ct);
            var buffer = new byte[1024];
            var filled = 0;
            while (true)
            {
                var n = await socket.ReceiveAsync(buffer.AsMemory(filled), ct);
                if (n == 0)
                {
                    throw new BenchException("healthz connection closed");
                }
                filled += n;
                var text = System.Text.Encoding.ASCII.GetString(buffer, 0, filled);
                if (text.Contains("\r\n\r\nok", StringComparison.Ordinal))
                {
                    return new IdleHttpConnection(socket);
                }
            }
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public void Dispose() => _socket.Dispose();
}
