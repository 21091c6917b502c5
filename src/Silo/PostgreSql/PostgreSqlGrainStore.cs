using System.Text;
using System.Text.Json;
using Npgsql;
using NpgsqlTypes;
using QrOrleans.Runtime;

namespace QrOrleans.Silo.PostgreSql;

/// <summary>
/// Grain rows with a version compare-and-set, reminder rows claimed with FOR UPDATE SKIP LOCKED, and the
/// stream's NOTIFY sent inside the same transaction as the state write: a listener hears of a change if and
/// only if it committed.
/// </summary>
public sealed class PostgreSqlGrainStore(NpgsqlDataSource db) : IGrainStore, IReminderTable, IGrainStatistics
{
    public const string Channel = "qro_stream";

    /// <summary>NOTIFY payloads must stay under 8000 bytes; bigger events go out without their payload.</summary>
    private const int MaxNotifyPayload = 7000;

    public async Task<StoredGrain?> ReadAsync(GrainId id, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("SELECT version, state::text FROM qro_grains WHERE grain_type = $1 AND grain_key = $2");
        cmd.Parameters.Add(new() { Value = id.Type });
        cmd.Parameters.Add(new() { Value = id.Key });
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        if (!await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            return null;
        }
        return new StoredGrain(Encoding.UTF8.GetBytes(reader.GetString(1)), reader.GetInt64(0));
    }

    public async Task<long> CommitAsync(GrainId id, long? expectedEtag, byte[]? state, TurnEffects effects, CancellationToken ct)
    {
        await using var conn = await db.OpenConnectionAsync(ct).ConfigureAwait(false);
        await using var tx = await conn.BeginTransactionAsync(ct).ConfigureAwait(false);
        var version = (expectedEtag ?? 0) + 1;
        await using (var cas = CompareAndSet(conn, tx, id, expectedEtag, state, version))
        {
            if (await cas.ExecuteNonQueryAsync(ct).ConfigureAwait(false) != 1)
            {
                throw new EtagConflictException(id, expectedEtag);
            }
        }
        var hash = Schema.KeyHash(id.Type, id.Key);
        await using var batch = new NpgsqlBatch(conn, tx);
        foreach (var r in effects.Reminders)
        {
            batch.BatchCommands.Add(r.DueAt is { } due
                ? BatchCommand("""
                    INSERT INTO qro_reminders (grain_type, grain_key, name, key_hash, due_at, period, seq)
                    VALUES ($1, $2, $3, $4, $5, $6, nextval('qro_reminder_seq'))
                    ON CONFLICT (grain_type, grain_key, name)
                    DO UPDATE SET due_at = excluded.due_at, period = excluded.period, seq = excluded.seq
                    """, id.Type, id.Key, r.Name, hash, due.UtcDateTime, (object?)r.Period ?? DBNull.Value)
                : BatchCommand("DELETE FROM qro_reminders WHERE grain_type = $1 AND grain_key = $2 AND name = $3", id.Type, id.Key, r.Name));
        }
        if (state is null) // a deleted grain keeps no reminders
        {
            batch.BatchCommands.Add(BatchCommand("DELETE FROM qro_reminders WHERE grain_type = $1 AND grain_key = $2", id.Type, id.Key));
        }
        foreach (var e in effects.Events)
        {
            batch.BatchCommands.Add(BatchCommand("SELECT pg_notify($1, $2)", Channel, NotifyPayload(e)));
        }
        if (batch.BatchCommands.Count > 0)
        {
            await batch.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }
        await tx.CommitAsync(ct).ConfigureAwait(false);
        return version;
    }

    private static NpgsqlCommand CompareAndSet(NpgsqlConnection conn, NpgsqlTransaction tx, GrainId id, long? expected, byte[]? state, long version)
    {
        NpgsqlCommand cmd;
        if (expected is null)
        {
            cmd = new NpgsqlCommand("""
                INSERT INTO qro_grains (grain_type, grain_key, key_hash, version, state) VALUES ($1, $2, $3, $4, $5)
                ON CONFLICT (grain_type, grain_key) DO NOTHING
                """, conn, tx);
            Add(cmd, id.Type, id.Key, Schema.KeyHash(id.Type, id.Key), version);
            cmd.Parameters.Add(new() { Value = Encoding.UTF8.GetString(state ?? "null"u8.ToArray()), NpgsqlDbType = NpgsqlDbType.Jsonb });
            return cmd;
        }
        if (state is null)
        {
            cmd = new NpgsqlCommand("DELETE FROM qro_grains WHERE grain_type = $1 AND grain_key = $2 AND version = $3", conn, tx);
            Add(cmd, id.Type, id.Key, expected.Value);
            return cmd;
        }
        cmd = new NpgsqlCommand("""
            UPDATE qro_grains SET version = $4, state = $5, modified_at = now()
            WHERE grain_type = $1 AND grain_key = $2 AND version = $3
            """, conn, tx);
        Add(cmd, id.Type, id.Key, expected.Value, version);
        cmd.Parameters.Add(new() { Value = Encoding.UTF8.GetString(state), NpgsqlDbType = NpgsqlDbType.Jsonb });
        return cmd;
    }

