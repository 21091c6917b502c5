using Orleans.Storage;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Orleans.Configuration;
using Orleans.Dashboard;
using Orleans.Hosting;
using Orleans.Runtime.Hosting;
using StackExchange.Redis;

namespace QrOrleans.Silo.Hosting;

/// <summary>
/// Which Orleans providers a node uses, from <c>QrOrleans:Cluster:*</c>. The embedded default is one silo on
/// localhost clustering, with grain storage and reminders in the process and memory streams; <c>Redis</c> is
/// Orleans' own Redis clustering, grain storage and reminders, with memory streams between the silos.
/// </summary>
public static class OrleansHosting
{
    /// <summary>The memory stream provider's queues: the same number on every silo and client.</summary>
    public const int StreamQueues = 4;

    /// <summary>A silo of this system: its clustering, then <see cref="AddQrOrleansProviders"/>.</summary>
    public static ISiloBuilder UseQrOrleansSilo(this ISiloBuilder silo, ClusterSettings cluster)
    {
        silo.Configure<ClusterOptions>(cluster.Apply);
        switch (cluster.Provider)
        {
            case ClusterProvider.Localhost:
                silo.UseLocalhostClustering(cluster.ResolvedSiloPort, cluster.ResolvedGatewayPort, null, cluster.ServiceId, cluster.ClusterId);
                break;
            case ClusterProvider.Redis:
                silo.ConfigureEndpoints(cluster.ResolvedAdvertisedAddress(), cluster.ResolvedSiloPort, cluster.ResolvedGatewayPort, listenOnAnyHostAddress: true);
                silo.UseRedisClustering(o => o.ConfigurationOptions = ConfigurationOptions.Parse(cluster.RequireRedis()));
                silo.Configure<ClusterMembershipOptions>(FastEviction);
                break;
        }
        return silo.AddQrOrleansProviders(cluster);
    }

    /// <summary>
    /// Everything but clustering: grain storage, reminders, streams and the dashboard's silo side (a write conflict is retried at the gateway's edge, ConflictRetry).
    /// Orleans' TestingHost brings its own clustering and calls only this.
    /// </summary>
    public static ISiloBuilder AddQrOrleansProviders(this ISiloBuilder silo, ClusterSettings cluster)
    {
        var serializer = GrainStateJson.Serializer;
        switch (cluster.Provider)
        {
            case ClusterProvider.Localhost:
                // In this process, with no storage hop: Orleans' memory providers make every read, write and reminder
                // operation a grain call (they are what Orleans documents for tests and development).
                silo.AddLocalGrainStorage(OrleansNames.Storage, serializer);
                // Orleans' own PubSub state is not System.Text.Json-friendly (dotnet/orleans#8588): Orleans' serializer for it.
                silo.AddLocalGrainStorage("PubSubStore", sp => new OrleansGrainStorageSerializer(sp.GetRequiredService<Orleans.Serialization.Serializer>()));
                silo.UseLocalReminderTable();
                break;
            case ClusterProvider.Redis:
                var redis = ConfigurationOptions.Parse(cluster.RequireRedis());
                silo.AddRedisGrainStorage(OrleansNames.Storage, o =>
                {
                    o.ConfigurationOptions = redis.Clone();
                    o.GrainStorageSerializer = serializer;
                    o.DeleteStateOnClear = true;
                });
                silo.Services.AddRedisGrainStorage("PubSubStore", ob => ob.Configure<Orleans.Serialization.Serializer>((o, s) =>
                {
                    o.ConfigurationOptions = redis.Clone();
                    o.GrainStorageSerializer = new OrleansGrainStorageSerializer(s);
                    o.DeleteStateOnClear = true;
                }));
                silo.UseRedisReminderService(o => o.ConfigurationOptions = redis.Clone());
                break;
        }
        // Linked-account changes (the dashboard, the fleet's watch); QR session changes go to grain observers instead,
        // one direct message each, without a queue to poll.
        silo.AddMemoryStreams(OrleansNames.Streams, streams =>
        {
            streams.ConfigurePartitioning(StreamQueues);
            streams.ConfigurePullingAgent(o => o.Configure(a => a.GetQueueMsgsTimerPeriod = cluster.StreamPollPeriod));
        });
        silo.Configure<ReminderOptions>(o => o.MinimumReminderPeriod = cluster.MinimumReminderPeriod);
        silo.Configure<GrainCollectionOptions>(o =>
        {
            o.CollectionAge = cluster.CollectionAge;
            o.CollectionQuantum = cluster.CollectionQuantum;
        });
        // Grain calls continue the caller's trace (spans of the "Microsoft.Orleans.*" sources, where someone listens).
        silo.AddActivityPropagation();
        if (cluster.OrleansDashboard)
        {
            silo.AddDashboard(DashboardSampling);
        }
        silo.Services.TryAddSingleton(cluster);
        silo.Services.TryAddKeyedSingleton(OrleansNames.Clock, TimeProvider.System);
        return silo;
    }

