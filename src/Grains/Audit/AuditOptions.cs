namespace QrOrleans.Grains.Audit;

/// <summary>How long and how much of a user's audit trail is kept (configuration section QrOrleans:Audit).</summary>
public sealed class AuditOptions
{
    /// <summary>Entries older than this are dropped on the next append and by the daily trim.</summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromDays(30);

    /// <summary>At most this many entries per user (the newest are kept): one grain row stays small.</summary>
    public int MaxEntries { get; set; } = 200;

    /// <summary>How often the trim reminder runs for a user with entries.</summary>
    public TimeSpan TrimInterval { get; set; } = TimeSpan.FromDays(1);
}
