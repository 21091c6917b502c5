using System.Globalization;
using QrOrleans.Grains.Connectors.Sandbox;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Accounts;

/// <summary>What each class of platform failure does to an account, to its sends, and to its owner's inbox.</summary>
public sealed class PlatformErrorTests(FleetNodeFixture fixture) : IClassFixture<FleetNodeFixture>
{
    private static readonly string[] Linked = ["pairing.qr", "pairing.scanned", "pairing.withdrawn", "account.connected"];

    private Fleet Fleet => fixture.Fleet;

    [Fact]
    public async Task Revoked_credentials_found_by_a_health_check_mean_bad_credentials_and_one_owner_notice()
    {
        await using var owner = await WebhookReceiver.StartAsync();
        var id = Fleet.NewId("auth");
        await Fleet.LinkAsync(id, owner);

        SandboxPlatform.Shared.Script(id, "auth"); // the next health check meets a signed-out session
        var account = await Fleet.WaitForStateAsync(id, "bad_credentials");
        var calls = SandboxPlatform.Shared.Calls(id).Count;

        Assert.Equal("auth", account.GetProperty("lastError").GetProperty("class").GetString());
        Assert.Equal("session_revoked", account.GetProperty("lastError").GetProperty("code").GetString());
        var notice = (await owner.WaitForEventAsync("account.bad_credentials")).Single(d => d.Event == "account.bad_credentials");
        Assert.Equal($"re-pair with POST /v1/accounts/{id}/pair", notice.Json.GetProperty("action").GetString());
        Assert.True(notice.SignedWith(Fleet.WebhookSecret));
        Assert.Equal((409, "not_connected"), (await Fleet.SendAsync(id)).Of());

        await Task.Delay(TimeSpan.FromSeconds(2.5)); // several health intervals: no second notice, no more checks
        Assert.Equal([.. Linked, "account.bad_credentials"], owner.DeliveredEvents);
        Assert.Equal(calls, SandboxPlatform.Shared.Calls(id).Count);
    }

    [Fact]
    public async Task A_cool_down_blocks_sends_and_platform_calls_until_it_ends()
    {
        await using var owner = await WebhookReceiver.StartAsync();
        var id = Fleet.NewId("cool");
        await Fleet.LinkAsync(id, owner, new { autoConfirm = true, failWith = "cooldown", cooldownSeconds = 3 });

        var account = await Fleet.WaitForStateAsync(id, "cooling_down");
        var until = account.GetProperty("cooldownUntil").GetDateTimeOffset();
        Assert.Equal("cooldown", account.GetProperty("lastError").GetProperty("class").GetString());
        SandboxPlatform.Shared.Script(id, null); // the platform lifts the restriction; the account must still wait
        var calls = SandboxPlatform.Shared.Calls(id).Count;

        var refused = await Fleet.SendAsync(id);
        Assert.Equal((409, "cooling_down"), refused.Of());
        Assert.Equal(until, refused.Body.GetProperty("cooldownUntil").GetDateTimeOffset());
        var retryAfter = int.Parse(refused.Headers.RetryAfter!.ToString(), CultureInfo.InvariantCulture);
        Assert.InRange(retryAfter, 1, 3);
        Assert.Equal((409, "cooling_down"), (await Fleet.PairAsync(id)).Of());
        while (DateTimeOffset.UtcNow < until.AddMilliseconds(-300))
        {
            Assert.Equal((409, "cooling_down"), (await Fleet.SendAsync(id)).Of());
            await Task.Delay(200);
        }
        Assert.Equal(calls, SandboxPlatform.Shared.Calls(id).Count); // not one call to the platform meanwhile

        await Fleet.WaitForStateAsync(id, "connected");
        Assert.True(DateTimeOffset.UtcNow >= until);
        (await Fleet.SendAsync(id)).EnsureStatus(202);
        var notice = (await owner.WaitForEventAsync("account.cooling_down")).Single(d => d.Event == "account.cooling_down");
        Assert.Equal(until, notice.Json.GetProperty("until").GetDateTimeOffset());
        Assert.Equal([.. Linked, "account.cooling_down"], owner.DeliveredEvents);
    }

    [Fact]
    public async Task A_transient_failure_backs_off_and_reconnects_without_owner_noise()
    {
        await using var owner = await WebhookReceiver.StartAsync();
        var id = Fleet.NewId("blip");
        await Fleet.LinkAsync(id, owner);
        await owner.WaitForEventAsync("account.connected");

        SandboxPlatform.Shared.Script(id, "transient", times: 2);
        var down = await Fleet.WaitForStateAsync(id, "transient_disconnect");
        Assert.Equal("transient", down.GetProperty("lastError").GetProperty("class").GetString());
        Assert.Equal((409, "not_connected"), (await Fleet.SendAsync(id)).Of());
        await Fleet.WaitForStateAsync(id, "connected");

        (await Fleet.SendAsync(id)).EnsureStatus(202);
        await Task.Delay(TimeSpan.FromSeconds(1));
        Assert.Equal(Linked, owner.DeliveredEvents);
        Assert.True(SandboxPlatform.Shared.Calls(id).Count(c => c.Kind == "health") >= 3, "two failed checks and a good one");
    }

    [Fact]
    public async Task A_platform_rate_limit_is_honoured_before_calling_again()
    {
        await using var owner = await WebhookReceiver.StartAsync();
        var id = Fleet.NewId("slow");
        await Fleet.LinkAsync(id, owner, new { autoConfirm = true, retryAfterSeconds = 2 });

        SandboxPlatform.Shared.Script(id, "rate_limited"); // the next call, a send or a health check, is told to wait 2 s
        Reply limited;
        do
        {
            limited = await Fleet.SendAsync(id);
        }
        while (limited.Status == 202);
        Assert.Equal((429, "platform_rate_limited"), limited.Of());
        Assert.InRange(int.Parse(limited.Headers.RetryAfter!.ToString(), CultureInfo.InvariantCulture), 1, 2);
        SandboxPlatform.Shared.Script(id, null);
        var sends = SandboxPlatform.Shared.Calls(id).Count(c => c.Kind == "send");

        var started = DateTimeOffset.UtcNow;
        Reply next;
        while ((next = await Fleet.SendAsync(id)).Status == 429)
        {
            Assert.Equal("platform_rate_limited", next.Code);
            Assert.Equal(sends, SandboxPlatform.Shared.Calls(id).Count(c => c.Kind == "send")); // refused here, never sent to the platform
            await Task.Delay(100);
        }
        next.EnsureStatus(202);
        Assert.True(DateTimeOffset.UtcNow - started > TimeSpan.FromSeconds(1), "the platform's Retry-After was honoured");
        Assert.Equal("connected", await Fleet.StateAsync(id));
    }
}
