using System.Diagnostics;
using Npgsql;

namespace QrOrleans.Tests.Cluster;

/// <summary>
/// The test PostgreSQL server that <c>scripts/test</c> starts (QRO_TEST_PG and friends), and a fresh database on
/// it per test class. Without QRO_TEST_PG the tests fail (never skip): they must run through scripts/test.
/// </summary>
public sealed class PostgresDatabase : IAsyncDisposable
{
    private PostgresDatabase(string name, string connectionString)
    {
        Name = name;
        ConnectionString = connectionString;
    }

    public string Name { get; }

    /// <summary>An Npgsql connection string to this database (as the superuser of the test server).</summary>
    public string ConnectionString { get; }

    /// <summary>The server's connection string (database 'postgres', superuser).</summary>
    public static string ServerConnectionString => Required("QRO_TEST_PG");

    /// <summary>Unpooled, so a server restart by one test never leaves a broken pooled connection for the next.</summary>
    private static string AdminConnectionString => new NpgsqlConnectionStringBuilder(ServerConnectionString) { Pooling = false }.ConnectionString;

    public static async Task<PostgresDatabase> CreateAsync(int maxPoolSize = 30)
    {
        var name = "qro_" + Guid.NewGuid().ToString("N")[..16];
        await using (var admin = new NpgsqlConnection(AdminConnectionString))
        {
            await admin.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {name}", admin);
            await create.ExecuteNonQueryAsync();
        }
        var builder = new NpgsqlConnectionStringBuilder(ServerConnectionString) { Database = name, MaxPoolSize = maxPoolSize };
        return new PostgresDatabase(name, builder.ConnectionString);
    }

    /// <summary>Runs one scalar query on this database (a fresh, unpooled connection).</summary>
    public async Task<T> ScalarAsync<T>(string sql)
    {
        var builder = new NpgsqlConnectionStringBuilder(ConnectionString) { Pooling = false };
        await using var conn = new NpgsqlConnection(builder.ConnectionString);
        await conn.OpenAsync();
        await using var cmd = new NpgsqlCommand(sql, conn);
        return (T)(await cmd.ExecuteScalarAsync())!;
    }

    /// <summary>
    /// Restarts the whole PostgreSQL server (every database on it), as the postgres user, with the options it was
    /// started with (postmaster.opts). Only for tests in the non-parallel "PostgreSqlRestart" collection.
    /// </summary>
    public static Task<string> RestartServerAsync(string mode = "fast") =>
        PgCtlAsync("-l", LogFile, "-w", "-t", "30", "-m", mode, "restart");

    /// <summary>Stops the whole server (fast shutdown); <see cref="StartServerAsync"/> brings it back as it was.</summary>
    public static async Task<string> StopServerAsync()
    {
        _startOptions ??= StartOptions();
        return await PgCtlAsync("-w", "-t", "30", "-m", "fast", "stop");
    }

    /// <summary>Starts the server stopped by <see cref="StopServerAsync"/>, with the options it last ran with.</summary>
    public static Task<string> StartServerAsync() =>
        PgCtlAsync("-l", LogFile, "-w", "-t", "30", "-o", _startOptions ?? StartOptions(), "start");

    private static string? _startOptions;

    private static string DataDirectory => Required("QRO_TEST_PG_DATA");

    /// <summary>The server log next to the data directory, where scripts/test puts it.</summary>
    private static string LogFile => Path.Combine(Path.GetDirectoryName(Path.GetFullPath(DataDirectory).TrimEnd('/'))!, "log");

    /// <summary>The postmaster's command line options (postmaster.opts), minus -D, quoted for pg_ctl -o.</summary>
    private static string StartOptions()
    {
        var opts = File.ReadAllText(Path.Combine(DataDirectory, "postmaster.opts"));
        var tokens = System.Text.RegularExpressions.Regex.Matches(opts, "\"((?:[^\"\\\\]|\\\\.)*)\"").Select(m => m.Groups[1].Value).ToList();
        var kept = new List<string>();
        for (var i = 0; i < tokens.Count; i++)
        {
            if (tokens[i] == "-D")
            {
                i++;
                continue;
            }
            kept.Add("'" + tokens[i].Replace("'", "'\\''", StringComparison.Ordinal) + "'");
        }
        return string.Join(' ', kept);
    }

    /// <summary>pg_ctl as the postgres user (tests run as root; the server refuses to run as root).</summary>
    private static async Task<string> PgCtlAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("runuser")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // -l (in the callers that start a server): it must not inherit our pipes and keep them open for its whole life.
        foreach (var arg in new[] { "-u", "postgres", "--", Path.Combine(Required("QRO_TEST_PG_BIN"), "pg_ctl"), "-D", DataDirectory }.Concat(args))
        {
            psi.ArgumentList.Add(arg);
        }
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(40));
        await process.WaitForExitAsync(timeout.Token);
        var output = await stdout + await stderr;
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"pg_ctl {string.Join(' ', args)} failed ({process.ExitCode}): {output}");
        }
        return output;
    }

    private static string Required(string variable) =>
        Environment.GetEnvironmentVariable(variable) is { Length: > 0 } value
            ? value
            : throw new InvalidOperationException(
                $"{variable} is not set: the PostgreSQL cluster tests need the test PostgreSQL server; run through scripts/test.");

    public async ValueTask DisposeAsync()
    {
        try
        {
            await using var admin = new NpgsqlConnection(AdminConnectionString);
            await admin.OpenAsync();
            await using var drop = new NpgsqlCommand($"DROP DATABASE IF EXISTS {Name} WITH (FORCE)", admin);
            await drop.ExecuteNonQueryAsync();
        }
        catch (NpgsqlException)
        {
            // best effort: the server is throwaway
        }
    }
}
