using System.Globalization;
using QrOrleans.Grains.Connectors.Sandbox;

namespace QrOrleans.Tests.Accounts;

public sealed class RateBudgetTests(FleetNodeFixture fixture) : IClassFixture<FleetNodeFixture>
{
    private Fleet Fleet => fixture.Fleet;

    [Fact]
    public async Task One_account_exhausting_its_budget_never_slows_another()
    {
        await using var owner = await WebhookReceiver.StartAsync();
        var frugal = Fleet.NewId("frugal");
        var busy = Fleet.NewId("busy");
        await Fleet.LinkAsync(frugal, owner, capacity: 3, refillPerMinute: 1);
        await Fleet.LinkAsync(busy, owner, capacity: 50, refillPerMinute: 60);

        for (var i = 0; i < 3; i++)
        {
            (await Fleet.SendAsync(frugal, $"m{i}")).EnsureStatus(202);
        }
        var exhausted = await Fleet.SendAsync(frugal, "one too many");
        Assert.Equal((429, "rate_budget_exhausted"), exhausted.Of());
        var retryAfter = int.Parse(exhausted.Headers.RetryAfter!.ToString(), CultureInfo.InvariantCulture);
        Assert.InRange(retryAfter, 1, 60); // one token a minute
        Assert.Equal(retryAfter, exhausted.Body.GetProperty("retryAfter").GetInt32());
        Assert.Equal(0, (await Fleet.GetAsync(frugal)).Body.GetProperty("rateBudget").GetProperty("available").GetInt32());

        for (var i = 0; i < 20; i++)
        {
            (await Fleet.SendAsync(busy, $"b{i}")).EnsureStatus(202);
        }
        Assert.Equal((429, "rate_budget_exhausted"), (await Fleet.SendAsync(frugal)).Of());
        Assert.Equal(3, SandboxPlatform.Shared.Sent(frugal).Count);
        Assert.Equal(20, SandboxPlatform.Shared.Sent(busy).Count);
        var budget = (await Fleet.GetAsync(busy)).Body.GetProperty("rateBudget");
        Assert.Equal(50, budget.GetProperty("capacity").GetInt32());
        Assert.InRange(budget.GetProperty("available").GetInt32(), 30, 50);
    }
}
