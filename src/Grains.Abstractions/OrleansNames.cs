namespace QrOrleans;

/// <summary>Names shared by the grains, the silo configuration and the gateway.</summary>
public static class OrleansNames
{
    /// <summary>The grain storage every grain state uses (in the process or Redis, per QrOrleans:Cluster:Provider).</summary>
    public const string Storage = "qrorleans";

    /// <summary>The memory stream provider that carries linked-account changes across the cluster.</summary>
    public const string Streams = "qrorleans-streams";

    /// <summary>The keyed <see cref="TimeProvider"/> grains read "now" from (tests put a fake one here; Orleans' own timers keep the real clock).</summary>
    public const string Clock = "qrorleans-clock";
}
