using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace QrOrleans.Bench;

/// <summary>
/// Two builds (or two configurations of one build) side by side in one run: rounds of A and B, alternating which
/// goes first (AB BA AB …), each run on a freshly started gateway of that build driven by that build's own
/// <c>ceremonies</c> bench. Absolute throughput on a shared 2-core machine drifts by a quarter within an hour, so the
/// figure that counts is the ratio of runs made minutes apart: the median of the per-round ratios.
/// </summary>
public static partial class CompareBench
{
    private const string Root = "/tmp/qro-compare";
    private const string AdminKey = "bench";
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;
    private static readonly TimeSpan HealthTimeout = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan BuildTimeout = TimeSpan.FromMinutes(20);
    private static readonly TimeSpan GitTimeout = TimeSpan.FromMinutes(2);
    // A killed server (and its Redis) takes a moment to exit and free its memory: not on the next run's cores.
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(3);

    public static async Task<int> RunAsync(Args args)
    {
        var rounds = Math.Max(1, args.Int("rounds", 3));
        var seconds = Math.Max(1, args.Int("seconds", 20));
        var warmup = args.Int("warmup", 45);
        var concurrency = Math.Max(1, args.Int("concurrency", 16));
        var keepBuilds = Flag(args, "keep-builds", true);
        var specs = new[] { Spec(args, 'a'), Spec(args, 'b') };

        using var stop = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true;
            Console.Error.WriteLine("compare: stopping (Ctrl-C)");
            stop.Cancel();
        };
        var ct = stop.Token;

