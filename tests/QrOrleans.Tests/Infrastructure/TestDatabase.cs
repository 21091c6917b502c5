using Npgsql;

namespace QrOrleans.Tests.Infrastructure;

/// <summary>A fresh database in the private PostgreSQL that scripts/test starts (QRO_TEST_PG).</summary>
public static class TestDatabase
{
    public static string ServerConnectionString =>
        Environment.GetEnvironmentVariable("QRO_TEST_PG")
        ?? throw new InvalidOperationException("QRO_TEST_PG is not set: run the tests through scripts/test, which starts PostgreSQL.");

    public static async Task<string> CreateAsync()
    {
        var name = "qro_" + Guid.NewGuid().ToString("N")[..12];
        await using (var conn = new NpgsqlConnection(ServerConnectionString))
        {
            await conn.OpenAsync();
            await using var cmd = new NpgsqlCommand($"CREATE DATABASE {name}", conn);
            await cmd.ExecuteNonQueryAsync();
        }
        return new NpgsqlConnectionStringBuilder(ServerConnectionString) { Database = name }.ConnectionString;
    }
}
