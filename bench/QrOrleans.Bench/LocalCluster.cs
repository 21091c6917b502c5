using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text;

namespace QrOrleans.Bench;

/// <summary>
/// Every process the bench started. A run that ends any other way than through its own clean-up (Ctrl-C, SIGTERM,
/// an exception nobody caught) still kills them: nothing outlives the bench.
/// </summary>
public static class ChildProcesses
{
    private static readonly HashSet<Process> s_live = [];
    private static readonly object s_lock = new();
    private static PosixSignalRegistration? s_sigterm;

    static ChildProcesses()
    {
        AppDomain.CurrentDomain.ProcessExit += (_, _) => KillAll();
        AppDomain.CurrentDomain.UnhandledException += (_, _) => KillAll();
        s_sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, _ => KillAll());
    }

    public static void Add(Process process)
    {
        lock (s_lock)
        {
            s_live.Add(process);
        }
    }

    public static void Remove(Process process)
    {
        lock (s_lock)
        {
            s_live.Remove(process);
        }
    }

    public static void KillAll()
    {
        Process[] all;
        lock (s_lock)
        {
            all = [.. s_live];
            s_live.Clear();
        }
        foreach (var process in all)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
            {
                // already gone
            }
        }
        GC.KeepAlive(s_sigterm);
    }
}

/// <summary>
/// A private <c>redis-server</c> on a free loopback port, in the foreground as the bench's child, with its AOF and
/// config in a temp dir: <c>appendonly yes</c>, <c>appendfsync everysec</c> (or <c>always</c>), no RDB snapshots.
/// <see cref="RestartAsync"/> is SHUTDOWN (which fsyncs the AOF) and a start on the same port and dir.
/// </summary>
public sealed class LocalRedis : IAsyncDisposable
{
    private readonly string _server;
    private readonly string _conf;
    private Process? _process;

    private LocalRedis(string server, string dir, int port, string fsync)
    {
        _server = server;
        Dir = dir;
        Port = port;
        Fsync = fsync;
        _conf = Path.Combine(dir, "redis.conf");
        File.WriteAllText(_conf, $"""
            bind 127.0.0.1
            port {port}
            protected-mode yes
            daemonize no
            dir {dir}
            logfile {Path.Combine(dir, "redis.log")}
            appendonly yes
            appendfsync {fsync}
            save ""
            maxclients 4000

            """);
    }

    public string Dir { get; }

    public int Port { get; }

    public string Fsync { get; }

    public string ConnectionString => $"127.0.0.1:{Port}";

    /// <param name="fsync"><c>everysec</c> or <c>always</c>.</param>
    public static async Task<LocalRedis> StartAsync(string dir, string fsync, CancellationToken ct)
    {
        var redis = new LocalRedis(FindServer(), dir, LocalNode.FreePort(), fsync);
        await redis.StartAsync(ct);
        return redis;
    }

    /// <summary>The redis-server binary, as <c>command -v redis-server</c> finds it.</summary>
    public static string FindServer()
    {
        var psi = new ProcessStartInfo("/bin/sh") { RedirectStandardOutput = true, UseShellExecute = false };
        psi.ArgumentList.Add("-c");
        psi.ArgumentList.Add("command -v redis-server");
        using var sh = Process.Start(psi)!;
        var path = sh.StandardOutput.ReadToEnd().Trim();
        sh.WaitForExit();
        return sh.ExitCode == 0 && path.Length > 0
            ? path
            : throw new BenchException("redis-server not found (command -v redis-server); install it (apt-get install redis-server)");
    }

    public async Task StartAsync(CancellationToken ct)
    {
        var psi = new ProcessStartInfo(_server) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(_conf);
        var process = Process.Start(psi)!;
        ChildProcesses.Add(process);
        _process = process;
        _ = process.StandardOutput.ReadToEndAsync(CancellationToken.None);
        _ = process.StandardError.ReadToEndAsync(CancellationToken.None);
        var watch = Stopwatch.StartNew();
        while (!await PingAsync())
        {
            if (process.HasExited)
            {
                throw new BenchException($"redis-server exited with {process.ExitCode}: {Tail(Path.Combine(Dir, "redis.log"))}");
            }
            if (watch.Elapsed > TimeSpan.FromSeconds(30))
            {
                throw new BenchException("redis-server does not answer PING within 30 s");
            }
            await Task.Delay(20, ct);
        }
    }

