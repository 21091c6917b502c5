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
        // One statement, so one round trip and one implicit transaction: the compare-and-set runs first, and the
        // reminder changes and the NOTIFY happen only if it matched a row (data-modifying CTEs share a snapshot
        // and commit or fail together).
        var version = (expectedEtag ?? 0) + 1;
        var cas = (expectedEtag, state) switch
        {
            (null, _) => """
                INSERT INTO qro_grains (grain_type, grain_key, key_hash, version, state) VALUES ($1, $2, $3, $5, $6::jsonb)
                ON CONFLICT (grain_type, grain_key) DO NOTHING RETURNING 1
                """,
            (_, null) => "DELETE FROM qro_grains WHERE grain_type = $1 AND grain_key = $2 AND version = $4 RETURNING 1",
            _ => """
                UPDATE qro_grains SET version = $5, state = $6::jsonb, modified_at = now()
                WHERE grain_type = $1 AND grain_key = $2 AND version = $4 RETURNING 1
                """,
        };
        // A turn may set and clear one reminder; only its last word counts (a statement may touch a row once).
        var last = effects.Reminders.GroupBy(r => r.Name, StringComparer.Ordinal).Select(g => g.Last()).ToList();
        var sets = last.Where(r => r.DueAt is not null).ToList();
        var clears = last.Where(r => r.DueAt is null).Select(r => r.Name).ToArray();
        var sql = $$"""
            WITH cas AS ({{cas}}),
            set_reminders AS (
                INSERT INTO qro_reminders (grain_type, grain_key, name, key_hash, due_at, period, seq)
                SELECT $1, $2, r.name, $3, r.due_at,
                       CASE WHEN r.period_ms < 0 THEN NULL ELSE r.period_ms * interval '1 millisecond' END,
                       nextval('qro_reminder_seq')
                FROM unnest($7::text[], $8::timestamptz[], $9::bigint[]) AS r(name, due_at, period_ms)
                WHERE EXISTS (SELECT 1 FROM cas) AND $6::text IS NOT NULL
                ON CONFLICT (grain_type, grain_key, name)
                DO UPDATE SET due_at = excluded.due_at, period = excluded.period, seq = excluded.seq
            ),
            clear_reminders AS (
                DELETE FROM qro_reminders
                WHERE grain_type = $1 AND grain_key = $2 AND EXISTS (SELECT 1 FROM cas)
                  AND (name = ANY($10::text[]) OR $6::text IS NULL)
            )
            SELECT (SELECT count(*) FROM cas), (SELECT pg_notify('{{Channel}}', $11::text) FROM cas WHERE $11::text IS NOT NULL)
            """;
        await using var cmd = db.CreateCommand(sql);
        cmd.Parameters.Add(new() { Value = id.Type });
        cmd.Parameters.Add(new() { Value = id.Key });
        cmd.Parameters.Add(new() { Value = Schema.KeyHash(id.Type, id.Key) });
        cmd.Parameters.Add(new() { Value = (object?)expectedEtag ?? DBNull.Value, NpgsqlDbType = NpgsqlDbType.Bigint });
        cmd.Parameters.Add(new() { Value = version });
        cmd.Parameters.Add(new() { Value = state is null ? DBNull.Value : Encoding.UTF8.GetString(state), NpgsqlDbType = NpgsqlDbType.Text });
        cmd.Parameters.Add(new() { Value = sets.Select(r => r.Name).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        cmd.Parameters.Add(new() { Value = sets.Select(r => r.DueAt!.Value.UtcDateTime).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz });
        cmd.Parameters.Add(new() { Value = sets.Select(r => r.Period is { } p ? (long)p.TotalMilliseconds : -1L).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Bigint });
        cmd.Parameters.Add(new() { Value = clears, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text });
        cmd.Parameters.Add(new() { Value = effects.Events.Count == 0 ? DBNull.Value : NotifyPayload(effects.Events[^1]), NpgsqlDbType = NpgsqlDbType.Text });
        var matched = (long)(await cmd.ExecuteScalarAsync(ct).ConfigureAwait(false) ?? 0L);
        if (matched != 1)
        {
            throw new EtagConflictException(id, expectedEtag);
        }
        return version;
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
