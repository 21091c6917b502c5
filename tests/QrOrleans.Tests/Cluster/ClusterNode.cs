using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Cluster;

/// <summary>
/// One gateway + silo in a REAL separate process (<c>dotnet QrOrleans.Gateway.dll</c>), on its own loopback port,
/// with the PostgreSQL provider: what a node of a deployed cluster is. Its output is kept for diagnostics.
/// <see cref="Kill"/> is kill -9; nothing in the process gets to clean up.
/// </summary>
public sealed class ClusterNode : IAsyncDisposable
{
    public const string AdminKey = GatewayNode.AdminKey;

    private const int KeptLines = 2000;

    private static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(30);

    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output;

    private ClusterNode(string name, int port, Process process, ConcurrentQueue<string> output)
    {
        Name = name;
        Port = port;
        _process = process;
        _output = output;
        BaseAddress = new Uri($"http://127.0.0.1:{port}/");
        Http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };
        Api = new ApiClient(Http);
    }

    public string Name { get; }

    public int Port { get; }

    public int ProcessId => _process.Id;

    public Uri BaseAddress { get; }

    /// <summary>The address this node's silo registers in the membership table (the address it listens on).</summary>
    public string SiloAddress => $"http://127.0.0.1:{Port}";

    public HttpClient Http { get; }

    public ApiClient Api { get; }

    public bool HasExited => _process.HasExited;

    /// <summary>The gateway assembly, copied to the test output because the test project references it.</summary>
    public static string GatewayDll => typeof(QrOrleans.Gateway.GatewayApp).Assembly.Location;

    /// <summary>Starts a node on a free port and waits until /readyz answers 200.</summary>
    public static async Task<ClusterNode> StartAsync(string name, string connectionString, IEnumerable<string>? extraArgs = null)
    {
        var extra = extraArgs?.ToArray() ?? [];
        for (var attempt = 1; ; attempt++)
        {
            var node = Launch(name, FreePort(), connectionString, extra);
            try
            {
                await node.WaitUntilReadyAsync();
                return node;
            }
            catch (Exception) when (attempt < 3 && node.HasExited && node.Output().Contains("address already in use", StringComparison.OrdinalIgnoreCase))
            {
                // another process took the port between our probe and the node's bind: try another one
                await node.DisposeAsync();
            }
            catch
            {
                await node.DisposeAsync();
                throw;
            }
        }
    }

    private static ClusterNode Launch(string name, int port, string connectionString, string[] extra)
    {
        var psi = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = Path.GetDirectoryName(GatewayDll)!,
        };
        string[] args =
        [
            GatewayDll,
            "--urls", $"http://127.0.0.1:{port}",
            "--contentRoot", GatewayNode.GatewayContentRoot(),
            "--QrOrleans:Storage:Provider=PostgreSql",
            $"--QrOrleans:Storage:ConnectionString={connectionString}",
            $"--QrOrleans:AdminApiKey={AdminKey}",
            "--QrOrleans:Demo=false",
            "--QrOrleans:RateLimiting:Enabled=false",
            "--QrOrleans:Silo:HeartbeatInterval=00:00:00.500",
            "--QrOrleans:Silo:DeadAfter=00:00:03",
            // warnings and the runtime's own notes only: a line per request would cost the two cores more than the test
            "--Logging:LogLevel:Default=Warning",
            "--Logging:LogLevel:Microsoft.Hosting.Lifetime=Information",
            "--Logging:LogLevel:QrOrleans=Information",
            .. extra,
        ];
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }
        psi.Environment["ASPNETCORE_ENVIRONMENT"] = "Production";
        psi.Environment.Remove("ASPNETCORE_URLS");
        psi.Environment.Remove("DOTNET_URLS");
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";

        var output = new ConcurrentQueue<string>();
        var process = new Process { StartInfo = psi, EnableRaisingEvents = true };
        void Keep(string prefix, string? line)
        {
            if (line is null)
            {
                return;
            }
            output.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} {prefix} {line}");
            while (output.Count > KeptLines && output.TryDequeue(out _))
            {
            }
        }
        process.OutputDataReceived += (_, e) => Keep("out", e.Data);
        process.ErrorDataReceived += (_, e) => Keep("err", e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new ClusterNode(name, port, process, output);
    }

    private async Task WaitUntilReadyAsync()
    {
        using var probe = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(5) };
        var watch = Stopwatch.StartNew();
        string last = "no answer yet";
        while (watch.Elapsed < ReadyTimeout)
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException(
                    $"{Name} exited with code {_process.ExitCode} before it was ready.\n{Output(80)}");
            }
            try
            {
                using var response = await probe.GetAsync("/readyz");
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    return;
                }
                last = $"HTTP {(int)response.StatusCode}";
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                last = e.Message;
            }
            await Task.Delay(100);
        }
        throw new TimeoutException($"{Name} was not ready within {ReadyTimeout.TotalSeconds} s ({last}).\n{Output(80)}");
    }

    /// <summary>kill -9 (SIGKILL) of the node's process tree: no shutdown, no goodbye to the membership table.</summary>
    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }
        _process.WaitForExit(10_000);
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
        _process.Dispose();
        return ValueTask.CompletedTask;
    }

    public override string ToString() => $"{Name} ({SiloAddress}, pid {ProcessId})";

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>A fresh database and nodes on it, started in parallel; one per test class.</summary>
public abstract class ClusterFixture : IAsyncLifetime
{
    protected virtual int NodeCount => 3;

    protected virtual IEnumerable<string> ExtraArgs => [];

    public PostgresDatabase Database { get; private set; } = null!;

    public IReadOnlyList<ClusterNode> Nodes { get; private set; } = [];

    public ClusterNode this[int number] => Nodes[number - 1];

    public async ValueTask InitializeAsync()
    {
        Database = await PostgresDatabase.CreateAsync();
        var starts = Enumerable.Range(1, NodeCount).Select(i => ClusterNode.StartAsync($"node{i}", Database.ConnectionString, ExtraArgs)).ToList();
        try
        {
            Nodes = await Task.WhenAll(starts);
        }
        catch
        {
            foreach (var s in starts.Where(s => s.IsCompletedSuccessfully))
            {
                await s.Result.DisposeAsync();
            }
            await Database.DisposeAsync();
            throw;
        }
    }

    /// <summary>Runs a test body; on failure the exception carries the tail of every node's output.</summary>
    public Task RunAsync(Func<Task> test) => Diagnostics.RunAsync(Nodes, test);

    public async ValueTask DisposeAsync()
    {
        foreach (var node in Nodes)
        {
            await node.DisposeAsync();
        }
        if (Database is not null)
        {
            await Database.DisposeAsync();
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
}
