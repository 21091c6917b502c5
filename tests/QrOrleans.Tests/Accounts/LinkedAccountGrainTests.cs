using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using QrOrleans.Accounts;
using QrOrleans.Grains.Accounts;
using QrOrleans.Grains.Vault;
using QrOrleans.Runtime;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Accounts;

/// <summary>The account grain on a hand-moved clock, with no live side running: what time and fencing alone do.</summary>
public sealed class LinkedAccountGrainTests : IAsyncDisposable
{
    private static readonly LeaseToken Holder1 = new("silo-1", 1);

    private readonly SiloHarness _silo = new(services: s => s
        .AddSingleton<ICredentialVault>(new CredentialVault(new VaultOptions { Keys = { ["1"] = CredentialVault.GenerateKey() }, CurrentVersion = 1 }))
        .AddSingleton(new AccountOptions { HealthInterval = TimeSpan.FromMinutes(5), PairingSlack = TimeSpan.FromSeconds(30) }));

    private ManualClock Clock => _silo.Clock!;

    private ILinkedAccountGrain Account(string id) => _silo.Grains.GetGrain<ILinkedAccountGrain>(id);

    private static AccountSettings Settings(int capacity = 10, double refill = 60, int maxCycles = 2, int qrTtl = 5) =>
        new("sandbox", "Bot", "http://127.0.0.1:9/hook", "owner-webhook-secret-0123456789",
            new RateBudgetConfig(capacity, refill), new PairingConfig(maxCycles, qrTtl), JsonDocument.Parse("{}").RootElement);

    private async Task<ILinkedAccountGrain> ConnectedAsync(string id, AccountSettings? settings = null)
    {
        var account = Account(id);
        await account.ConfigureAsync(settings ?? Settings(), default);
        await account.AttachAsync(Holder1, default);
        Assert.Equal("pairing", (await account.RequestPairingAsync(default)).State);
        await account.PairingCodeIssuedAsync(Holder1, 1, "https://sandbox/code", Clock.GetUtcNow().AddSeconds(5), default);
        await account.PairingConfirmedAsync(Holder1, 1, "secret-session", default);
        return account;
    }

    [Fact]
    public async Task Credentials_are_stored_sealed_only()
    {
        var account = await ConnectedAsync("sealed");
        var host = (await account.GetHostViewAsync(default))!;
        Assert.Equal("connected", host.State);
        Assert.DoesNotContain("secret-session", host.SealedCredentials, StringComparison.Ordinal);
        var stored = await _silo.Services.GetRequiredService<IGrainStore>().ReadAsync(AccountGrainTypes.AccountId("sealed"), default);
        Assert.DoesNotContain("secret-session", System.Text.Encoding.UTF8.GetString(stored!.State), StringComparison.Ordinal);
        Assert.Equal("secret-session", _silo.Services.GetRequiredService<ICredentialVault>().Unseal("sealed", host.SealedCredentials!));
    }

    [Fact]
    public async Task A_write_from_an_older_lease_epoch_is_refused_once_a_newer_one_has_written()
    {
        var account = await ConnectedAsync("fenced");
        var generation = (await account.GetHostViewAsync(default))!.CredentialGeneration;
        await account.AttachAsync(new LeaseToken("silo-2", 2), default);

        var refused = await Assert.ThrowsAsync<GrainException>(() => account.HealthFailedAsync(Holder1, generation,
            new PlatformFailure(ErrorClass.Auth, "revoked", "late news"), default));
        Assert.Equal("stale_epoch", refused.Code);
        await Assert.ThrowsAsync<GrainException>(() => account.HealthyAsync(Holder1, generation, null, default));
        var view = (await account.GetAsync(default))!;
        Assert.Equal(("connected", "silo-2"), (view.State, view.Holder));
        await account.HealthyAsync(new LeaseToken("silo-2", 2), generation, null, default);
    }

    [Fact]
    public async Task Without_any_live_side_the_pairing_limit_still_ends_the_ceremony_with_one_notice()
    {
        var account = Account("no-host");
        await account.ConfigureAsync(Settings(maxCycles: 2, qrTtl: 5), default);
        await account.RequestPairingAsync(default);
        await account.RequestPairingAsync(default); // asking twice is one ceremony

        Clock.Advance(TimeSpan.FromSeconds(2 * 5 + 30)); // maxCycles × qrTtl + slack
        await _silo.FireDueRemindersAsync();
        await _silo.FireDueRemindersAsync(); // the notice goes to the outbox
        Clock.Advance(TimeSpan.FromMinutes(10));
        await _silo.FireDueRemindersAsync();

        Assert.Equal("pairing_timed_out", (await account.GetAsync(default))!.State);
        var outbox = await _silo.Grains.GetGrain<IOutboxGrain>("no-host").GetStatusAsync(default);
        Assert.Equal((1, "pairing.timed_out"), (outbox.Pending, outbox.HeadEvent)); // nobody listens at 127.0.0.1:9
        Assert.True(outbox.HeadAttempts >= 1);

        // A holder that comes late with the same news changes nothing.
        await account.PairingTimedOutAsync(Holder1, 1, default);
        await _silo.FireDueRemindersAsync();
        Assert.Equal(1, (await _silo.Grains.GetGrain<IOutboxGrain>("no-host").GetStatusAsync(default)).Pending);
    }

