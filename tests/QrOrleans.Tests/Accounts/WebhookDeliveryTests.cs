using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Accounts;

/// <summary>Owner webhooks arrive in order, at least once, whatever the receiver or the node does meanwhile (on Redis).</summary>
public sealed class WebhookDeliveryTests
{
    private static readonly string[] Linked = ["pairing.qr", "pairing.scanned", "pairing.withdrawn", "account.connected"];

    [Fact]
    public async Task Deliveries_to_a_failing_receiver_arrive_later_in_order_under_the_same_delivery_id()
    {
        var redis = new FleetRedis();
        await using var node = await GatewayNode.StartAsync(Fleet.Settings(redis));
        var fleet = new Fleet(node);
        await using var owner = await WebhookReceiver.StartAsync();
        owner.FailNext(3);

        var id = Fleet.NewId("flaky-owner");
        await fleet.LinkAsync(id, owner);
        var delivered = await owner.WaitForEventAsync("account.connected", seconds: 15);

        Assert.Equal(Linked, delivered.Select(d => d.Event));
        var first = owner.Requests.Take(4).ToArray();
        Assert.Equal([500, 500, 500, 204], first.Select(r => r.Answered));
        Assert.Single(first.Select(r => r.Delivery).Distinct()); // one delivery, retried
        Assert.Equal(first[0].Body, first[3].Body);
        Assert.Equal(4, delivered.Select(d => d.Delivery).Distinct().Count());
        Assert.All(owner.Requests, r => Assert.True(r.SignedWith(Fleet.WebhookSecret)));
        // The retries backed off (0.2 s, 0.4 s, 0.8 s) rather than hammering the receiver.
        Assert.True(first[3].At - first[0].At >= TimeSpan.FromSeconds(1.2), $"retries came after {first[3].At - first[0].At}");
    }

    [Fact]
    public async Task A_pending_delivery_survives_a_node_restart()
    {
        var redis = new FleetRedis();
        await using var owner = await WebhookReceiver.StartAsync();
        owner.FailNext(int.MaxValue);
        var id = Fleet.NewId("restart");

        var node = await GatewayNode.StartAsync(Fleet.Settings(redis));
        try
        {
            await new Fleet(node).LinkAsync(id, owner);
            await owner.WaitForAsync(_ => owner.Requests.Count >= 2, TimeSpan.FromSeconds(10), "a failed attempt or two");
        }
        finally
        {
            await node.DisposeAsync();
        }
        Assert.Empty(owner.Delivered);
        var attempted = owner.Requests[0];
        Assert.Equal("pairing.qr", attempted.Event);

        owner.FailNext(0);
        await using var restarted = await GatewayNode.StartAsync(Fleet.Settings(redis));
        var delivered = await owner.WaitForEventAsync("account.connected", seconds: 20);

        Assert.Equal(Linked, delivered.Select(d => d.Event));
        Assert.Equal(attempted.Delivery, delivered[0].Delivery);
        Assert.Equal(attempted.Body, delivered[0].Body);
        Assert.Equal("connected", await new Fleet(restarted).StateAsync(id));
    }
}
