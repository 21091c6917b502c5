using Microsoft.Extensions.Time.Testing;
using Orleans.Runtime;
using Orleans.Streams;
using QrOrleans.Accounts;
using QrOrleans.Grains.Accounts;

namespace QrOrleans.Tests.Accounts;

/// <summary>One test cluster with a hand-moved clock, shared by the grain tests of the account.</summary>
public sealed class HandClockClusterFixture : IAsyncLifetime
{
    public FakeTimeProvider Clock { get; } = new(new DateTimeOffset(2026, 12, 1, 9, 0, 0, TimeSpan.Zero));

    public AccountOptions Options { get; } = new() { HealthInterval = TimeSpan.FromMinutes(5), PairingSlack = TimeSpan.FromSeconds(30) };

    public FleetCluster Fleet { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Fleet = await FleetCluster.StartAsync(2, Options, Clock);

    public async ValueTask DisposeAsync() => await Fleet.DisposeAsync();
}

/// <summary>
/// The account grain on a hand-moved clock, on a platform this cluster has no connector for, so that no live side
/// acts: what time and fencing alone do. The tests report as the activation's worker would, with its token.
/// </summary>
public sealed class LinkedAccountGrainTests(HandClockClusterFixture fixture) : IClassFixture<HandClockClusterFixture>
{
    private const string Manual = "manual"; // no connector: the worker has nothing to drive

    private FakeTimeProvider Clock => fixture.Clock;

    private FleetCluster Fleet => fixture.Fleet;

    private static string NewId(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..10]}";

    private static AccountSettings Settings(int capacity = 10, double refill = 60, int maxCycles = 2, int qrTtl = 5) =>
        new(Manual, "Bot", "http://127.0.0.1:9/hook", "owner-webhook-secret-0123456789",
            new RateBudgetConfig(capacity, refill), new PairingConfig(maxCycles, qrTtl), "{}");

    private async Task<WorkerToken> WorkerAsync(ILinkedAccountGrain account) => (await account.GetHostViewAsync())!.Worker;

    private async Task<(ILinkedAccountGrain Account, WorkerToken Worker)> ConnectedAsync(string id, AccountSettings? settings = null)
    {
        var account = Fleet.Account(id);
        await account.ConfigureAsync(settings ?? Settings());
        Assert.Equal("pairing", (await account.RequestPairingAsync()).State);
        var worker = await WorkerAsync(account);
        await account.PairingCodeIssuedAsync(worker, 1, "https://sandbox/code", Clock.GetUtcNow().AddSeconds(5));
        await account.PairingConfirmedAsync(worker, 1, "secret-session");
        Assert.Equal("connected", (await account.GetAsync())!.State);
        return (account, worker);
    }

