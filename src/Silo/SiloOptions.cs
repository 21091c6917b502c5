namespace QrOrleans.Silo;

public enum StorageProvider
{
    Memory,
    PostgreSql,
}

/// <summary>How this node's silo runs (configuration section QrOrleans:Storage and QrOrleans:Silo).</summary>
public sealed class SiloOptions
{
    public StorageProvider Provider { get; set; } = StorageProvider.Memory;

    public string? ConnectionString { get; set; }

    public TimeSpan ReminderPollInterval { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How long a claimed reminder stays hidden; a failed or lost delivery fires again after it.</summary>
    public TimeSpan ReminderLease { get; set; } = TimeSpan.FromSeconds(10);

    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>A node whose last heartbeat is older than this is marked dead.</summary>
    public TimeSpan DeadAfter { get; set; } = TimeSpan.FromSeconds(10);

    public SiloOptions UseMemory()
    {
        Provider = StorageProvider.Memory;
        return this;
    }

    public SiloOptions UsePostgreSql(string connectionString)
    {
        Provider = StorageProvider.PostgreSql;
        ConnectionString = connectionString;
        return this;
    }
}