    /// <summary>{"g":"type/key","v":version,"p":payload}; the payload is dropped when too big (listeners re-read).</summary>
    internal static string NotifyPayload(StreamEvent e)
    {
        var withPayload = JsonSerializer.Serialize(new NotifyMessage(e.Grain.ToString(), e.Version, e.Payload));
        return Encoding.UTF8.GetByteCount(withPayload) <= MaxNotifyPayload
            ? withPayload
            : JsonSerializer.Serialize(new NotifyMessage(e.Grain.ToString(), e.Version, ""));
    }

    internal sealed record NotifyMessage(string g, long v, string p);

    public async Task<IReadOnlyList<DueReminder>> ClaimDueAsync(DateTimeOffset now, TimeSpan lease, int max, CancellationToken ct)
    {
        // Rows another node is claiming right now are skipped, not waited for: each due reminder goes to one node.
        await using var cmd = db.CreateCommand("""
            UPDATE qro_reminders r SET due_at = $2
            FROM (SELECT grain_type, grain_key, name, due_at FROM qro_reminders
                  WHERE due_at <= $1 ORDER BY due_at LIMIT $3 FOR UPDATE SKIP LOCKED) d
            WHERE r.grain_type = d.grain_type AND r.grain_key = d.grain_key AND r.name = d.name
            RETURNING r.grain_type, r.grain_key, r.name, d.due_at, r.period, r.seq
            """);
        cmd.Parameters.Add(new() { Value = now.UtcDateTime });
        cmd.Parameters.Add(new() { Value = (now + lease).UtcDateTime });
        cmd.Parameters.Add(new() { Value = max });
        var claimed = new List<DueReminder>();
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            claimed.Add(new DueReminder(
                new GrainId(reader.GetString(0), reader.GetString(1)),
                reader.GetString(2),
                new DateTimeOffset(reader.GetDateTime(3), TimeSpan.Zero),
                reader.IsDBNull(4) ? null : reader.GetTimeSpan(4),
                reader.GetInt64(5)));
        }
        return claimed;
    }

    public async Task CompleteAsync(DueReminder reminder, DateTimeOffset now, CancellationToken ct)
    {
        NpgsqlCommand cmd;
        if (reminder.Period is { } period && period > TimeSpan.Zero)
        {
            var next = reminder.DueAt + period;
            while (next <= now)
            {
                next += period;
            }
            cmd = SqlCommand("""
                UPDATE qro_reminders SET due_at = $5, seq = nextval('qro_reminder_seq')
                WHERE grain_type = $1 AND grain_key = $2 AND name = $3 AND seq = $4
                """, reminder.Grain.Type, reminder.Grain.Key, reminder.Name, reminder.Seq, next.UtcDateTime);
        }
        else
        {
            cmd = SqlCommand("DELETE FROM qro_reminders WHERE grain_type = $1 AND grain_key = $2 AND name = $3 AND seq = $4",
                reminder.Grain.Type, reminder.Grain.Key, reminder.Name, reminder.Seq);
        }
        await using (cmd)
        await using (var conn = await db.OpenConnectionAsync(ct).ConfigureAwait(false))
        {
            cmd.Connection = conn;
            await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
        }
    }

    public async Task<(int Due, int Overdue)> BacklogAsync(DateTimeOffset now, TimeSpan overdueBy, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand(
            "SELECT count(*) FILTER (WHERE due_at <= $1), count(*) FILTER (WHERE due_at <= $2) FROM qro_reminders");
        cmd.Parameters.Add(new() { Value = now.UtcDateTime });
        cmd.Parameters.Add(new() { Value = (now - overdueBy).UtcDateTime });
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        await reader.ReadAsync(ct).ConfigureAwait(false);
        return ((int)reader.GetInt64(0), (int)reader.GetInt64(1));
    }

    public async Task<IReadOnlyDictionary<string, int>> CountByAsync(string grainType, string property, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("SELECT state->>$2, count(*) FROM qro_grains WHERE grain_type = $1 GROUP BY 1");
        cmd.Parameters.Add(new() { Value = grainType });
        cmd.Parameters.Add(new() { Value = property });
        var counts = new Dictionary<string, int>();
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            counts[reader.IsDBNull(0) ? "" : reader.GetString(0)] = (int)reader.GetInt64(1);
        }
        return counts;
    }

    private static NpgsqlBatchCommand BatchCommand(string sql, params object[] values)
    {
        var cmd = new NpgsqlBatchCommand(sql);
        foreach (var v in values)
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = v });
        }
        return cmd;
    }

    private static NpgsqlCommand SqlCommand(string sql, params object[] values)
    {
        var cmd = new NpgsqlCommand(sql);
        Add(cmd, values);
        return cmd;
    }

    private static void Add(NpgsqlCommand cmd, params object[] values)
    {
        foreach (var v in values)
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = v });
        }
    }
}