    private static async Task<T> EventuallyAsync<T>(Func<Task<T>> read, Func<T, bool> done, string what)
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(10);
        while (true)
        {
            var value = await read();
            if (done(value))
            {
                return value;
            }
            if (DateTimeOffset.UtcNow > deadline)
            {
                throw new Xunit.Sdk.XunitException($"Timed out waiting for {what}; last: {value}");
            }
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task Credentials_are_stored_sealed_only()
    {
        var id = NewId("sealed");
        var (account, _) = await ConnectedAsync(id);
        var host = (await account.GetHostViewAsync())!;
        Assert.Equal("connected", host.State);
        Assert.DoesNotContain("secret-session", host.SealedCredentials, StringComparison.Ordinal);
        var stored = Fleet.Storage.Raw("account", GrainId.Create("linkedaccount", id));
        Assert.NotNull(stored);
        Assert.Contains(host.SealedCredentials!, stored, StringComparison.Ordinal);
        Assert.DoesNotContain("secret-session", stored, StringComparison.Ordinal);
        Assert.Equal("secret-session", Fleet.Vault.Unseal(id, host.SealedCredentials!));
    }

    [Fact]
    public async Task A_report_from_a_worker_that_is_not_the_current_activations_is_refused()
    {
        var (account, worker) = await ConnectedAsync(NewId("fenced"));
        var generation = (await account.GetHostViewAsync())!.CredentialGeneration;
        var stale = worker with { Activation = "an-older-activation" };

        var refused = await Assert.ThrowsAsync<GrainException>(() => account.HealthFailedAsync(stale, generation,
            new PlatformFailure(ErrorClass.Auth, "revoked", "late news")));
        Assert.Equal(("stale_epoch", 409), (refused.Code, refused.Status));
        await Assert.ThrowsAsync<GrainException>(() => account.HealthyAsync(stale, generation, null));
        Assert.Equal("connected", (await account.GetAsync())!.State);

        // The current worker's word still counts.
        await account.HealthFailedAsync(worker, generation, new PlatformFailure(ErrorClass.Auth, "revoked", "news"));
        Assert.Equal("bad_credentials", (await account.GetAsync())!.State);
    }

    [Fact]
    public async Task Without_any_live_side_the_pairing_limit_still_ends_the_ceremony_with_one_notice()
    {
        var id = NewId("no-host");
        var account = Fleet.Account(id);
        await account.ConfigureAsync(Settings(maxCycles: 2, qrTtl: 5));
        await account.RequestPairingAsync();
        await account.RequestPairingAsync(); // asking twice is one ceremony

        Clock.Advance(TimeSpan.FromSeconds(2 * 5 + 30)); // maxCycles × qrTtl + slack
        Assert.Equal("pairing_timed_out", (await account.GetAsync())!.State);
        var outbox = await EventuallyAsync(() => Fleet.Outbox(id).GetStatusAsync(), s => s.HeadAttempts >= 1, "a first delivery attempt");
        Assert.Equal((1, "pairing.timed_out"), (outbox.Pending, outbox.HeadEvent)); // nobody listens at 127.0.0.1:9

        // A worker that comes late with the same news changes nothing.
        await account.PairingTimedOutAsync(await WorkerAsync(account), 1);
        await Task.Delay(300);
        Assert.Equal(1, (await Fleet.Outbox(id).GetStatusAsync()).Pending);
        Assert.Equal("pairing_timed_out", (await account.GetAsync())!.State);
    }

    [Fact]
    public async Task The_rate_budget_is_a_token_bucket_that_refills_with_time()
    {
        var (account, _) = await ConnectedAsync(NewId("bucket"), Settings(capacity: 2, refill: 30));
        await account.BeginSendAsync();
        await account.BeginSendAsync();
        var empty = await Assert.ThrowsAsync<GrainException>(() => account.BeginSendAsync());
        Assert.Equal(("rate_budget_exhausted", 429), (empty.Code, empty.Status));
        Assert.InRange(empty.RetryAfter!.Value - Clock.GetUtcNow(), TimeSpan.FromSeconds(1.99), TimeSpan.FromSeconds(2.01)); // 30 a minute

        Clock.Advance(TimeSpan.FromSeconds(2.1));
        await account.BeginSendAsync();
        Clock.Advance(TimeSpan.FromHours(1));
        Assert.Equal(2, (await account.GetAsync())!.RateBudget.Available); // never above capacity
    }

    [Fact]
    public async Task A_cool_down_refuses_sends_until_it_ends_and_then_asks_for_a_check()
    {
        var (account, worker) = await ConnectedAsync(NewId("cool"));
        var generation = (await account.GetHostViewAsync())!.CredentialGeneration;
        var until = Clock.GetUtcNow().AddMinutes(10);
        await account.HealthFailedAsync(worker, generation, new PlatformFailure(ErrorClass.Cooldown, "banned", "a pause", Until: until));

        var refused = await Assert.ThrowsAsync<GrainException>(() => account.BeginSendAsync());
        Assert.Equal(("cooling_down", until), (refused.Code, refused.RetryAfter));
        Clock.Advance(TimeSpan.FromMinutes(9));
        Assert.Equal("cooling_down", (await account.GetAsync())!.State);

        Clock.Advance(TimeSpan.FromMinutes(1));
        var host = (await account.GetHostViewAsync())!;
        Assert.Equal(("connected", true), (host.State, host.CheckDue));
    }

    [Fact]
    public async Task Stopping_and_starting_does_not_cut_a_cool_down_short()
    {
        var (account, worker) = await ConnectedAsync(NewId("cool-stop"));
        var generation = (await account.GetHostViewAsync())!.CredentialGeneration;
        var until = Clock.GetUtcNow().AddMinutes(10);
        await account.HealthFailedAsync(worker, generation, new PlatformFailure(ErrorClass.Cooldown, "banned", "a pause", Until: until));

        Assert.Equal("stopped", (await account.StopAsync()).State);
        var started = await account.StartAsync();
        Assert.Equal(("cooling_down", until), (started.State, started.CooldownUntil));
        Clock.Advance(TimeSpan.FromMinutes(10));
        Assert.Equal("connected", (await account.GetAsync())!.State);
    }

    [Fact]
    public async Task A_transient_outage_that_lasts_tells_the_owner_once_and_again_when_it_is_over()
    {
        var id = NewId("outage");
        var (account, worker) = await ConnectedAsync(id);
        var generation = (await account.GetHostViewAsync())!.CredentialGeneration;
        var transient = new PlatformFailure(ErrorClass.Transient, "unreachable", "down");
        // pairing.qr, pairing.withdrawn, account.connected
        await EventuallyAsync(() => Fleet.Outbox(id).GetStatusAsync(), s => s.Pending == 3, "the linking notices in the outbox");

        for (var elapsed = TimeSpan.Zero; elapsed <= fixture.Options.TransientNoticeAfter + TimeSpan.FromMinutes(5); elapsed += TimeSpan.FromMinutes(1))
        {
            await account.HealthFailedAsync(worker, generation, transient);
            Clock.Advance(TimeSpan.FromMinutes(1));
        }
        Assert.Equal("transient_disconnect", (await account.GetAsync())!.State);
        await EventuallyAsync(() => Fleet.Outbox(id).GetStatusAsync(), s => s.Pending == 4, "one account.disconnected");
        await account.HealthyAsync(worker, generation, null);
        await EventuallyAsync(() => Fleet.Outbox(id).GetStatusAsync(), s => s.Pending == 5, "and account.connected");
        await Task.Delay(300);
        Assert.Equal(5, (await Fleet.Outbox(id).GetStatusAsync()).Pending); // no second account.disconnected
        Assert.Equal("connected", (await account.GetAsync())!.State);
    }

    [Fact]
    public async Task State_changes_reach_a_stream_subscriber_with_increasing_versions_and_no_credentials()
    {
        var id = NewId("stream");
        var seen = new System.Collections.Concurrent.ConcurrentQueue<LinkedAccountChanged>();
        var stream = Fleet.Cluster.Client.GetStreamProvider(OrleansNames.Streams)
            .GetStream<LinkedAccountChanged>(StreamId.Create(AccountStreams.Namespace, id));
        var handle = await stream.SubscribeAsync((e, _) =>
        {
            seen.Enqueue(e);
            return Task.CompletedTask;
        });
        try
        {
            await ConnectedAsync(id);
            var events = await EventuallyAsync(() => Task.FromResult(seen.ToArray()), e => e.Any(x => x.Account.State == "connected"), "the connected event");
            Assert.Equal(["unlinked", "pairing", "pairing", "connected"], events.Select(e => e.Account.State));
            Assert.Equal(events.Select(e => e.Version).Order(), events.Select(e => e.Version));
            Assert.Equal(events.Length, events.Select(e => e.Version).Distinct().Count());
            Assert.Equal("https://sandbox/code", events[2].Qr?.QrContent); // the owner inbox's QR while pairing
            Assert.Null(events[3].Qr);
            Assert.All(events, e => Assert.DoesNotContain("secret", System.Text.Json.JsonSerializer.Serialize(e), StringComparison.Ordinal));
        }
        finally
        {
            await handle.UnsubscribeAsync();
        }
    }
}
