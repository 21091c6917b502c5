using QrOrleans.Tests.Infrastructure;
using QrOrleans.Tests.QrImages;

namespace QrOrleans.Tests.Accounts;

/// <summary>
/// The whole agent-fleet loop on this server's own QR login, as an operator and an owner live it: the account
/// pairs, the owner's webhook gets a signed code whose image decodes to a live sign-in code, the owner's phone
/// approves it, the agent is connected; the owner signs the agent's device out and is told once.
/// </summary>
public sealed class QrOrleansFleetLoopTests
{
    [Fact]
    public async Task An_agent_pairs_through_the_owners_phone_and_a_revoked_device_becomes_bad_credentials_once()
    {
        await using var node = await GatewayNode.StartAsync(Fleet.Settings());
        var fleet = new Fleet(node);
        await using var owner = await WebhookReceiver.StartAsync();
        var phone = await fleet.Api.NewPhoneAsync();
        var id = Fleet.NewId("agent");

        (await fleet.PutAsync(id, new
        {
            platform = "qrorleans",
            displayName = "support-bot",
            owner = new { webhookUrl = owner.Url, webhookSecret = Fleet.WebhookSecret },
            rateBudget = new { capacity = 10, refillPerMinute = 60 },
            pairing = new { maxCycles = 3, qrTtlSeconds = 30 },
            connector = new { serverUrl = node.BaseAddress.ToString() },
        })).EnsureStatus(201);
        (await fleet.PairAsync(id)).EnsureStatus(202);

        // The owner receives a signed code; its image is what the phone's camera reads.
        var qr = (await owner.WaitForEventAsync("pairing.qr")).First(r => r.Event == "pairing.qr");
        Assert.True(qr.SignedWith(Fleet.WebhookSecret));
        Assert.Contains("support-bot", qr.Json.GetProperty("caption").GetString(), StringComparison.Ordinal);
        var scanned = await QrDecoder.DecodePngAsync(Convert.FromBase64String(qr.Json.GetProperty("qrPngBase64").GetString()!));
        Assert.Equal(qr.Json.GetProperty("qrUrl").GetString(), scanned);
        Assert.StartsWith(node.BaseAddress + "l/#", scanned, StringComparison.Ordinal);

        (await fleet.Api.ScanAsync(phone.AccessToken, scanned)).EnsureStatus(200);
        var number = (await owner.WaitForEventAsync("pairing.scanned")).First(r => r.Event == "pairing.scanned").Json.GetProperty("numberMatch").GetString()!;
        (await fleet.Api.ApproveAsync(phone.AccessToken, ExtractSessionId(scanned), number)).EnsureStatus(200);

        await fleet.WaitForStateAsync(id, "connected", seconds: 15);
        await owner.WaitForEventAsync("account.connected");
        var devices = (await fleet.Api.SendAsync(HttpMethod.Get, "/v1/devices", null, phone.AccessToken)).EnsureStatus(200);
        var agent = devices.Body.EnumerateArray().Single(d => d.GetProperty("kind").GetString() == "agent");

        // The owner signs the agent out on the phone; the next health check finds out.
        (await fleet.Api.SendAsync(HttpMethod.Delete, "/v1/devices/" + agent.GetProperty("id").GetString(), null, phone.AccessToken)).EnsureStatus(204);
        var account = await fleet.WaitForStateAsync(id, "bad_credentials", seconds: 15);
        Assert.Equal("auth", account.GetProperty("lastError").GetProperty("class").GetString());
        await owner.WaitForEventAsync("account.bad_credentials");
        await Task.Delay(TimeSpan.FromSeconds(3)); // several health intervals: the owner is told once, not on every check
        Assert.Single(owner.DeliveredEvents, e => e == "account.bad_credentials");
        Assert.Equal((409, "not_connected"), (await fleet.SendAsync(id)).Of()); // nothing is sent until someone re-pairs
    }

    private static string ExtractSessionId(string url) => url[(url.LastIndexOf('#') + 1)..].Split('.')[0];
}
