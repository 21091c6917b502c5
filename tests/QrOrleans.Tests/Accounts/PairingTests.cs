using QrOrleans.Grains.Connectors.Sandbox;
using QrOrleans.Tests.Infrastructure;
using QrOrleans.Tests.QrImages;

namespace QrOrleans.Tests.Accounts;

/// <summary>One node on the embedded default with the fleet's short test timings.</summary>
public sealed class FleetNodeFixture : IAsyncLifetime
{
    public Fleet Fleet { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Fleet = new Fleet(await GatewayNode.StartAsync(Fleet.Settings()));

    public ValueTask DisposeAsync() => Fleet.Node.DisposeAsync();
}

/// <summary>The pairing ceremony as the account's owner sees it: QR codes relayed to their webhook, then an outcome.</summary>
public sealed class PairingTests(FleetNodeFixture fixture) : IClassFixture<FleetNodeFixture>
{
    private Fleet Fleet => fixture.Fleet;

    [Fact]
    public async Task The_refresh_loop_is_bounded_max_cycles_codes_then_one_timeout_then_silence()
    {
        await using var owner = await WebhookReceiver.StartAsync();
        var id = Fleet.NewId("support-bot");
        await Fleet.CreateAsync(id, owner, new { autoConfirm = false }, maxCycles: 3, qrTtlSeconds: 1, displayName: "support-bot");

        (await Fleet.PairAsync(id)).EnsureStatus(202);
        var delivered = await owner.WaitForEventAsync("pairing.timed_out", seconds: 20);

        Assert.Equal(["pairing.qr", "pairing.qr", "pairing.qr", "pairing.timed_out"], delivered.Select(d => d.Event));
        Assert.Equal(4, delivered.Select(d => d.Delivery).Distinct().Count());
        Assert.All(delivered, d => Assert.True(d.SignedWith(Fleet.WebhookSecret), $"{d.Event} is not signed with the owner's secret"));
        for (var cycle = 1; cycle <= 3; cycle++)
        {
            var qr = delivered[cycle - 1].Json;
            Assert.Equal(id, qr.GetProperty("accountId").GetString());
            Assert.Equal(cycle, qr.GetProperty("cycle").GetInt32());
            Assert.Equal(3, qr.GetProperty("maxCycles").GetInt32());
            Assert.Equal($"Scan within 1 s to link support-bot to Sandbox — code {cycle} of 3", qr.GetProperty("caption").GetString());
            Assert.True(qr.GetProperty("expiresAt").GetDateTimeOffset() > qr.GetProperty("at").GetDateTimeOffset());
            var png = Convert.FromBase64String(qr.GetProperty("qrPngBase64").GetString()!);
            Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
            Assert.Equal(qr.GetProperty("qrUrl").GetString(), await QrDecoder.DecodePngAsync(png));
        }
        var timedOut = delivered[3].Json;
        Assert.Equal(3, timedOut.GetProperty("cycle").GetInt32());
        Assert.Contains($"POST /v1/accounts/{id}/pair", timedOut.GetProperty("action").GetString(), StringComparison.Ordinal);

        // Nothing more until someone asks again: no fourth code, no second timeout, no platform calls.
        var calls = SandboxPlatform.Shared.Calls(id).Count;
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.Equal(4, owner.Requests.Count);
        Assert.Equal(calls, SandboxPlatform.Shared.Calls(id).Count);
        Assert.Equal(3, SandboxPlatform.Shared.Calls(id).Count(c => c.Kind == "begin_pairing"));
        var account = (await Fleet.GetAsync(id)).EnsureStatus(200).Body;
        Assert.Equal("pairing_timed_out", account.GetProperty("state").GetString());
        Assert.Equal(3, account.GetProperty("pairing").GetProperty("cycle").GetInt32());

        // Asking again starts a new ceremony from code 1.
        (await Fleet.PairAsync(id)).EnsureStatus(202);
        var again = await owner.WaitForEventAsync("pairing.qr", count: 4);
        Assert.Equal(1, again.Last(d => d.Event == "pairing.qr").Json.GetProperty("cycle").GetInt32());
        (await Fleet.DeleteAsync(id)).EnsureStatus(204);
    }

    [Fact]
    public async Task Auto_confirm_links_the_account_withdraws_the_code_and_it_sends()
    {
        await using var owner = await WebhookReceiver.StartAsync();
        var id = Fleet.NewId("agent");
        await Fleet.CreateAsync(id, owner, new { autoConfirm = true, numberMatch = "37" });

        (await Fleet.PairAsync(id)).EnsureStatus(202);
        var delivered = await owner.WaitForEventAsync("account.connected");

        Assert.Equal(["pairing.qr", "pairing.scanned", "pairing.withdrawn", "account.connected"], delivered.Select(d => d.Event));
        Assert.Equal("37", delivered[1].Json.GetProperty("numberMatch").GetString());
        Assert.All(delivered, d => Assert.True(d.SignedWith(Fleet.WebhookSecret)));
        var account = await Fleet.WaitForStateAsync(id, "connected");
        Assert.True(account.TryGetProperty("linkedAt", out _));
        Assert.False(string.IsNullOrEmpty(account.GetProperty("holder").GetString()));

        var sent = await Fleet.SendAsync(id, "hi from the agent", "wxid_alice");
        sent.EnsureStatus(202);
        Assert.Equal(id, sent.Body.GetProperty("accountId").GetString());
        Assert.Contains(SandboxPlatform.Shared.Sent(id), m => m is { To: "wxid_alice", Text: "hi from the agent" });
    }
}