    /// <summary>
    /// A named grain storage provider in this process (<see cref="LocalGrainStorage"/>), registered as Orleans'
    /// providers are: a keyed <see cref="IGrainStorage"/> under <paramref name="name"/>.
    /// </summary>
    public static ISiloBuilder AddLocalGrainStorage(this ISiloBuilder silo, string name, IGrainStorageSerializer serializer) =>
        silo.AddLocalGrainStorage(name, _ => serializer);

    /// <param name="serializer">The provider's serializer, from the silo's services (e.g. Orleans' own serializer).</param>
    public static ISiloBuilder AddLocalGrainStorage(this ISiloBuilder silo, string name, Func<IServiceProvider, IGrainStorageSerializer> serializer)
    {
        silo.Services.TryAddSingleton<LocalStateStore>();
        silo.Services.AddGrainStorage(name, (sp, key) => new LocalGrainStorage(
            key, serializer(sp), sp.GetRequiredService<LocalStateStore>(), sp.GetRequiredService<Orleans.Serialization.Serializers.IActivatorProvider>()));
        return silo;
    }

    /// <summary>
    /// Orleans' reminder service on a reminder table in this process (<see cref="LocalReminderTable"/>), registered
    /// as Orleans' reminder providers register theirs.
    /// </summary>
    public static ISiloBuilder UseLocalReminderTable(this ISiloBuilder silo)
    {
        silo.AddReminders();
        silo.Services.TryAddSingleton<LocalReminderTable>();
        silo.Services.AddSingleton<Orleans.IReminderTable>(sp => sp.GetRequiredService<LocalReminderTable>());
        return silo;
    }

    public static IClientBuilder UseQrOrleansClient(this IClientBuilder client, ClusterSettings cluster)
    {
        client.Configure<ClusterOptions>(cluster.Apply);
        switch (cluster.Provider)
        {
            case ClusterProvider.Localhost:
                client.UseLocalhostClustering(cluster.ResolvedGatewayPort, cluster.ServiceId, cluster.ClusterId);
                break;
            case ClusterProvider.Redis:
                var redis = ConfigurationOptions.Parse(cluster.RequireRedis());
                client.UseRedisClustering(o => o.ConfigurationOptions = redis);
                client.Configure<GatewayOptions>(o => o.GatewayListRefreshPeriod = TimeSpan.FromSeconds(2));
                break;
        }
        // As many queues as the silos read: an event a client published to a queue no silo reads would be lost.
        client.AddMemoryStreams(OrleansNames.Streams, streams => streams.ConfigurePartitioning(StreamQueues));
        client.AddActivityPropagation();
        if (cluster.OrleansDashboard)
        {
            client.AddDashboard(DashboardSampling);
        }
        client.Services.TryAddSingleton(cluster);
        return client;
    }

    /// <summary>
    /// The Orleans dashboard samples Orleans' instruments with a metrics reader of its own; each sample walks every
    /// activation and directory entry, so its cost grows with the activations a busy silo holds. Every 5 s, not every
    /// second: its charts are an operator's, and our own dashboard counts ceremonies from our own meter.
    /// </summary>
    private static void DashboardSampling(DashboardOptions o) => o.CounterUpdateIntervalMs = 5000;

    /// <summary>
    /// A silo killed with kill -9 is evicted within about 3 s (Orleans' defaults take 10–14 s): its peers probe it
    /// every second, two missed probes suspect it, and one vote suffices, since a refused connection on loopback or a
    /// LAN is a fast, reliable signal; the table is re-read every 2 s so every silo learns of the eviction promptly.
    /// </summary>
    private static void FastEviction(ClusterMembershipOptions o)
    {
        o.ProbeTimeout = TimeSpan.FromSeconds(1);
        o.NumMissedProbesLimit = 2;
        o.NumVotesForDeathDeclaration = 1;
        o.TableRefreshTimeout = TimeSpan.FromSeconds(2);
        o.IAmAliveTablePublishTimeout = TimeSpan.FromSeconds(5);
        o.DeathVoteExpirationTimeout = TimeSpan.FromSeconds(30);
    }
}
