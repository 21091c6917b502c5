using System.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Orleans.TestingHost;
using QrOrleans.Grains;
using QrOrleans.Accounts;
using QrOrleans.Grains.Accounts;
using QrOrleans.Grains.Connectors.Sandbox;

namespace QrOrleans.Tests.Accounts;

/// <summary>
/// Two silos of one cluster and a sandbox account: its activation is the one holder of the live connection, and
/// when the holding silo dies the account is connected again from the other one, its old worker fenced.
/// </summary>
public sealed class FleetFailoverTests
{
    private static readonly AccountOptions Options = new()
    {
        HealthInterval = TimeSpan.FromSeconds(1),
        RetryBase = TimeSpan.FromMilliseconds(500),
        RetryMax = TimeSpan.FromSeconds(2),
        PairingPollWait = TimeSpan.FromMilliseconds(250),
        WebhookRetryBase = TimeSpan.FromMilliseconds(200),
        WebhookRetryMax = TimeSpan.FromSeconds(1),
    };

    private static AccountSettings Sandbox() =>
        new(Platforms.Sandbox, "agent", "http://127.0.0.1:9/hook", "owner-webhook-secret-0123456789",
            new RateBudgetConfig(100, 600), new PairingConfig(3, 30), """{"autoConfirm":true}""");

    private static async Task<AccountView> WaitAsync(ILinkedAccountGrain account, Func<AccountView, bool> done, TimeSpan within, string what)
    {
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                if (await account.GetAsync() is { } view && done(view))
                {
                    return view;
                }
            }
            catch (Exception e) when (e is not GrainException && deadline.Elapsed < within)
            {
                // the cluster is still settling after a silo died
            }
            if (deadline.Elapsed > within)
            {
                throw new Xunit.Sdk.XunitException($"Timed out after {within} waiting for {what}.");
            }
            await Task.Delay(50);
        }
    }

    /// <summary>Waits (15 s at most) until the silo's census counts a connected account (the only one of the cluster).</summary>
    private static async Task ActivatedAsync(InProcessSiloHandle silo, Stopwatch clock)
    {
        var census = silo.ServiceProvider.GetRequiredService<ActivationCensus>();
        while (census.CountByState(ActivationCensus.LinkedAccount).GetValueOrDefault(AccountStates.Connected) != 1)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(15), $"no activation on the survivor after {clock.Elapsed}");
            await Task.Delay(50);
        }
    }

    /// <summary>Waits (15 s at most) for a health check of the account that starts after now.</summary>
    private static async Task HealthCheckAsync(string id, Stopwatch clock, string what)
    {
        var checks = SandboxPlatform.Shared.Calls(id).Count(c => c.Kind == "health");
        while (SandboxPlatform.Shared.Calls(id).Count(c => c.Kind == "health") <= checks)
        {
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(15), $"no {what} after {clock.Elapsed}");
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task When_the_holding_silo_is_killed_the_account_is_connected_again_from_the_other_within_15_s_and_the_old_worker_is_refused()
    {
        await using var fleet = await FleetCluster.StartAsync(2, Options);
        var id = $"failover-{Guid.NewGuid().ToString("N")[..10]}";
        var account = fleet.Account(id);
        await account.ConfigureAsync(Sandbox());
        await account.RequestPairingAsync();
        var before = await WaitAsync(account, v => v.State == AccountStates.Connected, TimeSpan.FromSeconds(10), "the account to link");
        var holder = fleet.Cluster.Silos.Single(s => s.SiloAddress.ToString() == before.Holder);
        var survivor = fleet.Cluster.Silos.Single(s => s != holder);
        var oldWorker = (await account.GetHostViewAsync())!;
        Assert.Equal(before.Holder, oldWorker.Worker.Silo);
        // Exactly one live side: health checks come at the interval, not twice per interval.
        var checksBefore = SandboxPlatform.Shared.Calls(id).Count(c => c.Kind == "health");
        await Task.Delay(TimeSpan.FromSeconds(3));
        Assert.InRange(SandboxPlatform.Shared.Calls(id).Count(c => c.Kind == "health") - checksBefore, 1, 4);

        await fleet.Cluster.KillSiloAsync(holder);
        var clock = Stopwatch.StartNew();
        // Nobody calls the account meanwhile: the cluster itself must bring its live side back. The killed silo's
        // worker task lingers in this process (a real kill -9 ends it), so only checks after the survivor's
        // activation count.
        await ActivatedAsync(survivor, clock);
        await HealthCheckAsync(id, clock, "a health check by the new holder");
        var takeover = clock.Elapsed;
        var after = await WaitAsync(account, v => v.State == AccountStates.Connected, TimeSpan.FromSeconds(5), "connected");
        Assert.Equal(survivor.SiloAddress.ToString(), after.Holder);
        Assert.True(takeover < TimeSpan.FromSeconds(15), $"connected again after {takeover}");
        Console.WriteLine($"linked account connected again from the surviving silo {takeover.TotalSeconds:F1} s after kill");

        // The dead silo's worker, had it survived a partition, could not change the account.
        var stale = await Assert.ThrowsAsync<GrainException>(() => account.HealthFailedAsync(oldWorker.Worker, oldWorker.CredentialGeneration,
            new PlatformFailure(ErrorClass.Auth, "late", "a late report from the old holder")));
        Assert.Equal(("stale_epoch", 409), (stale.Code, stale.Status));
        Assert.Equal(AccountStates.Connected, (await account.GetAsync())!.State);
        await account.BeginSendAsync(); // and it sends
        Assert.True(after.Version > before.Version);
    }

    [Fact]
    public async Task A_silo_that_stops_cleanly_hands_its_accounts_over()
    {
        await using var fleet = await FleetCluster.StartAsync(2, Options);
        var id = $"handover-{Guid.NewGuid().ToString("N")[..10]}";
        var account = fleet.Account(id);
        await account.ConfigureAsync(Sandbox());
        await account.RequestPairingAsync();
        var before = await WaitAsync(account, v => v.State == AccountStates.Connected, TimeSpan.FromSeconds(10), "the account to link");
        var holder = fleet.Cluster.Silos.Single(s => s.SiloAddress.ToString() == before.Holder);
        var survivor = fleet.Cluster.Silos.Single(s => s != holder);

        await fleet.Cluster.StopSiloAsync(holder);
        var clock = Stopwatch.StartNew();
        await ActivatedAsync(survivor, clock);
        await HealthCheckAsync(id, clock, "a health check from the survivor");
        Assert.Equal(survivor.SiloAddress.ToString(), (await account.GetAsync())!.Holder);
        await account.BeginSendAsync();
    }
}
