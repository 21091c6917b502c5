using System.Globalization;
using QrOrleans.Bench;

// Load generator for a running QrOrleans node. See docs/benchmarks.md.
//   ceremonies --target <url> --seconds <n> [--concurrency <c>] [--transport signalr|sse] [--admin-key <key>] [--phones <p>] [--hubs <h>] [--warmup <s>] [--pid <server pid>]
//              [--phone-target <url of another node>] [--redis <StackExchange.Redis configuration of the cluster's Redis>]
//   growth     --target <url> --count <n> [--concurrency <c>] [--transport signalr|sse] [--warmup <n>] [--idle-seconds <s>] [--pid <server pid>]
//   waiting    --target <url> --count <n> [--transport signalr|sse] [--pid <server pid>] [--parallel <p>] [--settle <s>] [--warmup <w>] [--part all|sessions|connections|http]
//   soak       --seconds <n> [--nodes 3] [--rate 20] [--fsync everysec|always] [--gateway <QrOrleans.Gateway.dll>] (its own redis-server and nodes; LocalCluster.cs)
//   failover   [--nodes 3] [--kills 5] [--sessions 12] [--gateway <QrOrleans.Gateway.dll>]
//   compare    --a <build> --b <build> [--rounds 3] [--a-transport signalr|sse] [--b-transport …] [--a-redis yes] [--b-redis yes]
//              [--seconds 20] [--warmup 45] [--concurrency 16] [--a-args "<ceremonies options>"] [--b-args …] [--a-server-args "<gateway options>"] [--b-server-args …] [--a-env "<K=V …>"] [--b-env …] [--keep-builds yes] [--repo <path>]
//              (a build is "." (this working tree) or a commit; each run a fresh gateway of that build, driven by that build's
//              own ceremonies bench; rounds alternate AB BA …; prints the A/B ratios. CompareBench.cs)
if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
{
    Usage();
    return 2;
}

try
{
    var options = Args.Parse(args.AsSpan(1));
    return args[0] switch
    {
        "ceremonies" => await CeremoniesBench.RunAsync(options),
        "waiting" => await WaitingBench.RunAsync(options),
        "growth" => await GrowthBench.RunAsync(options),
        "soak" => await SoakBench.RunAsync(options),
        "failover" => await FailoverBench.RunAsync(options),
        "compare" => await CompareBench.RunAsync(options),
        _ => Usage(),
    };
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    Usage();
    return 2;
}

static int Usage()
{
    Console.Error.WriteLine("""
        usage:
          QrOrleans.Bench ceremonies --target <url> --seconds <n> [--concurrency <c>] [--transport signalr|sse]
                                     [--admin-key <key>] [--phones <p>] [--hubs <h>] [--warmup <seconds>] [--pid <server pid>]
                                     [--phone-target <url>] [--redis <configuration>]
          QrOrleans.Bench waiting --target <url> --count <n> [--transport signalr|sse] [--pid <server pid>]
                                  [--parallel <p>] [--settle <seconds>] [--warmup <n>] [--part all|sessions|connections|http]
          QrOrleans.Bench growth --target <url> --count <n> [--concurrency <c>] [--transport signalr|sse] [--admin-key <key>]
                                 [--phones <p>] [--warmup <n>] [--idle-seconds <s>] [--pid <server pid>]
          QrOrleans.Bench soak --seconds <n> [--nodes 3] [--rate 20] [--fsync everysec|always] [--phones <p>]
                               [--kill-at <s>] [--redis-at <s>] [--gateway <QrOrleans.Gateway.dll>] [--content-root <src/Gateway>] [--keep yes]
          QrOrleans.Bench failover [--nodes 3] [--kills 5] [--sessions 12] [--fsync everysec|always] [--gateway <QrOrleans.Gateway.dll>]
          QrOrleans.Bench compare --a <build> --b <build> [--rounds 3] [--a-transport signalr|sse] [--b-transport signalr|sse]
                                  [--a-redis yes|no] [--b-redis yes|no] [--seconds 20] [--warmup 45] [--concurrency 16]
                                  [--a-args "<more ceremonies options>"] [--b-args "<…>"] [--a-server-args "<gateway options>"] [--b-server-args "<…>"] [--a-env "<K=V …>"] [--b-env "<…>"] [--keep-builds yes|no] [--repo <path>]
              a build is . (the working tree, built into /tmp/qro-compare/worktree-artifacts) or a commit-ish (checked out
              and built once per sha in /tmp/qro-compare/<sha>); e.g. --a . --b 93b6a41, --a . --a-transport sse --b .,
              --a . --a-redis yes --b .
        """);
    return 2;
}

namespace QrOrleans.Bench
{
    /// <summary>"--key value" pairs, parsed by hand.</summary>
    public sealed class Args
    {
        private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);

        public static Args Parse(ReadOnlySpan<string> args)
        {
            var parsed = new Args();
            for (var i = 0; i < args.Length; i++)
            {
                var key = args[i];
                if (!key.StartsWith("--", StringComparison.Ordinal) || key.Length < 3)
                {
                    throw new ArgumentException($"unexpected argument '{key}'");
                }
                var eq = key.IndexOf('=', StringComparison.Ordinal);
                if (eq > 0)
                {
                    parsed._values[key[2..eq]] = key[(eq + 1)..];
                    continue;
                }
                if (i + 1 >= args.Length)
                {
                    throw new ArgumentException($"{key} needs a value");
                }
                parsed._values[key[2..]] = args[++i];
            }
            return parsed;
        }

        public string? Get(string key) => _values.GetValueOrDefault(key);

        public string Required(string key) => Get(key) ?? throw new ArgumentException($"--{key} is required");

        public int Int(string key, int? fallback = null)
        {
            var value = Get(key);
            if (value is null)
            {
                return fallback ?? throw new ArgumentException($"--{key} is required");
            }
            return int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= 0
                ? n
                : throw new ArgumentException($"--{key} must be a non-negative integer");
        }

        public Uri Target()
        {
            var target = Required("target");
            return Uri.TryCreate(target, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"
                ? new Uri(uri.GetLeftPart(UriPartial.Authority) + "/")
                : throw new ArgumentException("--target must be an http(s) URL");
        }

        public Transport Transport() => (Get("transport") ?? "signalr").ToLowerInvariant() switch
        {
            "signalr" => Bench.Transport.SignalR,
            "sse" => Bench.Transport.Sse,
            var other => throw new ArgumentException($"--transport must be signalr or sse, not '{other}'"),
        };
    }

    public enum Transport
    {
        SignalR,
        Sse,
    }
}
