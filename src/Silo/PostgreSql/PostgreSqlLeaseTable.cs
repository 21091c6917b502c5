using Npgsql;
using QrOrleans.Runtime;

namespace QrOrleans.Silo.PostgreSql;

/// <summary>
/// Lease rows (migration 2). Grants are one UPDATE each over rows picked with FOR UPDATE SKIP LOCKED, so two silos
/// acquiring at once never get the same lease; every grant takes a new epoch from one sequence, and renewals and releases match on
/// holder and epoch, so a silo that lost a lease can neither extend nor free its successor's.
/// </summary>
public sealed class PostgreSqlLeaseTable(NpgsqlDataSource db) : ILeaseTable
{
    /// <summary>Expired leases taken over per call; the rest go on the next call.</summary>
    private const int MaxTakeovers = 1000;

    public async Task RegisterAsync(string grainType, string key, CancellationToken ct)
    {
        await using var cmd = Command("""
            INSERT INTO qro_leases (grain_type, grain_key, key_hash) VALUES ($1, $2, $3)
            ON CONFLICT (grain_type, grain_key) DO NOTHING
            """, grainType, key, Schema.KeyHash(grainType, key));
        await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }

    public async Task UnregisterAsync(string grainType, string key, CancellationToken ct)
    {
        await using var cmd = Command("DELETE FROM qro_leases WHERE grain_type = $1 AND grain_key = $2", grainType, key);
        await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<LeaseGrant>> AcquireAsync(
        string grainType, string holder, DateTimeOffset now, TimeSpan duration, int maxFree, CancellationToken ct)
    {
        // Expired leases first and without limit: a dead holder's accounts must move within the lease time.
        await using var takeOver = Command("""
            UPDATE qro_leases l SET holder = $2, epoch = nextval('qro_lease_epoch'), expires_at = $4
            FROM (SELECT grain_type, grain_key FROM qro_leases
                  WHERE grain_type = $1 AND holder IS NOT NULL AND expires_at < $3
                  ORDER BY expires_at LIMIT $5 FOR UPDATE SKIP LOCKED) d
            WHERE l.grain_type = d.grain_type AND l.grain_key = d.grain_key
            RETURNING l.grain_key, l.epoch, l.expires_at
            """, grainType, holder, now.UtcDateTime, (now + duration).UtcDateTime, MaxTakeovers);
        var granted = await ReadGrantsAsync(takeOver, ct).ConfigureAwait(false);
        if (maxFree <= 0)
        {
            return granted;
        }
        await using var take = Command("""
            UPDATE qro_leases l SET holder = $2, epoch = nextval('qro_lease_epoch'), expires_at = $3
            FROM (SELECT grain_type, grain_key FROM qro_leases
                  WHERE grain_type = $1 AND holder IS NULL
                  ORDER BY grain_key LIMIT $4 FOR UPDATE SKIP LOCKED) d
            WHERE l.grain_type = d.grain_type AND l.grain_key = d.grain_key
            RETURNING l.grain_key, l.epoch, l.expires_at
            """, grainType, holder, (now + duration).UtcDateTime, maxFree);
        return [.. granted, .. await ReadGrantsAsync(take, ct).ConfigureAwait(false)];
    }

    public async Task<IReadOnlyList<LeaseGrant>> RenewAsync(
        string grainType, string holder, IReadOnlyCollection<LeaseGrant> held, DateTimeOffset now, TimeSpan duration, CancellationToken ct)
    {
        if (held.Count == 0)
        {
            return [];
        }
        await using var cmd = Command("""
            UPDATE qro_leases l SET expires_at = $3
            FROM unnest($4::text[], $5::bigint[]) AS h(grain_key, epoch)
            WHERE l.grain_type = $1 AND l.grain_key = h.grain_key AND l.epoch = h.epoch AND l.holder = $2
            RETURNING l.grain_key, l.epoch, l.expires_at
            """, grainType, holder, (now + duration).UtcDateTime, held.Select(h => h.Key).ToArray(), held.Select(h => h.Epoch).ToArray());
        return await ReadGrantsAsync(cmd, ct).ConfigureAwait(false);
    }

    public async Task ReleaseAsync(string grainType, string holder, IReadOnlyCollection<LeaseGrant> held, CancellationToken ct)
    {
        if (held.Count == 0)
        {
            return;
        }
        await using var cmd = Command("""
            UPDATE qro_leases l SET holder = NULL, expires_at = NULL
            FROM unnest($3::text[], $4::bigint[]) AS h(grain_key, epoch)
            WHERE l.grain_type = $1 AND l.grain_key = h.grain_key AND l.epoch = h.epoch AND l.holder = $2
            """, grainType, holder, held.Select(h => h.Key).ToArray(), held.Select(h => h.Epoch).ToArray());
        await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }

    public async Task<int> CountAsync(string grainType, CancellationToken ct)
    {
        await using var cmd = Command("SELECT count(*) FROM qro_leases WHERE grain_type = $1", grainType);
        return (int)(long)(await cmd.ExecuteScalarAsync(ct).ConfigureAwait(false))!;
    }

    public async Task<IReadOnlyList<LeaseRecord>> ListAsync(string grainType, CancellationToken ct)
    {
        await using var cmd = Command("SELECT grain_key, holder, epoch, expires_at FROM qro_leases WHERE grain_type = $1 ORDER BY grain_key", grainType);
        var rows = new List<LeaseRecord>();
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            rows.Add(new LeaseRecord(
                reader.GetString(0),
                reader.IsDBNull(1) ? null : reader.GetString(1),
                reader.GetInt64(2),
                reader.IsDBNull(3) ? null : new DateTimeOffset(reader.GetDateTime(3), TimeSpan.Zero)));
        }
        return rows;
    }

    private static async Task<IReadOnlyList<LeaseGrant>> ReadGrantsAsync(NpgsqlCommand cmd, CancellationToken ct)
    {
        var grants = new List<LeaseGrant>();
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            grants.Add(new LeaseGrant(reader.GetString(0), reader.GetInt64(1), new DateTimeOffset(reader.GetDateTime(2), TimeSpan.Zero)));
        }
        return grants;
    }

    private NpgsqlCommand Command(string sql, params object[] values)
    {
        var cmd = db.CreateCommand(sql);
        foreach (var v in values)
        {
            cmd.Parameters.Add(new NpgsqlParameter { Value = v });
        }
        return cmd;
    }
}
