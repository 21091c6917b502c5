using System.Net;
using System.Net.Sockets;

namespace QrOrleans.Silo.Hosting;

public enum ClusterProvider
{
    /// <summary>One silo, in-memory storage, reminders and streams: no external server.</summary>
    Localhost,

    /// <summary>Orleans clustering, grain storage and reminders on Redis.</summary>
    Redis,
}

public enum ClusterRole
{
    /// <summary>This process is a silo and the gateway.</summary>
    Cohosted,

    /// <summary>The gateway is an Orleans client of a cluster of <c>src/Silo</c> hosts.</summary>
    Client,
}

/// <summary>The configuration section <c>QrOrleans:Cluster</c> (API.md lists the keys).</summary>
public sealed class ClusterSettings
{
    public ClusterProvider Provider { get; set; } = ClusterProvider.Localhost;

    /// <summary>A StackExchange.Redis configuration string, e.g. <c>127.0.0.1:6379,password=…</c>.</summary>
    public string? Redis { get; set; }

    public ClusterRole Role { get; set; } = ClusterRole.Cohosted;

    public string ClusterId { get; set; } = "qrorleans";

    public string ServiceId { get; set; } = "qrorleans";

    /// <summary>0 = the provider's default (Redis: 11111; Localhost: a free port picked at start).</summary>
    public int SiloPort { get; set; }

    /// <summary>0 = the provider's default (Redis: 30000; Localhost: a free port picked at start).</summary>
    public int GatewayPort { get; set; }

    public string AdvertisedAddress { get; set; } = "127.0.0.1";

    /// <summary>Orleans' floor for reminder periods. Production keeps Orleans' 1 minute; tests may lower it.</summary>
    public TimeSpan MinimumReminderPeriod { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// The period of the durable reminder that brings a live session (or an account) back after its silo died.
    /// Never below <see cref="MinimumReminderPeriod"/>.
    /// </summary>
    public TimeSpan RecoveryReminderPeriod { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>How long an idle activation stays in memory (Orleans' default is 15 minutes).</summary>
    public TimeSpan CollectionAge { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>
    /// How often Orleans' collector looks for idle activations (Orleans' default: 1 minute; it must stay below
    /// <see cref="CollectionAge"/>). A finished QR session is deleted when it is collected.
    /// </summary>
    public TimeSpan CollectionQuantum { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// How often each silo polls the memory stream queues (linked-account changes): the longest such an event waits.
    /// QR session changes do not travel on streams.
    /// </summary>
    public TimeSpan StreamPollPeriod { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>
    /// Whether Orleans' dashboard runs at /dashboard/orleans/. Its metrics reader collects every Orleans instrument
    /// each second (it has no setting for that), which costs a busy node several per cent of its CPU.
    /// </summary>
    public bool OrleansDashboard { get; set; } = true;

    public int ResolvedSiloPort => SiloPort != 0 ? SiloPort : Provider == ClusterProvider.Redis ? 11111 : _freeSiloPort ??= FreePort();

    public int ResolvedGatewayPort => GatewayPort != 0 ? GatewayPort : Provider == ClusterProvider.Redis ? 30000 : _freeGatewayPort ??= FreePort();

    private int? _freeSiloPort;
    private int? _freeGatewayPort;

    /// <summary>The cluster's identity, the same for its silos and its clients.</summary>
    public void Apply(Orleans.Configuration.ClusterOptions options)
    {
        options.ClusterId = ClusterId;
        options.ServiceId = ServiceId;
    }

    public string RequireRedis() => string.IsNullOrWhiteSpace(Redis)
        ? throw new InvalidOperationException("QrOrleans:Cluster:Redis (a StackExchange.Redis configuration string) is required when QrOrleans:Cluster:Provider is Redis.")
        : Redis;

    public IPAddress ResolvedAdvertisedAddress() =>
        IPAddress.TryParse(AdvertisedAddress, out var ip) ? ip : Dns.GetHostAddresses(AdvertisedAddress).First(a => a.AddressFamily == AddressFamily.InterNetwork);

    // Several embedded nodes on one machine each get their own ports (each is a one-silo cluster of its own).
    private static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }
}
