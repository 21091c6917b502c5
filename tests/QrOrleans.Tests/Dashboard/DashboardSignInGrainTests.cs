using Orleans;
using Orleans.Runtime;
using QrOrleans.Dashboard;
using QrOrleans.Grains.Dashboard;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Dashboard;

/// <summary>A dashboard sign-in's record on Orleans, on a hand-moved clock: it ends with the cookie and leaves nothing behind.</summary>
public sealed class DashboardSignInGrainTests
{
    [Fact]
    public async Task A_sign_in_that_nobody_ends_expires_with_its_cookie_and_leaves_no_state_reminder_or_activation()
    {
        await using var silo = await SiloHarness.StartAsync();
        var key = Guid.NewGuid().ToString("N");
        var signIn = silo.Grains.GetGrain<IDashboardSignInGrain>(key);
        var lifetime = QrOrleans.Gateway.Dashboard.DashboardSessions.Lifetime;

        await signIn.BeginAsync(silo.Clock!.GetUtcNow() + lifetime);
        Assert.True(await signIn.IsActiveAsync());
        Assert.True(await silo.IsStoredAsync<DashboardSignInState>(signIn, "signIn"));
        Assert.Equal(["expiry"], await silo.RemindersOfAsync(signIn));

        silo.Clock.Advance(lifetime - TimeSpan.FromSeconds(1));
        Assert.True(await signIn.IsActiveAsync());

        // The cookie's end: the reminder falls due, and nobody asked about the sign-in since.
        silo.Clock.Advance(TimeSpan.FromSeconds(1));
        await SiloHarness.FireReminderAsync(signIn, "expiry");

        Assert.False(await silo.IsStoredAsync<DashboardSignInState>(signIn, "signIn"));
        Assert.Empty(await silo.RemindersOfAsync(signIn));
        await EventuallyInactiveAsync(silo, key);
    }

    [Fact]
    public async Task A_cookie_asked_about_after_its_end_is_refused_and_its_record_goes_then()
    {
        await using var silo = await SiloHarness.StartAsync();
        var key = Guid.NewGuid().ToString("N");
        var signIn = silo.Grains.GetGrain<IDashboardSignInGrain>(key);
        await signIn.BeginAsync(silo.Clock!.GetUtcNow() + TimeSpan.FromMinutes(5));

        silo.Clock.Advance(TimeSpan.FromMinutes(5)); // the reminder has not fired (yet): the check does not wait for it
        Assert.False(await signIn.IsActiveAsync());
        Assert.False(await silo.IsStoredAsync<DashboardSignInState>(signIn, "signIn"));
        Assert.Empty(await silo.RemindersOfAsync(signIn));
        await EventuallyInactiveAsync(silo, key);
    }

    [Fact]
    public async Task Ending_a_sign_in_removes_it_at_once_and_asking_again_does_not_bring_it_back()
    {
        await using var silo = await SiloHarness.StartAsync();
        var key = Guid.NewGuid().ToString("N");
        var signIn = silo.Grains.GetGrain<IDashboardSignInGrain>(key);
        await signIn.BeginAsync(silo.Clock!.GetUtcNow() + TimeSpan.FromHours(12));

        await signIn.EndAsync();
        await signIn.EndAsync(); // twice: idempotent

        Assert.False(await signIn.IsActiveAsync());
        Assert.False(await silo.IsStoredAsync<DashboardSignInState>(signIn, "signIn"));
        Assert.Empty(await silo.RemindersOfAsync(signIn));
        await EventuallyInactiveAsync(silo, key);
    }

    private static async Task EventuallyInactiveAsync(SiloHarness silo, string key)
    {
        var management = silo.Grains.GetGrain<IManagementGrain>(0);
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (true)
        {
            var active = await management.GetActiveGrains(GrainType.Create("dashboardsignin"));
            if (!active.Any(g => g.Key.ToString() == key))
            {
                return;
            }
            Assert.True(DateTime.UtcNow < deadline, "the sign-in's activation stayed");
            await Task.Delay(100);
        }
    }
}
