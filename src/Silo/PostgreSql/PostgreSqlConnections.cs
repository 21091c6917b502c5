using Npgsql;

namespace QrOrleans.Silo.PostgreSql;

/// <summary>How the silo talks to PostgreSQL: a pool for turns, one unpooled connection for LISTEN.</summary>
public static class PostgreSqlConnections
{
    /// <summary>
    /// The pool for grain reads and commits. The same few statements run millions of times, so they are prepared
    /// once per connection (auto-prepare), and connections are not reset on return (a reset would drop those
    /// prepared statements and costs a round trip). Nothing here sets session state, so skipping the reset is
    /// safe. Settings the operator put in the connection string win.
    /// </summary>
    public static string Pooled(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        if (!connectionString.Contains("Reset On Close", StringComparison.OrdinalIgnoreCase))
        {
            builder.NoResetOnClose = true;
        }
        if (builder.MaxAutoPrepare == 0)
        {
            builder.MaxAutoPrepare = 64;
            builder.AutoPrepareMinUsages = 2;
        }
        return builder.ConnectionString;
    }

    /// <summary>The LISTEN connection lives outside the pool, so a registered LISTEN never leaks into a pooled connection.</summary>
    public static string Listener(string connectionString) =>
        new NpgsqlConnectionStringBuilder(connectionString) { Pooling = false, KeepAlive = 5 }.ConnectionString;
}
