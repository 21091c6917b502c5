using System.Diagnostics;
using System.Globalization;
using StackExchange.Redis;

namespace QrOrleans.Bench;

/// <summary>
/// What the Redis server alone can do on this machine, for the ceremonies bench's <c>--redis</c>: the commands the
/// cluster sent during the run (INFO commandstats), and the rate of raw version-checked writes of a grain-state-sized
/// value at the same concurrency, the shape of Orleans' Redis grain storage writes (a script that compares the stored
/// etag and replaces the value). Keys live under their own prefix and are deleted afterwards.
/// </summary>
public static class RedisCeiling
{
    private const string Prefix = "qrorleans-bench-ceiling:";

    // KEYS[1] the key; ARGV[1] the expected etag, ARGV[2] the new one, ARGV[3] the value.
    private const string CheckedWrite = """
        local etag = redis.call('HGET', KEYS[1], 'etag')
        if etag ~= false and etag ~= ARGV[1] then return 0 end
        redis.call('HSET', KEYS[1], 'etag', ARGV[2], 'data', ARGV[3])
        return 1
        """;

    /// <summary>Commands the server has executed since it started, over every command type.</summary>
    public static async Task<long> CommandsAsync(string configuration)
    {
        var options = ConfigurationOptions.Parse(configuration);
        options.AllowAdmin = true; // INFO is an admin command to StackExchange.Redis
        await using var redis = await ConnectionMultiplexer.ConnectAsync(options);
        var server = redis.GetServers()[0];
        long total = 0;
        foreach (var group in await server.InfoAsync("commandstats"))
        {
            foreach (var entry in group)
            {
                // cmdstat_<name>: calls=N,usec=…
                var calls = entry.Value.Split(',')[0];
                if (entry.Key.StartsWith("cmdstat_", StringComparison.Ordinal) && calls.StartsWith("calls=", StringComparison.Ordinal))
                {
                    total += long.Parse(calls["calls=".Length..], CultureInfo.InvariantCulture);
                }
            }
        }
        return total; // the two INFO calls of the measurement itself are in it: negligible against the run's

    }

    /// <summary>Raw checked writes per second: <paramref name="count"/> of them over 1,000 keys, at <paramref name="concurrency"/>.</summary>
    public static async Task<double> MeasureAsync(string configuration, long count, int concurrency)
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(configuration);
        var db = redis.GetDatabase();
        var value = new string('x', 1024);
        const int keys = 1000;
        var etags = new string[keys];
        long issued = 0;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(_ => Task.Run(async () =>
        {
            long n;
            while ((n = Interlocked.Increment(ref issued)) <= count)
            {
                var k = (int)(n % keys);
                var next = n.ToString(CultureInfo.InvariantCulture);
                string expected;
                lock (etags)
                {
                    expected = etags[k] ?? "";
                    etags[k] = next;
                }
                await db.ScriptEvaluateAsync(CheckedWrite, [Prefix + k.ToString(CultureInfo.InvariantCulture)], [expected, next, value]);
            }
        })));
        var rate = count / clock.Elapsed.TotalSeconds;
        await db.KeyDeleteAsync(Enumerable.Range(0, keys).Select(k => (RedisKey)(Prefix + k.ToString(CultureInfo.InvariantCulture))).ToArray());
        return rate;
    }
}
