using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;
using Orleans.Storage;
using Orleans.Streams;
using QrOrleans.Grains.QrSessions;
using QrOrleans.QrSessions;
using QrOrleans.Silo.Hosting;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Hosting;

/// <summary>
/// The embedded mode's providers on a real silo (TestingHost, one silo, as the product runs it): grain state, stream
/// pub-sub state and reminders live in the process, a sign-in calls no storage grain, and Orleans' reminder service
/// still ticks from the table and still enforces its floor.
/// </summary>
public sealed class EmbeddedProvidersOnOrleansTests
{
    private static readonly Requester Desktop = new("d", "browser", "b", "o", "1.1.1.1", DateTimeOffset.UnixEpoch);

    private static async Task<string[]> ActivationTypesAsync(SiloHarness silo) =>
        (await silo.Grains.GetGrain<IManagementGrain>(0).GetSimpleGrainStatistics()).Select(s => s.GrainType).ToArray();

    private static async Task Until(Func<Task<bool>> condition, TimeSpan within, string what)
    {
        var deadline = DateTime.UtcNow + within;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task A_sign_in_on_the_embedded_providers_activates_no_storage_grain_and_no_reminder_table_grain()
    {
        await using var silo = await SiloHarness.StartAsync(realClock: true);
        var services = silo.Cluster.Silos[0].ServiceProvider;
        Assert.IsType<LocalGrainStorage>(services.GetRequiredKeyedService<IGrainStorage>(OrleansNames.Storage));
        Assert.IsType<LocalGrainStorage>(services.GetRequiredKeyedService<IGrainStorage>("PubSubStore"));
        Assert.IsType<LocalReminderTable>(services.GetRequiredService<Orleans.IReminderTable>());

        var grain = silo.Grains.GetGrain<IQrSessionGrain>(Grains.Secrets.NewToken(16));
        var created = await grain.CreateAsync(Desktop);
        await grain.ScanAsync(created.Snapshot.Qr!.Url.Split('.')[^1], "alice", "1.1.1.2");
        await grain.ApproveAsync("alice", (await grain.GetSnapshotAsync(created.DesktopToken)).NumberMatch!);

        var stored = new Orleans.GrainState<QrSessionState>();
        await services.GetRequiredKeyedService<IGrainStorage>(OrleansNames.Storage).ReadStateAsync("session", grain.GetGrainId(), stored);
        Assert.Equal(QrSessionStates.Approved, stored.State?.State);
        Assert.Equal(["recovery"], await silo.RemindersOfAsync(grain));
        var types = await ActivationTypesAsync(silo);
        Assert.Contains(types, t => t.Contains("QrSessionGrain", StringComparison.Ordinal));
        Assert.DoesNotContain(types, t => t.Contains("MemoryStorageGrain", StringComparison.Ordinal) || t.Contains("ReminderTableGrain", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Stream_pub_sub_state_is_kept_by_the_embedded_storage_and_read_back_by_a_fresh_rendezvous_activation()
    {
        await using var silo = await SiloHarness.StartAsync(realClock: true);
        var id = StreamId.Create("hosting-tests", Guid.NewGuid().ToString("N"));
        var stream = silo.Client.GetStreamProvider(OrleansNames.Streams).GetStream<string>(id);
        // Published on the silo, as grains publish: the harness's client spreads streams over Orleans' default 8
        // queues where the silo reads 4, so an event it published could land on a queue no silo reads.
        var publisher = silo.Cluster.Silos[0].ServiceProvider.GetRequiredService<IClusterClient>()
            .GetStreamProvider(OrleansNames.Streams).GetStream<string>(id);
        var seen = new ConcurrentQueue<string>();
        var handle = await stream.SubscribeAsync((e, _) =>
        {
            seen.Enqueue(e);
            return Task.CompletedTask;
        });
        await publisher.OnNextAsync("first");
        await Until(() => Task.FromResult(seen.Contains("first")), TimeSpan.FromSeconds(10), "the first event");

        static bool Rendezvous(string type) => type.Contains("PubSubRendezvous", StringComparison.OrdinalIgnoreCase);
        Assert.Contains(await ActivationTypesAsync(silo), Rendezvous);
        await silo.Grains.GetGrain<IManagementGrain>(0).ForceActivationCollection(TimeSpan.Zero);
        await Until(async () => !(await ActivationTypesAsync(silo)).Any(Rendezvous), TimeSpan.FromSeconds(10), "the rendezvous activation to go");

        // The new rendezvous activation knows of the subscription only from the state the embedded storage kept.
        var handles = await stream.GetAllSubscriptionHandles();
        Assert.Equal([handle.HandleId], handles.Select(h => h.HandleId));
        await publisher.OnNextAsync("second");
        await Until(() => Task.FromResult(seen.Contains("second")), TimeSpan.FromSeconds(10), "the second event");
        await handle.UnsubscribeAsync();
        Assert.Empty(await stream.GetAllSubscriptionHandles());
    }

    [Fact]
    public async Task On_one_silo_a_reminder_from_the_embedded_table_ticks_and_expires_a_session_whose_activation_is_gone()
    {
        await using var silo = await SiloHarness.StartAsync(o =>
        {
            o.QrTtl = TimeSpan.FromMilliseconds(300);
            o.MaxRotations = 1;
        }, realClock: true);
        var grain = silo.Grains.GetGrain<IQrSessionGrain>(Grains.Secrets.NewToken(16));
        var created = await grain.CreateAsync(Desktop);
        Assert.Equal(["recovery"], await silo.RemindersOfAsync(grain));
        await silo.Cluster.DeactivateAsync(grain);

        // Read from storage, not through the grain (a call would catch up by itself): the reminder alone expires it.
        var storage = silo.Cluster.Silos[0].ServiceProvider.GetRequiredKeyedService<IGrainStorage>(OrleansNames.Storage);
        var stored = new Orleans.GrainState<QrSessionState>();
        await Until(async () =>
        {
            await storage.ReadStateAsync("session", grain.GetGrainId(), stored);
            return stored.State?.State == QrSessionStates.Expired;
        }, TimeSpan.FromSeconds(10), "the reminder to expire it");
        Assert.Equal(QrSessionStates.Expired, (await grain.GetSnapshotAsync(created.DesktopToken)).State);
    }

    [Fact]
    public async Task The_reminder_service_still_refuses_a_period_under_the_configured_floor()
    {
        // The harness's recovery reminder period is 1 s; the floor here is production's 1 minute.
        await using var silo = await SiloHarness.StartAsync(cluster: c => c.MinimumReminderPeriod = TimeSpan.FromMinutes(1));
        var grain = silo.Grains.GetGrain<IQrSessionGrain>(Grains.Secrets.NewToken(16));

        var refused = await Assert.ThrowsAnyAsync<ArgumentException>(() => grain.CreateAsync(Desktop));

        Assert.Contains("minimum allowed reminder period", refused.Message, StringComparison.Ordinal);
        Assert.Empty(await silo.RemindersOfAsync(grain));
    }
}