    /// <summary>SHUTDOWN (the AOF is flushed and fsynced first) and waits for the process to end.</summary>
    public async Task ShutdownAsync()
    {
        try
        {
            await CommandAsync("SHUTDOWN");
        }
        catch (Exception e) when (e is SocketException or IOException)
        {
            // the server closes the connection as it goes
        }
        if (_process is { } p)
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            await p.WaitForExitAsync(timeout.Token);
            ChildProcesses.Remove(p);
            p.Dispose();
            _process = null;
        }
    }

    public async Task RestartAsync(CancellationToken ct)
    {
        await ShutdownAsync();
        await StartAsync(ct);
    }

    public async Task<bool> PingAsync()
    {
        try
        {
            return (await CommandAsync("PING")).StartsWith("+PONG", StringComparison.Ordinal);
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>One inline command over a plain socket; the first line of the answer.</summary>
    public async Task<string> CommandAsync(string command)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, Port, timeout.Token);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(command + "\r\n"), timeout.Token);
        var buffer = new byte[4096];
        var read = await stream.ReadAsync(buffer, timeout.Token);
        var text = Encoding.ASCII.GetString(buffer, 0, read);
        var end = text.IndexOf("\r\n", StringComparison.Ordinal);
        return end >= 0 ? text[..end] : text;
    }

    private static string Tail(string file) => File.Exists(file) ? string.Join('\n', File.ReadLines(file).TakeLast(10)) : "(no log)";

    public async ValueTask DisposeAsync()
    {
        if (_process is { } p)
        {
            try
            {
                p.Kill(entireProcessTree: true);
                await p.WaitForExitAsync(CancellationToken.None);
            }
            catch (InvalidOperationException)
            {
                // already gone
            }
            ChildProcesses.Remove(p);
            p.Dispose();
            _process = null;
        }
    }
}

/// <summary>
/// One gateway node (a co-hosted silo) from the build: <c>dotnet QrOrleans.Gateway.dll</c> on loopback, Redis
/// clustering, its own HTTP, silo and gateway ports, kept across restarts. Its output goes to a log file.
/// <see cref="Kill"/> is kill -9 (Process.Kill): no shutdown, no goodbye to the membership table.
/// </summary>
public sealed class LocalNode : IAsyncDisposable
{
    private readonly string _gatewayDll;
    private readonly string _workingDirectory;
    private readonly IReadOnlyList<string> _args;
    private readonly string _log;
    private readonly object _logLock = new();
    private Process? _process;

    public LocalNode(int number, string gatewayDll, string? contentRoot, string redis, string clusterId, string publicOrigin,
        string adminKey, string vaultKey, string logDir, int port)
    {
        Number = number;
        _gatewayDll = gatewayDll;
        _workingDirectory = Path.GetDirectoryName(gatewayDll)!;
        Port = port;
        SiloPort = FreePort();
        GatewayPort = FreePort();
        BaseAddress = new Uri($"http://127.0.0.1:{port}/");
        _log = Path.Combine(logDir, $"node{number}.log");
        List<string> args =
        [
            "--urls", $"http://127.0.0.1:{port}",
            "--QrOrleans:Cluster:Provider=Redis",
            $"--QrOrleans:Cluster:Redis={redis}",
            $"--QrOrleans:Cluster:ClusterId={clusterId}",
            $"--QrOrleans:Cluster:ServiceId={clusterId}",
            $"--QrOrleans:Cluster:SiloPort={SiloPort}",
            $"--QrOrleans:Cluster:GatewayPort={GatewayPort}",
            "--QrOrleans:Cluster:AdvertisedAddress=127.0.0.1",
            $"--QrOrleans:PublicOrigin={publicOrigin}",
            $"--QrOrleans:AdminApiKey={adminKey}",
            $"--QrOrleans:Vault:Keys:1={vaultKey}",
            "--QrOrleans:Vault:CurrentVersion=1",
            "--QrOrleans:Demo=false",
            "--QrOrleans:RateLimiting:Enabled=false",
            // warnings and lifecycle lines only: a line per request would cost the two cores more than the run
            "--Logging:LogLevel:Default=Warning",
            "--Logging:LogLevel:Microsoft.Hosting.Lifetime=Information",
            "--Logging:LogLevel:Orleans.Runtime.MembershipService=Information",
        ];
        if (contentRoot is not null)
        {
            args.InsertRange(0, ["--contentRoot", contentRoot]);
        }
        _args = args;
    }

