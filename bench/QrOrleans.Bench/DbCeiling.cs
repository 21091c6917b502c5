using System.Diagnostics;
using Npgsql;

namespace QrOrleans.Bench;

/// <summary>
/// The ceiling of the database itself: raw version-checked updates through Npgsql, the same statement shape as a
/// grain commit's compare-and-set (UPDATE … WHERE version = expected), one row per worker slot, autocommit.
/// A real commit does more (a transaction, the reminder upsert, the NOTIFY), so this is an upper bound.
/// </summary>
public static class DbCeiling
{
    /// <summary>
    /// Grain commits one ceremony makes: the session's create, scan, approve and claim; the user's device list; the
    /// new device; three audit appends (scanned, approved, device linked).
    /// </summary>
    public const int WritesPerCeremony = 9;

    public static async Task<double> MeasureAsync(string connectionString, long updates, int concurrency)
    {
        await using var db = NpgsqlDataSource.Create(connectionString);
        var table = "qro_bench_ceiling_" + Environment.ProcessId;
        await using (var create = db.CreateCommand($$"""
            DROP TABLE IF EXISTS {{table}};
            CREATE TABLE {{table}} (key text PRIMARY KEY, version bigint NOT NULL, state jsonb NOT NULL);
            INSERT INTO {{table}} SELECT 'k' || g, 0, '{"state":"pending"}' FROM generate_series(0, {{concurrency - 1}}) g;
            """))
        {
            await create.ExecuteNonQueryAsync();
        }
        var remaining = updates;
        var clock = Stopwatch.StartNew();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async worker =>
        {
            long version = 0;
            while (Interlocked.Decrement(ref remaining) >= 0)
            {
                await using var cmd = db.CreateCommand($"UPDATE {table} SET version = $1, state = $2::jsonb WHERE key = $3 AND version = $4");
                cmd.Parameters.Add(new() { Value = version + 1 });
                cmd.Parameters.Add(new() { Value = """{"state":"scanned","numberMatch":"42"}""" });
                cmd.Parameters.Add(new() { Value = "k" + worker });
                cmd.Parameters.Add(new() { Value = version });
                if (await cmd.ExecuteNonQueryAsync() != 1)
                {
                    throw new InvalidOperationException("a version-checked update found another version");
                }
                version++;
            }
        }));
        var seconds = clock.Elapsed.TotalSeconds;
        await using (var drop = db.CreateCommand($"DROP TABLE {table}"))
        {
            await drop.ExecuteNonQueryAsync();
        }
        return updates / seconds;
    }
}
