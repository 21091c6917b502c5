using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace QrOrleans.Silo.PostgreSql;

/// <summary>
/// The tables, after Orleans' ADO.NET scripts (one row per grain with a version; reminder rows keyed by grain and
/// name; a membership table with heartbeats), minus what we do not use (service/deployment ids, suspect lists,
/// hash-range queries). Every grain-keyed table carries <c>key_hash</c> so it can be distributed by it later.
/// </summary>
internal static class Schema
{
    /// <summary>Applied in order, each once, in its own transaction. Never edit a shipped entry; append.</summary>
    public static readonly (int Version, string Sql)[] Migrations =
    [
        (1, """
            CREATE TABLE qro_grains (
                grain_type  text        NOT NULL,
                grain_key   text        NOT NULL,
                key_hash    integer     NOT NULL,
                version     bigint      NOT NULL,
                state       jsonb       NOT NULL,
                modified_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (grain_type, grain_key)
            );
            CREATE SEQUENCE qro_reminder_seq;
            CREATE TABLE qro_reminders (
                grain_type text        NOT NULL,
                grain_key  text        NOT NULL,
                name       text        NOT NULL,
                key_hash   integer     NOT NULL,
                due_at     timestamptz NOT NULL,
                period     interval,
                seq        bigint      NOT NULL,
                PRIMARY KEY (grain_type, grain_key, name)
            );
            CREATE INDEX qro_reminders_due ON qro_reminders (due_at);
            CREATE TABLE qro_silos (
                silo_id           text        PRIMARY KEY,
                address           text        NOT NULL,
                status            text        NOT NULL,
                started_at        timestamptz NOT NULL,
                last_heartbeat_at timestamptz NOT NULL
            );
            """),
        // Leases with a fencing epoch (ILeaseTable): one row per leasable grain, e.g. each linked account. Epochs come
        // from one sequence, so a lease registered anew (an account deleted and created again) still outranks every
        // epoch its earlier life handed out.
        (2, """
            CREATE SEQUENCE qro_lease_epoch;
            CREATE TABLE qro_leases (
                grain_type text        NOT NULL,
                grain_key  text        NOT NULL,
                key_hash   integer     NOT NULL,
                holder     text,
                epoch      bigint      NOT NULL DEFAULT 0,
                expires_at timestamptz,
                PRIMARY KEY (grain_type, grain_key)
            );
            CREATE INDEX qro_leases_expiry ON qro_leases (grain_type, expires_at);
            """),
    ];

    /// <summary>Advisory lock id that serializes migrations across nodes starting at once.</summary>
    private const long MigrationLock = 0x51524F524C45414E; // "QRORLEAN"

    public static async Task MigrateAsync(NpgsqlDataSource db, ILogger log, CancellationToken ct)
    {
        await using var conn = await db.OpenConnectionAsync(ct).ConfigureAwait(false);
        await using (var lockCmd = new NpgsqlCommand("SELECT pg_advisory_lock(@id)", conn))
        {
            lockCmd.Parameters.AddWithValue("id", MigrationLock);
            await lockCmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }
        try
        {
            await using (var create = new NpgsqlCommand(
                "CREATE TABLE IF NOT EXISTS qro_schema_version (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())", conn))
            {
                await create.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
            }
            var applied = new HashSet<int>();
            await using (var read = new NpgsqlCommand("SELECT version FROM qro_schema_version", conn))
            await using (var reader = await read.ExecuteReaderAsync(ct).ConfigureAwait(false))
            {
                while (await reader.ReadAsync(ct).ConfigureAwait(false))
                {
                    applied.Add(reader.GetInt32(0));
                }
            }
            foreach (var (version, sql) in Migrations.Where(m => !applied.Contains(m.Version)))
            {
                await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
                await using (var migrate = new NpgsqlCommand(sql, conn, tx))
                {
                    await migrate.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                }
                await using (var mark = new NpgsqlCommand("INSERT INTO qro_schema_version (version) VALUES (@v)", conn, tx))
                {
                    mark.Parameters.AddWithValue("v", version);
                    await mark.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                }
                await tx.CommitAsync(ct).ConfigureAwait(false);
                log.LogInformation("Applied schema migration {Version}", version);
            }
        }
        finally
        {
            await using var unlock = new NpgsqlCommand("SELECT pg_advisory_unlock(@id)", conn);
            unlock.Parameters.AddWithValue("id", MigrationLock);
            await unlock.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
        }
    }

    /// <summary>A stable 32-bit hash of a grain id (FNV-1a), the future distribution key.</summary>
    public static int KeyHash(string type, string key)
    {
        unchecked
        {
            var hash = 2166136261u;
            foreach (var c in type + "/" + key)
            {
                hash = (hash ^ c) * 16777619u;
            }
            return (int)hash;
        }
    }
}

/// <summary>Applies migrations before any other silo service starts; waits for the database if it is not up yet.</summary>
public sealed partial class SchemaMigrator(NpgsqlDataSource db, ILogger<SchemaMigrator> log) : IHostedService
{
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await Schema.MigrateAsync(db, log, cancellationToken).ConfigureAwait(false);
                return;
            }
            catch (NpgsqlException e) when (attempt < 30)
            {
                LogWaiting(log, attempt, e.Message);
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(LogLevel.Warning, "PostgreSQL not reachable yet (attempt {Attempt}): {Reason}")]
    private static partial void LogWaiting(ILogger log, int attempt, string reason);
}
