using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Cluster;

/// <summary>What a node process is: a gateway co-hosting a silo, a gateway in Client role, or a src/Silo host.</summary>
public enum NodeKind
{
    Gateway,
    ClientGateway,
    Silo,
}

/// <summary>
/// One cluster member in a REAL separate process on 127.0.0.1: <c>dotnet QrOrleans.Gateway.dll</c> (co-hosted silo, or
/// Orleans client with <c>Role=Client</c>) or <c>dotnet QrOrleans.Silo.dll</c>, on the private test Redis
/// (<see cref="TestRedis"/>), with its own HTTP, silo and gateway ports. Its output is kept for diagnostics.
/// <see cref="Kill"/> is kill -9; <see cref="RestartAsync"/> starts the same node again on the same ports.
/// </summary>
public sealed class ClusterNode : IAsyncDisposable
{
    public const string AdminKey = GatewayNode.AdminKey;

    /// <summary>The one vault key every node of a test cluster shares (a cluster must, or sealed credentials would not open elsewhere).</summary>
    public const string VaultKey = "qdEHvVBNFo2CvgE3TnVfUPG7ThJJH7o0E/0WvYOrKyA=";

    private const int KeptLines = 3000;

    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(60);

    private readonly ConcurrentQueue<string> _output = new();
    private readonly string[] _extra;
    private Process? _process;

    private ClusterNode(string name, NodeKind kind, string clusterId, string publicOrigin, int port, string[] extra)
    {
        Name = name;
        Kind = kind;
        ClusterId = clusterId;
        PublicOrigin = publicOrigin;
        Port = port;
        _extra = extra;
        BaseAddress = new Uri($"http://127.0.0.1:{port}/");
        Http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        Api = new ApiClient(Http);
    }

    public string Name { get; }

    public NodeKind Kind { get; }

    public string ClusterId { get; }

    public string PublicOrigin { get; }

    /// <summary>The HTTP port (--urls).</summary>
    public int Port { get; private set; }

    /// <summary>The Orleans silo-to-silo port (none for a client gateway, but it is allocated anyway).</summary>
    public int SiloPort { get; private set; }

    /// <summary>The Orleans client gateway port.</summary>
    public int GatewayPort { get; private set; }

    public int ProcessId => _process?.Id ?? 0;

    public Uri BaseAddress { get; private set; }

    public HttpClient Http { get; private set; }

    public ApiClient Api { get; private set; }

    public bool HasExited => _process is null || _process.HasExited;

    /// <summary>The gateway assembly, copied to the test output because the test project references it.</summary>
    public static string GatewayDll => typeof(QrOrleans.Gateway.GatewayApp).Assembly.Location;

    /// <summary>
    /// The silo host assembly: the gateway references src/Silo, so QrOrleans.Silo.dll and (an Exe's) its
    /// runtimeconfig.json and deps.json are copied to the test output beside the gateway's.
    /// </summary>
    public static string SiloDll => typeof(QrOrleans.Silo.Hosting.ClusterSettings).Assembly.Location;

    /// <summary>Starts a node on free ports and waits until /readyz answers 200.</summary>
    public static async Task<ClusterNode> StartAsync(string name, NodeKind kind, string clusterId, string publicOrigin, int? port = null, IEnumerable<string>? extraArgs = null)
    {
        var node = new ClusterNode(name, kind, clusterId, publicOrigin, port ?? FreePort(), extraArgs?.ToArray() ?? []);
        for (var attempt = 1; ; attempt++)
        {
            node.SiloPort = FreePort();
            node.GatewayPort = FreePort();
            node.Launch();
            try
            {
                await node.WaitUntilReadyAsync();
                return node;
            }
            catch (Exception) when (attempt < 3 && node.HasExited && node.Output().Contains("address already in use", StringComparison.OrdinalIgnoreCase))
            {
                // another process took a port between our probe and the node's bind: try other ones
                node.Kill();
                if (port is null)
                {
                    node.MoveTo(FreePort());
                }
            }
            catch
            {
                await node.DisposeAsync();
                throw;
            }
        }
    }