    [Fact]
    public async Task The_rate_budget_is_a_token_bucket_that_refills_with_time()
    {
        var account = await ConnectedAsync("bucket", Settings(capacity: 2, refill: 30));
        await account.BeginSendAsync(default);
        await account.BeginSendAsync(default);
        var empty = await Assert.ThrowsAsync<GrainException>(() => account.BeginSendAsync(default));
        Assert.Equal(("rate_budget_exhausted", 429), (empty.Code, empty.Status));
        Assert.InRange(empty.RetryAfter!.Value - Clock.GetUtcNow(), TimeSpan.FromSeconds(1.99), TimeSpan.FromSeconds(2.01)); // 30 a minute

        Clock.Advance(TimeSpan.FromSeconds(2.1));
        await account.BeginSendAsync(default);
        Clock.Advance(TimeSpan.FromHours(1));
        Assert.Equal(2, (await account.GetAsync(default))!.RateBudget.Available); // never above capacity
    }

    [Fact]
    public async Task A_cool_down_refuses_sends_until_its_reminder_ends_it_and_asks_for_a_check()
    {
        var account = await ConnectedAsync("cool");
        var generation = (await account.GetHostViewAsync(default))!.CredentialGeneration;
        var until = Clock.GetUtcNow().AddMinutes(10);
        await account.HealthFailedAsync(Holder1, generation, new PlatformFailure(ErrorClass.Cooldown, "banned", "a pause", Until: until), default);

        var refused = await Assert.ThrowsAsync<GrainException>(() => account.BeginSendAsync(default));
        Assert.Equal(("cooling_down", until), (refused.Code, refused.RetryAfter));
        Clock.Advance(TimeSpan.FromMinutes(9));
        await _silo.FireDueRemindersAsync();
        Assert.Equal("cooling_down", (await account.GetAsync(default))!.State);

        Clock.Advance(TimeSpan.FromMinutes(1));
        await _silo.FireDueRemindersAsync();
        var host = (await account.GetHostViewAsync(default))!;
        Assert.Equal(("connected", true), (host.State, host.CheckDue));
    }

    [Fact]
    public async Task Stopping_and_starting_does_not_cut_a_cool_down_short()
    {
        var account = await ConnectedAsync("cool-stop");
        var generation = (await account.GetHostViewAsync(default))!.CredentialGeneration;
        var until = Clock.GetUtcNow().AddMinutes(10);
        await account.HealthFailedAsync(Holder1, generation, new PlatformFailure(ErrorClass.Cooldown, "banned", "a pause", Until: until), default);

        Assert.Equal("stopped", (await account.StopAsync(default)).State);
        var started = await account.StartAsync(default);
        Assert.Equal(("cooling_down", until), (started.State, started.CooldownUntil));
        Clock.Advance(TimeSpan.FromMinutes(10));
        await _silo.FireDueRemindersAsync();
        Assert.Equal("connected", (await account.GetAsync(default))!.State);
    }

    [Fact]
    public async Task A_transient_outage_that_lasts_tells_the_owner_once_and_again_when_it_is_over()
    {
        var options = _silo.Services.GetRequiredService<AccountOptions>();
        var account = await ConnectedAsync("outage");
        var generation = (await account.GetHostViewAsync(default))!.CredentialGeneration;
        var transient = new PlatformFailure(ErrorClass.Transient, "unreachable", "down");
        var outbox = _silo.Grains.GetGrain<IOutboxGrain>("outage");
        await _silo.FireDueRemindersAsync();
        var linkedNotices = (await outbox.GetStatusAsync(default)).Pending;

        for (var elapsed = TimeSpan.Zero; elapsed <= options.TransientNoticeAfter + TimeSpan.FromMinutes(5); elapsed += TimeSpan.FromMinutes(1))
        {
            await account.HealthFailedAsync(Holder1, generation, transient, default);
            Clock.Advance(TimeSpan.FromMinutes(1));
        }
        await _silo.FireDueRemindersAsync();
        Assert.Equal(linkedNotices + 1, (await outbox.GetStatusAsync(default)).Pending); // one account.disconnected
        await account.HealthyAsync(Holder1, generation, null, default);
        await _silo.FireDueRemindersAsync();
        Assert.Equal(linkedNotices + 2, (await outbox.GetStatusAsync(default)).Pending); // and account.connected
        Assert.Equal("connected", (await account.GetAsync(default))!.State);
    }

    public ValueTask DisposeAsync() => _silo.DisposeAsync();
}