        HintFileLimit();
        var builds = new Dictionary<string, Build>(StringComparer.Ordinal);
        var variants = new List<Variant>();
        var repo = "";
        try
        {
            if (specs.Any(s => s.Redis))
            {
                LocalRedis.FindServer();
            }
            repo = await GitAsync(Path.GetFullPath(args.Get("repo") ?? Environment.CurrentDirectory), ct, "rev-parse", "--show-toplevel");
            var logs = Path.Combine(Root, "logs", DateTime.UtcNow.ToString("yyyyMMdd-HHmmss", C));
            Directory.CreateDirectory(logs);

            // Both resolved before anything is built: a typo in B should not cost A's build first.
            var keys = new List<string>();
            foreach (var spec in specs)
            {
                keys.Add(spec.Build == "." ? "." : await ResolveAsync(repo, spec.Build, ct));
            }
            foreach (var (spec, key) in specs.Zip(keys))
            {
                if (!builds.TryGetValue(key, out var build))
                {
                    build = key == "."
                        ? await BuildTreeAsync(".", null, repo, Path.Combine(Root, "worktree-artifacts"), logs, ct)
                        : await BuildCommitAsync(repo, spec.Build, key, logs, ct);
                    builds[key] = build;
                }
                variants.Add(new Variant(spec.Name, build, spec.Transport, spec.Redis, spec.ExtraArgs, spec.ServerArgs, spec.ServerEnvironment));
            }

            Console.WriteLine(string.Create(C,
                $"compare: rounds={rounds} seconds={seconds} warmup={warmup} concurrency={concurrency} cores={Environment.ProcessorCount}, logs in {logs}"));
            foreach (var v in variants)
            {
                Console.WriteLine($"  {v.Name} = {v.Label}: {v.Build.Describe()}{(v.ExtraArgs.Count > 0 ? " bench args: " + string.Join(' ', v.ExtraArgs) : "")}{(v.ServerArgs.Count > 0 ? " server args: " + string.Join(' ', v.ServerArgs) : "")}{(v.ServerEnvironment.Count > 0 ? " server environment: " + string.Join(' ', v.ServerEnvironment.Select(e => e.Key + "=" + e.Value)) : "")}");
            }

            var results = variants.ToDictionary(v => v.Name, _ => new Figures?[rounds]);
            for (var round = 0; round < rounds; round++)
            {
                // ABBAAB…: whichever runs second gets a machine warmed by the first, so neither always does.
                var order = round % 2 == 0 ? variants : [variants[1], variants[0]];
                foreach (var v in order)
                {
                    ct.ThrowIfCancellationRequested();
                    Console.WriteLine($"compare: round {round + 1}/{rounds}, {v.Name} {v.Label}");
                    results[v.Name][round] = await RunOnceAsync(v, round, seconds, warmup, concurrency, logs, ct);
                    await Task.Delay(Settle, ct);
                }
            }

            Report(variants, results, rounds);
            return results.Values.All(r => r.All(f => f is not null)) ? 0 : 1;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            Console.Error.WriteLine("compare: stopped before the end; no table");
            return 130;
        }
        catch (BenchException e)
        {
            // A build or git failure: nothing to compare. (A failed run is counted as missing instead.)
            Console.Error.WriteLine($"compare: {e.Message}");
            return 1;
        }
        finally
        {
            if (!keepBuilds)
            {
                foreach (var build in builds.Values.Where(b => b.Sha is not null))
                {
                    await RemoveWorktreeAsync(repo, build.Tree);
                }
            }
        }
    }

    /// <summary>One run: a fresh gateway (and Redis), that build's bench against it, everything stopped again.</summary>
    private static async Task<Figures?> RunOnceAsync(Variant v, int round, int seconds, int warmup, int concurrency, string logs, CancellationToken ct)
    {
        var stem = Path.Combine(logs, string.Create(C, $"round{round + 1}-{v.Name}"));
        LocalRedis? redis = null;
        string? redisDir = null;
        LocalNode? node = null;
        try
        {
            var port = LocalNode.FreePort();
            List<string> serverArgs =
            [
                "--urls", $"http://127.0.0.1:{port}",
                "--QrOrleans:RateLimiting:Enabled=false",
                $"--QrOrleans:AdminApiKey={AdminKey}",
                "--QrOrleans:Demo=false",
            ];
            if (v.Redis)
            {
                redisDir = Directory.CreateDirectory(stem + "-redis").FullName;
                redis = await LocalRedis.StartAsync(redisDir, "everysec", ct);
                serverArgs.Add("--QrOrleans:Cluster:Provider=Redis");
                serverArgs.Add($"--QrOrleans:Cluster:Redis={redis.ConnectionString}");
                // Redis mode's default ports are fixed (11111, 30000): another engineer's node may hold them.
                serverArgs.Add(string.Create(C, $"--QrOrleans:Cluster:SiloPort={LocalNode.FreePort()}"));
                serverArgs.Add(string.Create(C, $"--QrOrleans:Cluster:GatewayPort={LocalNode.FreePort()}"));
            }
            serverArgs.AddRange(v.ServerArgs);
            node = new LocalNode(v.Name == 'A' ? 1 : 2, v.Build.GatewayDll, Path.Combine(v.Build.Tree, "src", "Gateway"), serverArgs,
                stem + "-gateway.log", port)
            {
                ProcessEnvironment = v.ServerEnvironment,
            };
            node.Start();
            await node.WaitUntilReadyAsync(HealthTimeout, ct, "healthz");
            var pid = node.Pid ?? throw new BenchException($"the gateway exited right after its start; see {node.LogFile}");

            List<string> benchArgs =
            [
                v.Build.BenchDll, "ceremonies",
                "--target", $"http://127.0.0.1:{port}",
                "--pid", pid.ToString(C),
                "--seconds", seconds.ToString(C),
                "--warmup", warmup.ToString(C),
                "--concurrency", concurrency.ToString(C),
                "--transport", v.Transport,
                "--admin-key", AdminKey,
            ];
            if (redis is not null)
            {
                benchArgs.AddRange(["--redis", redis.ConnectionString]);
            }
            // Last, so that the parser's last-one-wins lets them override the above.
            benchArgs.AddRange(v.ExtraArgs);

            var output = new CeremoniesOutput();
            var prefix = $"  [{v.Name} {v.Label}] ";
            await using var benchLog = new StreamWriter(stem + "-bench.log", append: false, Encoding.UTF8);
            var benchLock = new object();
            // Setup (4,000 phones by default), warm-up, the run, then its healthz and Redis ceilings of about the run's size.
            var budget = TimeSpan.FromSeconds(warmup + 3 * seconds + 300);
            var exit = await RunProcessAsync(LocalNode.DotnetHost(), benchArgs, v.Build.Tree, null, line =>
            {
                Console.WriteLine(prefix + line);
                lock (benchLock)
                {
                    benchLog.WriteLine(line);
                    output.Feed(line);
                }
            }, budget, ct);
            if (!node.IsRunning)
            {
                Console.WriteLine($"compare: {v.Name} round {round + 1}: the gateway died during the run; see {node.LogFile}");
            }
            var figures = output.Figures();
            if (figures is null)
            {
                Console.WriteLine(exit is null
                    ? string.Create(C, $"compare: {v.Name} round {round + 1}: no result, the bench ran past {budget.TotalSeconds:F0} s and was killed")
                    : string.Create(C, $"compare: {v.Name} round {round + 1}: no result line (bench exit code {exit}); counted as missing"));
            }
            return figures;
        }
        catch (BenchException e)
        {
            Console.WriteLine($"compare: {v.Name} round {round + 1}: {e.Message}; counted as missing");
            return null;
        }
        finally
        {
            if (node is not null)
            {
                await node.DisposeAsync();
            }
            if (redis is not null)
            {
                await redis.DisposeAsync();
            }
            if (redisDir is not null)
            {
                // Its log is worth keeping; its AOF (tens of MB a run) is not.
                var log = Path.Combine(redisDir, "redis.log");
                if (File.Exists(log))
                {
                    File.Copy(log, stem + "-redis.log", overwrite: true);
                }
                Directory.Delete(redisDir, recursive: true);
            }
        }
    }

    private static void Report(List<Variant> variants, Dictionary<char, Figures?[]> results, int rounds)
    {
        var a = variants[0];
        var b = variants[1];
        var ra = results[a.Name];
        var rb = results[b.Name];
        var header = new StringBuilder($"{"",-26}");
        for (var i = 0; i < rounds; i++)
        {
            header.Append(C, $"{"round " + (i + 1),11}");
        }
        header.Append(C, $"{"median",11}");
        Console.WriteLine();
        Console.WriteLine(header);
        foreach (var v in variants)
        {
            var r = results[v.Name];
            Console.WriteLine($"{v.Name} {v.Label}" + (r.Any(f => f is null) ? $" ({r.Count(f => f is null)} missing)" : ""));
            Row("  ceremonies/s", r.Select(f => f?.Rate), "F1");
            Row("  server µs/ceremony", r.Select(f => f?.ServerCpuUs), "F0");
            Row("  p99 ms", r.Select(f => f?.P99Ms), "F2");
            Row("  errors", r.Select(f => (double?)f?.Errors), "F0");
            if (r.Any(f => f?.RedisPerCeremony is not null))
            {
                Row("  redis cmds/ceremony", r.Select(f => f?.RedisPerCeremony), "F1");
            }
        }
        var rateRatios = ra.Zip(rb, (x, y) => Ratio(x?.Rate, y?.Rate)).ToList();
        var cpuRatios = ra.Zip(rb, (x, y) => Ratio(x?.ServerCpuUs, y?.ServerCpuUs)).ToList();
        var rateOfMedians = Ratio(Median(ra.Select(f => f?.Rate)), Median(rb.Select(f => f?.Rate)));
        var cpuOfMedians = Ratio(Median(ra.Select(f => f?.ServerCpuUs)), Median(rb.Select(f => f?.ServerCpuUs)));
        Console.WriteLine($"A/B: each round's A against the same round's B, their median, and the ratio of the medians above");
        Console.WriteLine($"{header}{"med A/med B",13}");
        Row("  ceremonies/s", rateRatios, "F3", rateOfMedians);
        Row("  server µs/ceremony", cpuRatios, "F3", cpuOfMedians);
        Console.WriteLine();

        var redisA = Median(ra.Select(f => f?.RedisPerCeremony));
        var redisB = Median(rb.Select(f => f?.RedisPerCeremony));
        var line = new StringBuilder();
        line.Append(C, $"compare: a={a.Label} b={b.Label} rounds={rounds}");
        line.Append(C, $" rate_ratio_median={Num(Median(rateRatios), "F3")} cpu_ratio_median={Num(Median(cpuRatios), "F3")}");
        line.Append(C, $" rate_ratio_of_medians={Num(rateOfMedians, "F3")} cpu_ratio_of_medians={Num(cpuOfMedians, "F3")}");
        line.Append(C, $" rate_a={Num(Median(ra.Select(f => f?.Rate)), "F1")} rate_b={Num(Median(rb.Select(f => f?.Rate)), "F1")}");
        line.Append(C, $" cpu_a_us={Num(Median(ra.Select(f => f?.ServerCpuUs)), "F0")} cpu_b_us={Num(Median(rb.Select(f => f?.ServerCpuUs)), "F0")}");
        line.Append(C, $" p99_a_ms={Num(Median(ra.Select(f => f?.P99Ms)), "F2")} p99_b_ms={Num(Median(rb.Select(f => f?.P99Ms)), "F2")}");
        if (redisA is not null || redisB is not null)
        {
            line.Append(C, $" redis_a={Num(redisA, "F1")} redis_b={Num(redisB, "F1")}");
        }
        line.Append(C, $" missing_a={ra.Count(f => f is null)} missing_b={rb.Count(f => f is null)}");
        Console.WriteLine(line);

        void Row(string name, IEnumerable<double?> values, string format, double? last = null)
        {
            var list = values.ToList();
            var row = new StringBuilder($"{name,-26}");
            foreach (var x in list)
            {
                row.Append(C, $"{Num(x, format),11}");
            }
            row.Append(C, $"{Num(Median(list), format),11}");
            if (last is not null)
            {
                row.Append(C, $"{Num(last, format),13}");
            }
            Console.WriteLine(row);
        }
    }

    private static string Num(double? x, string format) => x is { } v && double.IsFinite(v) ? v.ToString(format, C) : "na";

    private static double? Ratio(double? x, double? y) => x is { } a && y is { } b && b != 0 && double.IsFinite(a) && double.IsFinite(b) ? a / b : null;

    private static double? Median(IEnumerable<double?> values)
    {
        var sorted = values.Where(v => v is { } x && double.IsFinite(x)).Select(v => v!.Value).Order().ToArray();
        return sorted.Length == 0 ? null
            : sorted.Length % 2 == 1 ? sorted[sorted.Length / 2]
            : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    // --- builds -------------------------------------------------------------------------------------------------

    private static async Task<string> ResolveAsync(string repo, string commitish, CancellationToken ct)
    {
        try
        {
            return await GitAsync(repo, ct, "rev-parse", "--verify", "--quiet", commitish + "^{commit}");
        }
        catch (BenchException)
        {
            throw new ArgumentException($"'{commitish}' is not a commit of {repo}");
        }
    }

    /// <summary>
    /// A commit, checked out in a worktree of its own under <see cref="Root"/> and built there, once per sha: its
    /// artifacts live inside that worktree, so a later compare of the same sha finds them.
    /// </summary>
    private static async Task<Build> BuildCommitAsync(string repo, string given, string sha, string logs, CancellationToken ct)
    {
        var tree = Path.Combine(Root, sha);
        var artifacts = Path.Combine(tree, ".artifacts");
        var ready = File.Exists(Path.Combine(tree, ".git")) && await HeadAsync(tree, ct) == sha;
        if (!ready)
        {
            if (Directory.Exists(tree))
            {
                // Left by a compare that was killed mid-checkout: it is ours (named by sha under our root).
                Console.WriteLine($"compare: {tree} is not a complete worktree of {sha}; checking it out again");
                await RemoveWorktreeAsync(repo, tree);
                if (Directory.Exists(tree))
                {
                    Directory.Delete(tree, recursive: true);
                }
                await GitAsync(repo, ct, "worktree", "prune");
            }
            Directory.CreateDirectory(Root);
            await GitAsync(repo, ct, "worktree", "add", "--detach", tree, sha);
        }
        var build = new Build(given, sha, tree, artifacts);
        if (File.Exists(Path.Combine(artifacts, ".compare-built")) && File.Exists(build.GatewayDll) && File.Exists(build.BenchDll))
        {
            Console.WriteLine($"compare: {given} ({sha[..10]}): using the build in {artifacts}");
            return build;
        }
        return await BuildTreeAsync(given, sha, tree, artifacts, logs, ct);
    }

    /// <summary>
    /// <c>dotnet build -c Release</c> of the gateway and the bench of <paramref name="tree"/>, with QR_ARTIFACTS set so
    /// that nothing else building in that tree shares (or disturbs) these outputs.
    /// </summary>
    private static async Task<Build> BuildTreeAsync(string given, string? sha, string tree, string artifacts, string logs, CancellationToken ct)
    {
        var log = Path.Combine(logs, $"build-{(sha is null ? "worktree" : sha[..10])}.log");
        Console.WriteLine($"compare: building {given}{(sha is null ? $" ({tree})" : $" ({sha[..10]})")} into {artifacts}; log {log}");
        await using var writer = new StreamWriter(log, append: false, Encoding.UTF8);
        var writeLock = new object();
        var tail = new Queue<string>();
        var env = new Dictionary<string, string>(StringComparer.Ordinal) { ["QR_ARTIFACTS"] = artifacts, ["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1" };
        var clock = Stopwatch.StartNew();
        foreach (var project in new[] { "src/Gateway", "bench/QrOrleans.Bench" })
        {
            // No build servers: a compiler or MSBuild node left behind would outlive the compare and share its cores.
            var exit = await RunProcessAsync(LocalNode.DotnetHost(), ["build", "-c", "Release", "--disable-build-servers", "-nologo", project], tree, env, line =>
            {
                lock (writeLock)
                {
                    writer.WriteLine(line);
                    tail.Enqueue(line);
                    if (tail.Count > 25)
                    {
                        tail.Dequeue();
                    }
                }
            }, BuildTimeout, ct);
            if (exit != 0)
            {
                lock (writeLock)
                {
                    Console.Error.WriteLine(string.Join('\n', tail));
                }
                throw new BenchException(exit is null
                    ? $"building {project} of {given} took more than {BuildTimeout.TotalMinutes:F0} min; see {log}"
                    : $"building {project} of {given} failed (exit code {exit}); see {log}");
            }
        }
        var build = new Build(given, sha, tree, artifacts);
        foreach (var dll in new[] { build.GatewayDll, build.BenchDll })
        {
            if (!File.Exists(dll))
            {
                throw new BenchException($"the build of {given} succeeded but left no {dll}: does its Directory.Build.props honour QR_ARTIFACTS?");
            }
        }
        await File.WriteAllTextAsync(Path.Combine(artifacts, ".compare-built"), sha ?? "worktree", CancellationToken.None);
        Console.WriteLine(string.Create(C, $"compare: built {given} in {clock.Elapsed.TotalSeconds:F0} s"));
        return build;
    }

    private static async Task<string?> HeadAsync(string tree, CancellationToken ct)
    {
        try
        {
            return await GitAsync(tree, ct, "rev-parse", "HEAD");
        }
        catch (BenchException)
        {
            return null;
        }
    }

    private static async Task RemoveWorktreeAsync(string repo, string tree)
    {
        try
        {
            await GitAsync(repo, CancellationToken.None, "worktree", "remove", "--force", tree);
            Console.WriteLine($"compare: removed the worktree {tree}");
        }
        catch (BenchException e)
        {
            Console.WriteLine($"compare: could not remove the worktree {tree}: {e.Message}");
        }
    }

    /// <summary>A git command's first line of output; a failure is a <see cref="BenchException"/>.</summary>
    private static async Task<string> GitAsync(string cwd, CancellationToken ct, params string[] arguments)
    {
        var lines = new List<string>();
        var exit = await RunProcessAsync("git", arguments, cwd, null, line =>
        {
            lock (lines)
            {
                lines.Add(line);
            }
        }, GitTimeout, ct);
        return exit == 0 && lines.Count > 0 ? lines[0].Trim()
            : exit == 0 && arguments[0] is "worktree" ? ""
            : throw new BenchException($"git {string.Join(' ', arguments)} in {cwd} failed ({(exit is null ? "timed out" : $"exit code {exit}")}): {string.Join(' ', lines.TakeLast(3))}");
    }

    /// <summary>
    /// Runs a child to its end (or until <paramref name="timeout"/>, then kills its tree and returns null), stdout and
    /// stderr line by line to <paramref name="onLine"/>. Registered with <see cref="ChildProcesses"/> meanwhile.
    /// </summary>
    private static async Task<int?> RunProcessAsync(string file, IReadOnlyList<string> arguments, string cwd,
        IReadOnlyDictionary<string, string>? env, Action<string> onLine, TimeSpan timeout, CancellationToken ct)
    {
        var psi = new ProcessStartInfo(file)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            // Not the terminal's: a child must never wait for input nobody will type.
            RedirectStandardInput = true,
            WorkingDirectory = cwd,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (var a in arguments)
        {
            psi.ArgumentList.Add(a);
        }
        foreach (var (key, value) in env ?? new Dictionary<string, string>())
        {
            psi.Environment[key] = value;
        }
        using var process = new Process { StartInfo = psi };
        process.OutputDataReceived += (_, e) => Forward(e.Data);
        process.ErrorDataReceived += (_, e) => Forward(e.Data);
        process.Start();
        ChildProcesses.Add(process);
        try
        {
            process.StandardInput.Close();
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
            limit.CancelAfter(timeout);
            try
            {
                await process.WaitForExitAsync(limit.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                return null;
            }
            // The parameterless wait also waits for the last redirected lines to be handed over.
            process.WaitForExit();
            return process.ExitCode;
        }
        finally
        {
            if (!process.HasExited)
            {
                try
                {
                    process.Kill(entireProcessTree: true);
                    process.WaitForExit(10_000);
                }
                catch (InvalidOperationException)
                {
                    // gone meanwhile
                }
            }
            ChildProcesses.Remove(process);
        }

        void Forward(string? line)
        {
            if (line is not null)
            {
                onLine(line);
            }
        }
    }

    // --- options ------------------------------------------------------------------------------------------------

    private static VariantSpec Spec(Args args, char name)
    {
        var build = args.Required(name.ToString());
        var transport = (args.Get($"{name}-transport") ?? "signalr").ToLowerInvariant();
        if (transport is not ("signalr" or "sse"))
        {
            throw new ArgumentException($"--{name}-transport must be signalr or sse, not '{transport}'");
        }
        var extra = (args.Get($"{name}-args") ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        // Settings of the server itself, e.g. "--QrOrleans:Cluster:OrleansDashboard=false": one variant of a setting
        // against the other, on the same build, in one run.
        var server = (args.Get($"{name}-server-args") ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        // The server process' runtime settings, e.g. "DOTNET_GCConserveMemory=7 DOTNET_gcServer=0" (GC choices).
        var environment = (args.Get($"{name}-env") ?? "").Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(e => e.Split('=', 2)).ToDictionary(e => e[0], e => e.Length > 1 ? e[1] : "", StringComparer.Ordinal);
        return new VariantSpec(char.ToUpperInvariant(name), build, transport, Flag(args, $"{name}-redis", false), extra, server, environment);
    }

    private static bool Flag(Args args, string key, bool fallback) => args.Get(key)?.ToLowerInvariant() switch
    {
        null => fallback,
        "yes" or "true" or "1" => true,
        "no" or "false" or "0" => false,
        var other => throw new ArgumentException($"--{key} must be yes or no, not '{other}'"),
    };

    /// <summary>The waiting bench holds one socket per desktop; the ceremonies bench does not need the hint.</summary>
    private static void HintFileLimit()
    {
        try
        {
            var line = File.ReadLines("/proc/self/limits").FirstOrDefault(l => l.StartsWith("Max open files", StringComparison.Ordinal));
            var soft = line?["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault();
            if (soft is not null && soft != "unlimited" && long.TryParse(soft, NumberStyles.Integer, C, out var n) && n < 20000)
            {
                Console.WriteLine(string.Create(C,
                    $"compare: hint: ulimit -n is {n}; the waiting bench needs 20000 or more (ulimit -n 20000), the ceremonies runs here do not"));
            }
        }
        catch (IOException)
        {
            // no /proc: not Linux, no hint
        }
    }

    private sealed record VariantSpec(char Name, string Build, string Transport, bool Redis, IReadOnlyList<string> ExtraArgs, IReadOnlyList<string> ServerArgs,
        IReadOnlyDictionary<string, string> ServerEnvironment);

    /// <summary>A built tree: its sources (the gateway's content root) and the two dlls. <c>Sha</c> is null for ".".</summary>
    private sealed record Build(string Given, string? Sha, string Tree, string Artifacts)
    {
        public string GatewayDll => Path.Combine(Artifacts, "bin", "Gateway", "release", "QrOrleans.Gateway.dll");

        public string BenchDll => Path.Combine(Artifacts, "bin", "QrOrleans.Bench", "release", "QrOrleans.Bench.dll");

        public string Describe() => Sha is null ? $"the working tree {Tree}, built in {Artifacts}" : $"{Sha[..10]} in {Tree}";
    }

    private sealed record Variant(char Name, Build Build, string Transport, bool Redis, IReadOnlyList<string> ExtraArgs, IReadOnlyList<string> ServerArgs,
        IReadOnlyDictionary<string, string> ServerEnvironment)
    {
        public string Label => $"{Build.Given}@{Transport}{(Redis ? "+redis" : "")}"
            + string.Concat(ServerArgs.Select(a => "+" + a.TrimStart('-')))
            + string.Concat(ServerEnvironment.Select(e => $"+{e.Key}={e.Value}"));
    }

    private sealed record Figures(double Rate, double P99Ms, double ServerCpuUs, double? RedisPerCeremony, long Errors);

    /// <summary>
    /// The result lines of a <c>ceremonies</c> run, of this build's bench or an older one (they print the same lines).
    /// No <c>ceremonies/s=</c> line: the run produced no figures.
    /// </summary>
    private sealed partial class CeremoniesOutput
    {
        private double? _rate;
        private double _p99;
        private double _cpu = double.NaN;
        private double? _redis;
        private long _errors;

        public void Feed(string line)
        {
            if (Result().Match(line) is { Success: true } r)
            {
                _rate = double.Parse(r.Groups[1].Value, C);
                _p99 = double.Parse(r.Groups[2].Value, C);
            }
            else if (Cpu().Match(line) is { Success: true } c)
            {
                _cpu = double.TryParse(c.Groups[1].Value, NumberStyles.Float, C, out var us) ? us : double.NaN;
            }
            else if (Redis().Match(line) is { Success: true } d)
            {
                _redis = double.Parse(d.Groups[1].Value, C);
            }
            else if (Completed().Match(line) is { Success: true } e)
            {
                _errors = long.Parse(e.Groups[1].Value, C);
            }
        }

        public Figures? Figures() => _rate is { } rate ? new Figures(rate, _p99, _cpu, _redis, _errors) : null;

        [GeneratedRegex(@"^ceremonies/s=([0-9.]+) p50_ms=[0-9.]+ p99_ms=([0-9.]+)")]
        private static partial Regex Result();

        // The unit after the figure is "µs"; not matched, in case a child's console encoding mangles it.
        [GeneratedRegex(@"^cpu per ceremony: server (\S+) ")]
        private static partial Regex Cpu();

        [GeneratedRegex(@"^redis: [0-9]+ commands during the run \(([0-9.]+) per ceremony\)")]
        private static partial Regex Redis();

        [GeneratedRegex(@"^ceremonies: [0-9]+ completed, ([0-9]+) errors in ")]
        private static partial Regex Completed();
    }
}