    /// <summary>The process's arguments (without the assembly): the shape an operator would type.</summary>
    public IReadOnlyList<string> Arguments()
    {
        var contentRoot = Kind == NodeKind.Silo ? Path.Combine(GatewayNode.RepoRoot, "src", "Silo") : GatewayNode.GatewayContentRoot();
        List<string> args =
        [
            "--contentRoot", contentRoot,
            "--urls", $"http://127.0.0.1:{Port}",
            "--QrOrleans:Cluster:Provider=Redis",
            $"--QrOrleans:Cluster:Redis={TestRedis.ConnectionString}",
            $"--QrOrleans:Cluster:ClusterId={ClusterId}",
            $"--QrOrleans:Cluster:ServiceId={ClusterId}",
            $"--QrOrleans:Cluster:SiloPort={SiloPort}",
            $"--QrOrleans:Cluster:GatewayPort={GatewayPort}",
            "--QrOrleans:Cluster:AdvertisedAddress=127.0.0.1",
            $"--QrOrleans:PublicOrigin={PublicOrigin}",
            $"--QrOrleans:AdminApiKey={AdminKey}",
            $"--QrOrleans:Vault:Keys:1={VaultKey}",
            "--QrOrleans:Vault:CurrentVersion=1",
            "--QrOrleans:Demo=false",
            "--QrOrleans:RateLimiting:Enabled=false",
            // warnings, lifetime and membership notes only: a line per request would cost the two cores more than the test
            "--Logging:LogLevel:Default=Warning",
            "--Logging:LogLevel:Microsoft.Hosting.Lifetime=Information",
            "--Logging:LogLevel:Orleans.Runtime.MembershipService=Information",
            "--Logging:LogLevel:QrOrleans=Information",
        ];
        if (Kind == NodeKind.ClientGateway)
        {
            args.Add("--QrOrleans:Cluster:Role=Client");
        }
        args.AddRange(_extra);
        return args;
    }

    private void Launch()
    {
        var dll = Kind == NodeKind.Silo ? SiloDll : GatewayDll;
        var psi = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(dll)!,
        };
        psi.ArgumentList.Add(dll);
        foreach (var a in Arguments())
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        psi.Environment["DOTNET_ENVIRONMENT"] = "Production";
        psi.Environment.Remove("ASPNETCORE_URLS");
        psi.Environment.Remove("DOTNET_URLS");
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        // QrOrleans__* from the test runner's own environment must not leak into the node.
        foreach (var key in psi.Environment.Keys.Where(k => k.StartsWith("QrOrleans__", StringComparison.OrdinalIgnoreCase)).ToList())
        {
            psi.Environment.Remove(key);
        }

        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => Keep("out", e.Data);
        process.ErrorDataReceived += (_, e) => Keep("err", e.Data);
        Keep("test", $"starting {Kind} {Name}: http {Port}, silo {SiloPort}, gateway {GatewayPort}, cluster {ClusterId}");
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process?.Dispose();
        _process = process;
    }

    private void Keep(string prefix, string? line)
    {
        if (line is null)
        {
            return;
        }
        _output.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} {prefix} {line}");
        while (_output.Count > KeptLines && _output.TryDequeue(out _))
        {
        }
    }

    private void MoveTo(int port)
    {
        Http.Dispose();
        Port = port;
        BaseAddress = new Uri($"http://127.0.0.1:{port}/");
        Http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        Api = new ApiClient(Http);
    }

    /// <summary>Waits until /readyz answers 200 (Redis reachable and this silo Active, or the client connected).</summary>
    public async Task WaitUntilReadyAsync(TimeSpan? timeout = null)
    {
        var limit = timeout ?? ReadyTimeout;
        using var probe = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(5) };
        var watch = Stopwatch.StartNew();
        string last = "no answer yet";
        while (watch.Elapsed < limit)
        {
            if (HasExited)
            {
                throw new InvalidOperationException(
                    $"{Name} exited with code {_process?.ExitCode} before it was ready.\n{Output(80)}");
            }
            try
            {
                using var response = await probe.GetAsync("/readyz");
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
                last = $"HTTP {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}";
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                last = e.Message;
            }
            await Task.Delay(100);
        }
        throw new TimeoutException($"{Name} was not ready within {limit.TotalSeconds} s ({last}).\n{Output(80)}");
    }

    /// <summary>GET /readyz: the status code and the JSON report.</summary>
    public async Task<Reply> ReadyzAsync()
    {
        using var probe = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(10) };
        using var response = await probe.GetAsync("/readyz");
        return await Reply.ReadAsync(response);
    }

    /// <summary>kill -9 (SIGKILL) of the node's process tree: no shutdown, no goodbye to the membership table.</summary>
    public void Kill()
    {
        if (_process is { HasExited: false })
        {
            Keep("test", "kill -9");
            _process.Kill(entireProcessTree: true);
        }
        _process?.WaitForExit(10_000);
    }

    /// <summary>Kills the node if it runs, then starts it again on the same ports and waits until it is ready.</summary>
    public async Task RestartAsync()
    {
        Kill();
        Launch();
        await WaitUntilReadyAsync();
    }

    /// <summary>The last <paramref name="lines"/> lines of the node's stdout/stderr.</summary>
    public string Output(int lines = KeptLines) => string.Join('\n', _output.ToArray().TakeLast(lines));

    public ValueTask DisposeAsync()
    {
        Http.Dispose();
        try
        {
            Kill();
        }
        catch (InvalidOperationException)
        {
            // never started
        }
        _process?.Dispose();
        return ValueTask.CompletedTask;
    }

    public override string ToString() => $"{Name} ({Kind}, http {Port}, silo {SiloPort}, pid {ProcessId})";

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>
/// A cluster of its own on the shared test Redis: a unique ClusterId (so no other test's silos are seen), the nodes
/// started in parallel, one public origin for all of them (the first gateway's address: what a load balancer would be).
/// </summary>
public abstract class ClusterFixture : IAsyncLifetime
{
    /// <summary>The kinds of the nodes, in order (node 1 first).</summary>
    protected virtual IReadOnlyList<NodeKind> Kinds => [NodeKind.Gateway, NodeKind.Gateway, NodeKind.Gateway];

