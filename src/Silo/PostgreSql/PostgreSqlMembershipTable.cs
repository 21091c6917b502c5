using Npgsql;
using QrOrleans.Runtime;

namespace QrOrleans.Silo.PostgreSql;

/// <summary>The silo table: one row per node with its status and last heartbeat.</summary>
public sealed class PostgreSqlMembershipTable(NpgsqlDataSource db) : IMembershipTable
{
    public async Task JoinAsync(SiloRecord silo, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("""
            INSERT INTO qro_silos (silo_id, address, status, started_at, last_heartbeat_at) VALUES ($1, $2, $3, $4, $5)
            ON CONFLICT (silo_id) DO UPDATE SET address = excluded.address, status = excluded.status, last_heartbeat_at = excluded.last_heartbeat_at
            """);
        foreach (var v in new object[] { silo.Id, silo.Address, silo.Status, silo.StartedAt.UtcDateTime, silo.LastHeartbeatAt.UtcDateTime })
        {
            cmd.Parameters.Add(new() { Value = v });
        }
        await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }

    public async Task<bool> HeartbeatAsync(string siloId, DateTimeOffset now, CancellationToken ct)
    {
        // A dead row is not revived by a heartbeat; the node notices (0 rows) and joins again explicitly.
        await using var cmd = db.CreateCommand("UPDATE qro_silos SET last_heartbeat_at = $2 WHERE silo_id = $1 AND status = 'active'");
        cmd.Parameters.Add(new() { Value = siloId });
        cmd.Parameters.Add(new() { Value = now.UtcDateTime });
        return await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false) == 1;
    }

    public async Task LeaveAsync(string siloId, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("UPDATE qro_silos SET status = 'stopped' WHERE silo_id = $1");
        cmd.Parameters.Add(new() { Value = siloId });
        await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }

    public async Task<int> MarkDeadAsync(DateTimeOffset before, CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("UPDATE qro_silos SET status = 'dead' WHERE status = 'active' AND last_heartbeat_at < $1");
        cmd.Parameters.Add(new() { Value = before.UtcDateTime });
        return await cmd.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
    }

    public async Task<IReadOnlyList<SiloRecord>> ListAsync(CancellationToken ct)
    {
        await using var cmd = db.CreateCommand("SELECT silo_id, address, status, started_at, last_heartbeat_at FROM qro_silos ORDER BY started_at");
        var silos = new List<SiloRecord>();
        await using var reader = await cmd.ExecuteReaderAsync(ct).ConfigureAwait(false);
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            silos.Add(new SiloRecord(reader.GetString(0), reader.GetString(1), reader.GetString(2),
                new DateTimeOffset(reader.GetDateTime(3), TimeSpan.Zero), new DateTimeOffset(reader.GetDateTime(4), TimeSpan.Zero)));
        }
        return silos;
    }
}
