using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using Orleans.Hosting;
using Orleans.TestingHost;
using QrOrleans.Grains;
using QrOrleans.Grains.Audit;
using QrOrleans.Grains.QrSessions;
using QrOrleans.Silo.Hosting;

namespace QrOrleans.Tests.Infrastructure;

/// <summary>
/// Real Orleans silos in this process (TestingHost's <see cref="InProcessTestCluster"/>) with the system's own
/// embedded providers: grain storage and reminders in the process, memory streams. Grains read "now" from
/// <see cref="Clock"/>, a <see cref="FakeTimeProvider"/> the test moves by hand, unless the harness is started on the
/// real clock (for timers and reminders, which Orleans runs on real time).
/// </summary>
public sealed class SiloHarness : IAsyncDisposable
{
    public static readonly DateTimeOffset Start = new(2026, 11, 22, 12, 0, 0, TimeSpan.Zero);

    private SiloHarness(InProcessTestCluster cluster, FakeTimeProvider? clock)
    {
        Cluster = cluster;
        Clock = clock;
    }

    public InProcessTestCluster Cluster { get; }

    /// <summary>The grains' clock; null when the harness runs on the real clock.</summary>
    public FakeTimeProvider? Clock { get; }

    public IGrainFactory Grains => Cluster.Client;

    public IClusterClient Client => Cluster.Client;

    /// <param name="configure">QR session timings (PublicOrigin is https://qr.example).</param>
    /// <param name="silos">How many silos (2 for anything that crosses silos).</param>
    /// <param name="realClock">Grains use the real clock, so timers and reminders move them.</param>
    /// <param name="services">Further registrations on every silo (e.g. the fleet's).</param>
    /// <param name="silo">Further silo configuration.</param>
    public static async Task<SiloHarness> StartAsync(
        Action<QrSessionOptions>? configure = null, int silos = 1, bool realClock = false,
        Action<IServiceCollection>? services = null, Action<ISiloBuilder>? silo = null, Action<ClusterSettings>? cluster = null)
    {
        var options = new QrSessionOptions { PublicOrigin = "https://qr.example" };
        configure?.Invoke(options);
        var settings = new ClusterSettings
        {
            // Tests may lower Orleans' reminder floor; production keeps 1 minute.
            MinimumReminderPeriod = TimeSpan.FromMilliseconds(100),
            RecoveryReminderPeriod = TimeSpan.FromSeconds(1),
        };
        cluster?.Invoke(settings);
        options.RecoveryPeriod = settings.RecoveryReminderPeriod;
        var clock = realClock ? null : new FakeTimeProvider(Start);
        // One state store and one reminder table for all the silos, as a real cluster's silos share Redis; with one
        // silo, this is the embedded mode as the product runs it.
        var store = new LocalStateStore();
        var reminders = new LocalReminderTable();
        var builder = new InProcessTestClusterBuilder((short)silos);
        builder.ConfigureSilo((_, s) =>
        {
            s.Services.AddSingleton(store);
            s.Services.AddSingleton(reminders);
            s.Services.AddSingleton(options);
            s.Services.AddSingleton(new AuditOptions());
            s.Services.AddSingleton<ActivationCensus>();
            s.Services.AddKeyedSingleton<TimeProvider>(OrleansNames.Clock, clock ?? TimeProvider.System);
            s.Services.AddLogging(l => l.SetMinimumLevel(LogLevel.Warning));
            services?.Invoke(s.Services);
            s.AddQrOrleansProviders(settings);
            silo?.Invoke(s);
        });
        builder.ConfigureClient(c => c.AddMemoryStreams(OrleansNames.Streams, streams => streams.ConfigurePartitioning(OrleansHosting.StreamQueues)).AddOutgoingGrainCallFilter<RetryOnConflict>());
        var testCluster = builder.Build();
        await testCluster.DeployAsync();
        return new SiloHarness(testCluster, clock);
    }

    /// <summary>Creates users with these ids: a claim links its device to the scanning user, who must exist.</summary>
    public async Task AddUsersAsync(params string[] userIds)
    {
        foreach (var id in userIds)
        {
            await Grains.GetGrain<QrOrleans.Users.IUserGrain>(id).CreateAsync(id, id);
        }
    }

    /// <summary>The durable reminders the reminder table holds for one grain.</summary>
    public async Task<IReadOnlyList<string>> RemindersOfAsync(IAddressable grain)
    {
        var table = Cluster.Silos[0].ServiceProvider.GetRequiredService<Orleans.IReminderTable>();
        var rows = await table.ReadRows(grain.GetGrainId());
        return rows.Reminders.Select(r => r.ReminderName).ToArray();
    }

    /// <summary>Delivers a reminder tick to a grain now, as the reminder service does when it is due.</summary>
    public static Task FireReminderAsync(IAddressable grain, string name) =>
        grain.AsReference<IRemindable>().ReceiveReminder(name, new Orleans.Runtime.TickStatus(DateTime.UtcNow, TimeSpan.FromMinutes(1), DateTime.UtcNow));

    /// <summary>Whether the grain's state named <paramref name="stateName"/> is in storage (read past any activation).</summary>
    public async Task<bool> IsStoredAsync<T>(IAddressable grain, string stateName) where T : new()
    {
        var storage = Cluster.Silos[0].ServiceProvider.GetRequiredKeyedService<Orleans.Storage.IGrainStorage>(OrleansNames.Storage);
        var state = new Orleans.GrainState<T>(new T());
        await storage.ReadStateAsync(stateName, grain.GetGrainId(), state);
        return state.RecordExists;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Cluster.StopAllSilosAsync();
        }
        finally
        {
            await Cluster.DisposeAsync();
        }
    }
}
