using QrOrleans.Accounts;
using QrOrleans.Grains.Accounts;

namespace QrOrleans.Tests.Accounts;

/// <summary>The owner's webhooks keep their durable retries across a stop and start of the whole cluster.</summary>
public sealed class OutboxRestartTests
{
    private static readonly string[] Linked = ["pairing.qr", "pairing.scanned", "pairing.withdrawn", "account.connected"];

    private static readonly AccountOptions Options = new()
    {
        HealthInterval = TimeSpan.FromSeconds(1),
        PairingPollWait = TimeSpan.FromMilliseconds(250),
        WebhookRetryBase = TimeSpan.FromMilliseconds(200),
        WebhookRetryMax = TimeSpan.FromSeconds(1),
    };

    [Fact]
    public async Task Deliveries_pending_when_the_cluster_stops_go_out_in_order_under_the_same_ids_after_it_starts_again()
    {
        await using var owner = await WebhookReceiver.StartAsync();
        owner.FailNext(int.MaxValue);
        var id = $"restart-{Guid.NewGuid().ToString("N")[..10]}";
        var settings = new AccountSettings(Platforms.Sandbox, "agent", owner.Url, Fleet.WebhookSecret,
            new RateBudgetConfig(10, 60), new PairingConfig(3, 30), """{"autoConfirm":true}""");

        var first = await FleetCluster.StartAsync(1, Options);
        try
        {
            await first.Account(id).ConfigureAsync(settings);
            await first.Account(id).RequestPairingAsync();
            await owner.WaitForAsync(_ => owner.Requests.Count >= 2, TimeSpan.FromSeconds(10), "a failed attempt or two");
            Assert.Equal(AccountStates.Connected, (await first.Account(id).GetAsync())!.State);
        }
        finally
        {
            await first.DisposeAsync();
        }
        Assert.Empty(owner.Delivered);
        var attempted = owner.Requests[0];
        Assert.Equal("pairing.qr", attempted.Event);

        owner.FailNext(0);
        await using var second = await FleetCluster.StartAsync(1, Options, restartOf: first);
        // Nobody calls the account or its outbox: the restarted cluster finds the queue in storage by itself.
        var delivered = await owner.WaitForEventAsync("account.connected", seconds: 20);

        Assert.Equal(Linked, delivered.Select(d => d.Event));
        Assert.Equal(attempted.Delivery, delivered[0].Delivery);
        Assert.Equal(attempted.Body, delivered[0].Body);
        Assert.All(delivered, d => Assert.True(d.SignedWith(Fleet.WebhookSecret)));
        Assert.Equal(AccountStates.Connected, (await second.Account(id).GetAsync())!.State);
    }
}