    protected virtual IEnumerable<string> ExtraArgs => [];

    public string ClusterId { get; } = "qrt-" + Guid.NewGuid().ToString("N")[..12];

    public IReadOnlyList<ClusterNode> Nodes { get; private set; } = [];

    public ClusterNode this[int number] => Nodes[number - 1];

    public async ValueTask InitializeAsync()
    {
        _ = TestRedis.ConnectionString; // fails (never skips) without the test Redis
        var ports = Kinds.Select(_ => ClusterNode.FreePort()).ToList();
        // The QR codes point at the first node that serves the API (a silo host serves only its probes).
        var front = Kinds.Select((k, i) => (k, i)).First(x => x.k != NodeKind.Silo).i;
        var origin = $"http://127.0.0.1:{ports[front]}";
        // Silo hosts first: a client gateway finds the cluster's gateways in the membership table.
        var siloHosts = Kinds.Select((k, i) => (k, i)).Where(x => x.k == NodeKind.Silo).ToList();
        var others = Kinds.Select((k, i) => (k, i)).Where(x => x.k != NodeKind.Silo).ToList();
        var started = new ClusterNode?[Kinds.Count];
        try
        {
            foreach (var group in new[] { siloHosts, others })
            {
                var starts = group.Select(x => (x.i, Task: ClusterNode.StartAsync($"node{x.i + 1}", x.k, ClusterId, origin, ports[x.i], ExtraArgs))).ToList();
                try
                {
                    await Task.WhenAll(starts.Select(s => s.Task));
                }
                finally
                {
                    foreach (var (i, task) in starts.Where(s => s.Task.IsCompletedSuccessfully))
                    {
                        started[i] = task.Result;
                    }
                }
            }
            Nodes = started.Select(n => n!).ToList();
        }
        catch
        {
            foreach (var node in started.Where(n => n is not null))
            {
                await node!.DisposeAsync();
            }
            throw;
        }
    }

    /// <summary>Runs a test body; on failure the exception carries the tail of every node's output.</summary>
    public Task RunAsync(Func<Task> test, int lines = 40) => Diagnostics.RunAsync(Nodes, test, lines);

    public virtual async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes)
        {
            await node.DisposeAsync();
        }
    }
}

public static class Diagnostics
{
    public static async Task RunAsync(IEnumerable<ClusterNode> nodes, Func<Task> test, int lines = 40)
    {
        try
        {
            await test();
        }
        catch (Exception e)
        {
            var logs = string.Join("\n", nodes.Select(n => $"----- {n}{(n.HasExited ? " [exited]" : "")} -----\n{n.Output(lines)}"));
            throw new Xunit.Sdk.XunitException($"{e.GetType().Name}: {e.Message}\n\nNode output (last {lines} lines each):\n{logs}", e);
        }
    }

    /// <summary>A measured figure: in the test's output (ITestOutputHelper) and as a diagnostic message.</summary>
    public static void Report(string line)
    {
        TestContext.Current.TestOutputHelper?.WriteLine(line);
        TestContext.Current.SendDiagnosticMessage(line);
    }

    public static async Task EventuallyAsync(TimeSpan timeout, Func<Task<bool>> condition, Func<string> what)
    {
        var watch = Stopwatch.StartNew();
        while (!await condition())
        {
            if (watch.Elapsed > timeout)
            {
                throw new Xunit.Sdk.XunitException($"Not within {timeout.TotalSeconds} s: {what()}");
            }
            await Task.Delay(100);
        }
    }
}