    /// <summary>
    /// A gateway started with exactly <paramref name="args"/>, in <paramref name="workingDirectory"/> (its content
    /// root): another build than the bench's own (<see cref="CompareBench"/>), which may not know this build's keys.
    /// <see cref="SiloPort"/> and <see cref="GatewayPort"/> are 0: whatever the arguments chose.
    /// </summary>
    public LocalNode(int number, string gatewayDll, string workingDirectory, IReadOnlyList<string> args, string logFile, int port)
    {
        Number = number;
        _gatewayDll = gatewayDll;
        _workingDirectory = workingDirectory;
        _args = args;
        _log = logFile;
        Port = port;
        BaseAddress = new Uri($"http://127.0.0.1:{port}/");
    }

    public int Number { get; }

    public int Port { get; }

    public int SiloPort { get; }

    public int GatewayPort { get; }

    public Uri BaseAddress { get; }

    public bool IsRunning => _process is { HasExited: false };

    /// <summary>The running process' id (<c>dotnet</c> hosts the app in its own process).</summary>
    public int? Pid => IsRunning ? _process!.Id : null;

    public string LogFile => _log;

    /// <summary>Runtime settings of the node's process only (e.g. DOTNET_GCConserveMemory), not the bench's.</summary>
    public IReadOnlyDictionary<string, string> ProcessEnvironment { get; init; } = new Dictionary<string, string>();

    /// <summary>Starts the process (not waiting for readiness).</summary>
    public void Start()
    {
        var psi = new ProcessStartInfo(DotnetHost())
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            WorkingDirectory = _workingDirectory,
        };
        psi.ArgumentList.Add(_gatewayDll);
        foreach (var a in _args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        psi.Environment["DOTNET_ENVIRONMENT"] = "Production";
        psi.Environment.Remove("ASPNETCORE_URLS");
        psi.Environment.Remove("DOTNET_URLS");
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        foreach (var (key, value) in ProcessEnvironment)
        {
            psi.Environment[key] = value;
        }
        // QrOrleans__* of the bench's own environment must not leak into a node.
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("QrOrleans__", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            psi.Environment.Remove(key);
        }
        Note(SiloPort == 0 ? $"bench: starting node {Number}: http {Port}, {string.Join(' ', _args)}"
            : $"bench: starting node {Number}: http {Port}, silo {SiloPort}, gateway {GatewayPort}");
        var process = new Process { StartInfo = psi };
        process.OutputDataReceived += (_, e) => Note(e.Data);
        process.ErrorDataReceived += (_, e) => Note(e.Data);
        process.Start();
        ChildProcesses.Add(process);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process?.Dispose();
        _process = process;
    }

    /// <summary>The <c>dotnet</c> that runs this bench, so that a child runs on the same runtime.</summary>
    public static string DotnetHost() => Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } h ? h
        : Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet" ? Environment.ProcessPath! : "dotnet";

    /// <summary>Waits until <paramref name="probe"/> answers 200; /readyz: Redis reachable and this silo Active.</summary>
    public async Task WaitUntilReadyAsync(TimeSpan timeout, CancellationToken ct, string probe = "readyz")
    {
        using var http = new HttpClient(Api.NewHandler()) { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(5) };
        var watch = Stopwatch.StartNew();
        var last = "no answer yet";
        while (watch.Elapsed < timeout)
        {
            if (!IsRunning)
            {
                throw new BenchException($"node {Number} exited before it was ready; see {_log}");
            }
            try
            {
                using var response = await http.GetAsync(probe, ct);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
                last = $"HTTP {(int)response.StatusCode}";
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !ct.IsCancellationRequested)
            {
                last = e.Message;
            }
            await Task.Delay(100, ct);
        }
        throw new BenchException($"node {Number} was not ready within {timeout.TotalSeconds:F0} s ({last}); see {_log}");
    }

    /// <summary>kill -9 of the node's process tree.</summary>
    public void Kill()
    {
        if (_process is { } p)
        {
            if (!p.HasExited)
            {
                Note("bench: kill -9");
                p.Kill(entireProcessTree: true);
            }
            p.WaitForExit(10_000);
            ChildProcesses.Remove(p);
        }
    }

    public async Task RestartAsync(TimeSpan timeout, CancellationToken ct)
    {
        Kill();
        Start();
        await WaitUntilReadyAsync(timeout, ct);
    }

    private void Note(string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (_logLock)
        {
            File.AppendAllText(_log, string.Create(CultureInfo.InvariantCulture, $"{DateTime.UtcNow:HH:mm:ss.fff} {line}\n"));
        }
    }

    public ValueTask DisposeAsync()
    {
        Kill();
        _process?.Dispose();
        _process = null;
        return ValueTask.CompletedTask;
    }

    public override string ToString() => $"node {Number} (http {Port}, silo {SiloPort})";

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>
/// A private Redis and <c>nodes</c> gateway nodes on one ClusterId, all on 127.0.0.1, in a temp dir of their own
/// (Redis' AOF, the nodes' logs). Disposing kills every process and removes the dir, unless asked to keep it.
/// </summary>
public sealed class LocalCluster : IAsyncDisposable
{
    public const string AdminKey = "bench";

    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(90);

