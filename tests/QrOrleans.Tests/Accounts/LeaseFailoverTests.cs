using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using QrOrleans.Accounts;
using QrOrleans.Grains.Connectors.Sandbox;
using QrOrleans.Runtime;
using QrOrleans.Silo.Accounts;
using QrOrleans.Silo.Runtime;
using QrOrleans.Tests.Cluster;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Accounts;

/// <summary>Two nodes on one PostgreSQL database: exactly one runs an account's live side, and the other takes over.</summary>
public sealed class LeaseFailoverTests
{
    private static readonly TimeSpan LeaseTime = TimeSpan.FromSeconds(2);

    [Fact]
    public async Task When_the_holder_dies_the_other_node_takes_over_within_the_lease_time_and_fences_the_old_epoch()
    {
        await using var db = await PostgresDatabase.CreateAsync(maxPoolSize: 10);
        await using var owner = await WebhookReceiver.StartAsync();
        var nodes = new[] { await GatewayNode.StartAsync(Fleet.Settings(db.ConnectionString)), await GatewayNode.StartAsync(Fleet.Settings(db.ConnectionString)) };
        try
        {
            var id = Fleet.NewId("failover");
            await new Fleet(nodes[0]).LinkAsync(id, owner);
            var (holder, survivor) = await HolderAsync(nodes, id);
            var before = await LeaseAsync(survivor, id);
            Assert.Equal(SiloId(holder), before.Holder);
            Assert.Single(nodes, n => n.Services.GetRequiredService<AccountHost>().HeldAccounts.Contains(id));

            // The holder's account host dies without a word: its lease is not released, only no longer renewed.
            await holder.Services.GetRequiredService<AccountHost>().StopAsync(new CancellationToken(canceled: true));
            var clock = Stopwatch.StartNew();
            var fleet = new Fleet(survivor);
            while (HolderOf((await fleet.GetAsync(id)).Body) != SiloId(survivor))
            {
                Assert.True(clock.Elapsed < LeaseTime * 3, $"no takeover after {clock.Elapsed}");
                await Task.Delay(50);
            }
            var takeover = clock.Elapsed;
            Assert.True(takeover <= LeaseTime + LeaseTime / 3 + TimeSpan.FromSeconds(0.5), $"takeover took {takeover}");

            var after = await LeaseAsync(survivor, id);
            Assert.Equal(SiloId(survivor), after.Holder);
            Assert.True(after.Epoch > before.Epoch);
            // The account keeps working: the new holder checks its session, and it sends.
            var checks = SandboxPlatform.Shared.Calls(id).Count(c => c.Kind == "health");
            await WaitUntilAsync(() => SandboxPlatform.Shared.Calls(id).Count(c => c.Kind == "health") > checks, "a health check by the new holder");
            (await fleet.SendAsync(id)).EnsureStatus(202);
            Assert.Equal("connected", await fleet.StateAsync(id));

            // A write still carrying the dead holder's epoch is refused.
            var grain = survivor.Services.GetRequiredService<IGrainFactory>().GetGrain<ILinkedAccountGrain>(id);
            var view = (await grain.GetHostViewAsync(CancellationToken.None))!;
            Assert.Equal(after.Epoch, view.Epoch);
            var stale = await Assert.ThrowsAsync<GrainException>(() =>
                grain.HealthFailedAsync(new LeaseToken(before.Holder!, before.Epoch), view.CredentialGeneration,
                    new PlatformFailure(ErrorClass.Auth, "late", "a late report from the old holder"), CancellationToken.None));
            Assert.Equal(("stale_epoch", 409), (stale.Code, stale.Status));
            Assert.Equal("connected", await fleet.StateAsync(id));
            Assert.Equal(["pairing.qr", "pairing.scanned", "pairing.withdrawn", "account.connected"],
                (await owner.WaitForEventAsync("account.connected")).Select(d => d.Event));
        }
        finally
        {
            foreach (var node in nodes)
            {
                await node.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task A_node_that_stops_cleanly_hands_its_accounts_over_at_once()
    {
        await using var db = await PostgresDatabase.CreateAsync(maxPoolSize: 10);
        await using var owner = await WebhookReceiver.StartAsync();
        var nodes = new[] { await GatewayNode.StartAsync(Fleet.Settings(db.ConnectionString)), await GatewayNode.StartAsync(Fleet.Settings(db.ConnectionString)) };
        var disposed = new HashSet<GatewayNode>();
        try
        {
            var id = Fleet.NewId("handover");
            await new Fleet(nodes[1]).LinkAsync(id, owner);
            var (holder, survivor) = await HolderAsync(nodes, id);

            var holderId = SiloId(holder);
            await holder.DisposeAsync();
            disposed.Add(holder);
            // Released on the way out, not left to expire: free for the survivor's next tick.
            Assert.NotEqual(holderId, (await LeaseAsync(survivor, id)).Holder);
            var fleet = new Fleet(survivor);
            await WaitUntilAsync(async () => HolderOf((await fleet.GetAsync(id)).Body) == SiloId(survivor), "the handover");
            (await fleet.SendAsync(id)).EnsureStatus(202);
        }
        finally
        {
            foreach (var node in nodes.Where(n => !disposed.Contains(n)))
            {
                await node.DisposeAsync();
            }
        }
    }

    /// <summary>The account's holder; absent between a release and the next holder's arrival.</summary>
    private static string? HolderOf(System.Text.Json.JsonElement account) =>
        account.TryGetProperty("holder", out var holder) ? holder.GetString() : null;

    private static string SiloId(GatewayNode node) => node.Services.GetRequiredService<SiloIdentity>().Id;

    private static async Task<(GatewayNode Holder, GatewayNode Other)> HolderAsync(GatewayNode[] nodes, string id)
    {
        string? holder = null;
        await WaitUntilAsync(async () =>
            (holder = HolderOf((await new Fleet(nodes[0]).GetAsync(id)).Body)) is not null, "a holder");
        var holding = nodes.Single(n => SiloId(n) == holder);
        return (holding, nodes.Single(n => n != holding));
    }

    private static async Task<LeaseRecord> LeaseAsync(GatewayNode node, string id) =>
        (await node.Services.GetRequiredService<ILeaseTable>().ListAsync(AccountGrainTypes.Account, CancellationToken.None)).Single(l => l.Key == id);

    private static Task WaitUntilAsync(Func<bool> condition, string what) => WaitUntilAsync(() => Task.FromResult(condition()), what);

    private static async Task WaitUntilAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(10);
        while (!await condition())
        {
            if (DateTimeOffset.UtcNow > deadline)
            {
                throw new Xunit.Sdk.XunitException($"Timed out waiting for {what}.");
            }
            await Task.Delay(50);
        }
    }
}