    private LocalCluster(string dir, LocalRedis redis, IReadOnlyList<LocalNode> nodes)
    {
        Dir = dir;
        Redis = redis;
        Nodes = nodes;
    }

    public string Dir { get; }

    public LocalRedis Redis { get; }

    public IReadOnlyList<LocalNode> Nodes { get; }

    /// <summary>Keep the temp dir (logs, AOF) after the run, e.g. because something went wrong.</summary>
    public bool KeepDir { get; set; }

    /// <summary>
    /// Starts Redis, then the nodes in parallel, and waits until every node is ready and sees all of them Active.
    /// Options read here: <c>--nodes</c> (3), <c>--fsync everysec|always</c>, <c>--gateway</c>, <c>--content-root</c>.
    /// </summary>
    public static async Task<LocalCluster> StartAsync(Args args, CancellationToken ct)
    {
        var count = args.Int("nodes", 3);
        if (count < 2)
        {
            throw new ArgumentException("--nodes must be at least 2 (a node is killed while the others serve)");
        }
        var fsync = args.Get("fsync") ?? "everysec";
        if (fsync is not ("everysec" or "always"))
        {
            throw new ArgumentException("--fsync must be everysec or always");
        }
        var gateway = FindGateway(args.Get("gateway"));
        var contentRoot = args.Get("content-root") ?? FindContentRoot();
        var dir = Directory.CreateTempSubdirectory("qrorleans-bench-").FullName;
        LocalRedis? redis = null;
        var nodes = new List<LocalNode>();
        try
        {
            redis = await LocalRedis.StartAsync(dir, fsync, ct);
            var clusterId = "bench-" + Guid.NewGuid().ToString("N")[..10];
            var vaultKey = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
            var ports = Enumerable.Range(0, count).Select(_ => LocalNode.FreePort()).ToList();
            for (var i = 0; i < count; i++)
            {
                nodes.Add(new LocalNode(i + 1, gateway, contentRoot, redis.ConnectionString, clusterId, $"http://127.0.0.1:{ports[0]}",
                    AdminKey, vaultKey, dir, ports[i]));
            }
            foreach (var node in nodes)
            {
                node.Start();
            }
            await Task.WhenAll(nodes.Select(n => n.WaitUntilReadyAsync(ReadyTimeout, ct)));
            var cluster = new LocalCluster(dir, redis, nodes);
            await cluster.WaitAllActiveAsync(TimeSpan.FromSeconds(30), ct);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"cluster: redis 127.0.0.1:{redis.Port} (appendonly, appendfsync {fsync}), {count} nodes on {string.Join(", ", nodes.Select(n => n.Port))}, dir {dir}"));
            return cluster;
        }
        catch
        {
            foreach (var node in nodes)
            {
                await node.DisposeAsync();
            }
            if (redis is not null)
            {
                await redis.DisposeAsync();
            }
            Console.Error.WriteLine($"cluster start failed; logs kept in {dir}");
            throw;
        }
    }

    /// <summary>Waits until every running node's view of Orleans membership lists every running node's silo as Active.</summary>
    public async Task WaitAllActiveAsync(TimeSpan timeout, CancellationToken ct)
    {
        using var http = new HttpClient(Api.NewHandler()) { Timeout = TimeSpan.FromSeconds(5) };
        var watch = Stopwatch.StartNew();
        while (true)
        {
            var running = Nodes.Where(n => n.IsRunning).ToList();
            var all = true;
            foreach (var node in running)
            {
                try
                {
                    using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(node.BaseAddress, "v1/cluster"));
                    request.Headers.Add("X-Api-Key", AdminKey);
                    using var response = await http.SendAsync(request, ct);
                    using var doc = System.Text.Json.JsonDocument.Parse(await response.Content.ReadAsStringAsync(ct));
                    var active = doc.RootElement.GetProperty("silos").EnumerateArray()
                        .Where(s => s.GetProperty("status").GetString() == "Active")
                        .Select(s => s.GetProperty("address").GetString() ?? "")
                        .ToList();
                    all &= running.All(r => active.Any(a => IsSilo(a, r)));
                }
                catch (Exception e) when (e is HttpRequestException or TaskCanceledException or System.Text.Json.JsonException
                    or KeyNotFoundException or InvalidOperationException && !ct.IsCancellationRequested)
                {
                    all = false;
                }
            }
            if (all)
            {
                return;
            }
            if (watch.Elapsed > timeout)
            {
                throw new BenchException($"the nodes did not all see each other Active within {timeout.TotalSeconds:F0} s");
            }
            await Task.Delay(200, ct);
        }
    }

    /// <summary>Whether a membership address ("127.0.0.1:port", maybe with its generation after a colon) is the node's silo.</summary>
    public static bool IsSilo(string address, LocalNode node)
    {
        var at = address.IndexOf($"127.0.0.1:{node.SiloPort}", StringComparison.Ordinal);
        var end = at + $"127.0.0.1:{node.SiloPort}".Length;
        return at >= 0 && (end == address.Length || !char.IsAsciiDigit(address[end]));
    }

    /// <summary>
    /// QrOrleans.Gateway.dll: <c>--gateway</c>, else next to the bench (a test output that references both), else the
    /// gateway's build output beside the bench's (QR_ARTIFACTS layout <c>bin/Gateway/release</c>, or src/Gateway/bin).
    /// </summary>
    public static string FindGateway(string? given)
    {
        if (given is not null)
        {
            return File.Exists(given) ? Path.GetFullPath(given) : throw new ArgumentException($"--gateway: no file {given}");
        }
        var here = AppContext.BaseDirectory;
        string[] candidates =
        [
            Path.Combine(here, "QrOrleans.Gateway.dll"),
            Path.Combine(here, "..", "..", "Gateway", "release", "QrOrleans.Gateway.dll"),
            Path.Combine(here, "..", "..", "Gateway", "debug", "QrOrleans.Gateway.dll"),
            Path.Combine(here, "..", "..", "..", "..", "..", "src", "Gateway", "bin", "Release", "net10.0", "QrOrleans.Gateway.dll"),
        ];
        return candidates.Select(Path.GetFullPath).FirstOrDefault(File.Exists)
            ?? throw new ArgumentException("QrOrleans.Gateway.dll not found beside the bench's build output: build src/Gateway (same QR_ARTIFACTS) or pass --gateway <path>");
    }

    /// <summary>src/Gateway of the checkout the bench runs in (pages, appsettings.json), if there is one above the current dir.</summary>
    private static string? FindContentRoot()
    {
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
        {
            var gateway = Path.Combine(dir.FullName, "src", "Gateway");
            if (File.Exists(Path.Combine(gateway, "Gateway.csproj")))
            {
                return gateway;
            }
        }
        return null;
    }

    public async ValueTask DisposeAsync()
    {
        // The nodes before Redis: a node that loses Redis first only logs more.
        foreach (var node in Nodes)
        {
            await node.DisposeAsync();
        }
        await Redis.DisposeAsync();
        if (KeepDir)
        {
            Console.WriteLine($"cluster: logs and AOF kept in {Dir}");
        }
        else
        {
            try
            {
                Directory.Delete(Dir, recursive: true);
            }
            catch (IOException)
            {
                // a file still held open: the temp dir is the OS's to clean
            }
        }
    }
}
