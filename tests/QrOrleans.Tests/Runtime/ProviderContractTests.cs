using System.Text;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using QrOrleans.Runtime;
using QrOrleans.Silo;
using QrOrleans.Silo.Runtime;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Runtime;

/// <summary>What every storage provider must do, run unchanged on each (one subclass per provider).</summary>
public abstract class ProviderContractTests : IAsyncLifetime
{
    private SiloHarness _silo = null!;
    private readonly CounterProbe _probe = new();
    private readonly ManualClock _clock = new(new DateTimeOffset(2026, 11, 22, 12, 0, 0, TimeSpan.Zero));

    protected abstract Task ConfigureAsync(SiloOptions options);

    protected IGrainStore Store => _silo.Services.GetRequiredService<IGrainStore>();

    protected IReminderTable Reminders => _silo.Services.GetRequiredService<IReminderTable>();

    private SiloOptions _options = new();

    public async ValueTask InitializeAsync()
    {
        await ConfigureAsync(_options);
        _silo = await NewSilo().PrepareAsync();
    }

    private SiloHarness NewSilo() => new(
        clock: _clock,
        services: s => s.AddSingleton(_probe).AddGrain<ICounterGrain, CounterGrain>("counter"),
        silo: o =>
        {
            o.Provider = _options.Provider;
            o.ConnectionString = _options.ConnectionString;
        });

    public async ValueTask DisposeAsync()
    {
        await _silo.DisposeAsync();
        await DisposeDatabaseAsync();
    }

    protected virtual ValueTask DisposeDatabaseAsync() => ValueTask.CompletedTask;

    private static GrainId NewId() => new("contract", Guid.NewGuid().ToString("N"));

    private static byte[] Json(string json) => Encoding.UTF8.GetBytes(json);

    private static TurnEffects Event(GrainId id, long version, string payload) => new([], [new StreamEvent(id, version, payload)]);

    [Fact]
    public async Task State_is_written_only_over_the_version_it_was_read_at()
    {
        var id = NewId();
        Assert.Null(await Store.ReadAsync(id, default));
        Assert.Equal(1, await Store.CommitAsync(id, null, Json("""{"n":1}"""), TurnEffects.None, default));
        await Assert.ThrowsAsync<EtagConflictException>(() => Store.CommitAsync(id, null, Json("""{"n":9}"""), TurnEffects.None, default));
        Assert.Equal(2, await Store.CommitAsync(id, 1, Json("""{"n":2}"""), TurnEffects.None, default));
        await Assert.ThrowsAsync<EtagConflictException>(() => Store.CommitAsync(id, 1, Json("""{"n":9}"""), TurnEffects.None, default));

        var stored = await Store.ReadAsync(id, default);
        Assert.Equal(2, stored!.Etag);
        Assert.Equal(2, System.Text.Json.JsonDocument.Parse(stored.State).RootElement.GetProperty("n").GetInt32());

        await Assert.ThrowsAsync<EtagConflictException>(() => Store.CommitAsync(id, 1, null, TurnEffects.None, default));
        await Store.CommitAsync(id, 2, null, TurnEffects.None, default);
        Assert.Null(await Store.ReadAsync(id, default));
    }

    [Fact]
    public async Task A_refused_commit_changes_no_reminder_and_publishes_nothing()
    {
        var id = NewId();
        await Store.CommitAsync(id, null, Json("{}"), TurnEffects.None, default);
        var effects = new TurnEffects([new ReminderChange("r", _clock.GetUtcNow(), null)], [new StreamEvent(id, 2, "{}")]);
        await Assert.ThrowsAsync<EtagConflictException>(() => Store.CommitAsync(id, 7, Json("{}"), effects, default));
        Assert.Empty(await Reminders.ClaimDueAsync(_clock.GetUtcNow(), TimeSpan.FromSeconds(5), 100, default));
    }

    [Fact]
    public async Task Events_are_published_with_their_version_only_when_the_commit_succeeds()
    {
        var source = _silo.Services.GetRequiredService<IStreamSource>();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await using var events = source.ListenAsync(cts.Token).GetAsyncEnumerator(cts.Token);
        var id = NewId();

        // The listener may need a moment to subscribe: commit probes until one is heard.
        long version = 0;
        var heard = false;
        var listening = events.MoveNextAsync().AsTask();
        while (!heard)
        {
            version = await Store.CommitAsync(id, version == 0 ? null : version, Json("{}"), Event(id, version + 1, "probe"), default);
            heard = await Task.WhenAny(listening, Task.Delay(200, cts.Token)) == listening;
        }
        while (events.Current.Event?.Grain != id)
        {
            Assert.True(await events.MoveNextAsync());
        }

        await Assert.ThrowsAsync<EtagConflictException>(() => Store.CommitAsync(id, version + 5, Json("{}"), Event(id, 99, "lost"), default));
        var committed = await Store.CommitAsync(id, version, Json("{}"), Event(id, version + 1, """{"state":"next"}"""), default);

        StreamEvent? next = null;
        while (next is null || next.Payload == "probe")
        {
            Assert.True(await events.MoveNextAsync());
            next = events.Current.Event?.Grain == id ? events.Current.Event : null;
        }
        Assert.Equal(committed, next.Version);
        Assert.Equal("""{"state":"next"}""", next.Payload);
        await cts.CancelAsync();
    }

    [Fact]
    public async Task A_claimed_reminder_is_hidden_for_its_lease_then_due_again_until_completed()
    {
        var id = NewId();
        var now = _clock.GetUtcNow();
        await Store.CommitAsync(id, null, Json("{}"), new TurnEffects([new ReminderChange("tick", now.AddSeconds(-1), null)], []), default);

        var first = Assert.Single(await Reminders.ClaimDueAsync(now, TimeSpan.FromSeconds(10), 100, default), r => r.Grain == id);
        Assert.Equal("tick", first.Name);
        Assert.DoesNotContain(await Reminders.ClaimDueAsync(now.AddSeconds(5), TimeSpan.FromSeconds(10), 100, default), r => r.Grain == id);
        var again = Assert.Single(await Reminders.ClaimDueAsync(now.AddSeconds(11), TimeSpan.FromSeconds(10), 100, default), r => r.Grain == id);
        Assert.Equal(first.Seq, again.Seq);

        await Reminders.CompleteAsync(again, now.AddSeconds(11), default);
        Assert.DoesNotContain(await Reminders.ClaimDueAsync(now.AddHours(1), TimeSpan.FromSeconds(10), 100, default), r => r.Grain == id);
    }

    [Fact]
    public async Task Completing_a_reminder_the_grain_set_again_keeps_the_new_one()
    {
        var id = NewId();
        var now = _clock.GetUtcNow();
        await Store.CommitAsync(id, null, Json("{}"), new TurnEffects([new ReminderChange("tick", now, null)], []), default);
        var claimed = Assert.Single(await Reminders.ClaimDueAsync(now, TimeSpan.FromSeconds(10), 100, default), r => r.Grain == id);
        await Store.CommitAsync(id, 1, Json("{}"), new TurnEffects([new ReminderChange("tick", now.AddMinutes(1), null)], []), default);
        await Reminders.CompleteAsync(claimed, now, default);

        var next = Assert.Single(await Reminders.ClaimDueAsync(now.AddMinutes(1), TimeSpan.FromSeconds(10), 100, default), r => r.Grain == id);
        Assert.Equal(now.AddMinutes(1), next.DueAt);
    }

    [Fact]
    public async Task A_periodic_reminder_is_rescheduled_and_deleting_a_grain_drops_its_reminders()
    {
        var id = NewId();
        var now = _clock.GetUtcNow();
        await Store.CommitAsync(id, null, Json("{}"), new TurnEffects([new ReminderChange("beat", now, TimeSpan.FromSeconds(30))], []), default);
        var claimed = Assert.Single(await Reminders.ClaimDueAsync(now.AddSeconds(65), TimeSpan.FromSeconds(5), 100, default), r => r.Grain == id);
        Assert.Equal(TimeSpan.FromSeconds(30), claimed.Period);
        await Reminders.CompleteAsync(claimed, now.AddSeconds(65), default);
        Assert.DoesNotContain(await Reminders.ClaimDueAsync(now.AddSeconds(89), TimeSpan.FromSeconds(5), 100, default), r => r.Grain == id);
        var next = Assert.Single(await Reminders.ClaimDueAsync(now.AddSeconds(90), TimeSpan.FromSeconds(5), 100, default), r => r.Grain == id);
        Assert.Equal(now.AddSeconds(90), next.DueAt);

        await Store.CommitAsync(id, 1, null, TurnEffects.None, default);
        Assert.DoesNotContain(await Reminders.ClaimDueAsync(now.AddHours(2), TimeSpan.FromSeconds(5), 100, default), r => r.Grain == id);
    }

    [Fact]
    public async Task Concurrent_claimers_never_get_the_same_reminder()
    {
        var now = _clock.GetUtcNow();
        var ids = Enumerable.Range(0, 200).Select(_ => NewId()).ToList();
        foreach (var id in ids)
        {
            await Store.CommitAsync(id, null, Json("{}"), new TurnEffects([new ReminderChange("once", now.AddMilliseconds(-5), null)], []), default);
        }
        var claims = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(async () =>
        {
            var mine = new List<DueReminder>();
            IReadOnlyList<DueReminder> batch;
            do
            {
                batch = await Reminders.ClaimDueAsync(now, TimeSpan.FromMinutes(1), 7, default);
                mine.AddRange(batch.Where(r => ids.Contains(r.Grain)));
            }
            while (batch.Count > 0);
            return mine;
        })));
        var all = claims.SelectMany(c => c).Select(r => r.Grain).ToList();
        Assert.Equal(ids.Count, all.Count);
        Assert.Equal(ids.Count, all.Distinct().Count());
    }

    /// <summary>Only meaningful where two silos share one store, so only the PostgreSQL subclass runs it.</summary>
    protected async Task Two_nodes_on_one_store_lose_no_update()
    {
        // Two runtimes (two nodes) over the same provider: only the version check keeps them honest.
        await using var other = await NewSilo().PrepareAsync();
        var a = _silo.Grains.GetGrain<ICounterGrain>("shared");
        var b = other.Grains.GetGrain<ICounterGrain>("shared");
        await Task.WhenAll(Enumerable.Range(0, 100).Select(i => Task.Run(() => (i % 2 == 0 ? a : b).IncrementAsync(default))));
        var state = await _silo.Runtime.ReadAsync<CounterState>(new GrainId("counter", "shared"), default);
        Assert.Equal(100, state!.Value.State.Count);
        Assert.Equal(100, state.Value.Version);
    }

    [Fact]
    public async Task Membership_tracks_heartbeats_and_marks_silent_silos_dead()
    {
        var table = _silo.Services.GetRequiredService<IMembershipTable>();
        var now = _clock.GetUtcNow();
        var alive = "alive-" + Guid.NewGuid().ToString("N")[..6];
        var silent = "silent-" + Guid.NewGuid().ToString("N")[..6];
        await table.JoinAsync(new SiloRecord(alive, "http://127.0.0.1:1", SiloStatuses.Active, now, now), default);
        await table.JoinAsync(new SiloRecord(silent, "http://127.0.0.1:2", SiloStatuses.Active, now, now), default);
        await table.HeartbeatAsync(alive, now.AddSeconds(20), default);
        await table.MarkDeadAsync(now.AddSeconds(10), default);
        await table.HeartbeatAsync(silent, now.AddSeconds(30), default); // too late: dead stays dead

        var silos = (await table.ListAsync(default)).ToDictionary(s => s.Id);
        Assert.Equal(SiloStatuses.Active, silos[alive].Status);
        Assert.Equal(now.AddSeconds(20), silos[alive].LastHeartbeatAt);
        Assert.Equal(SiloStatuses.Dead, silos[silent].Status);
        await table.LeaveAsync(alive, default);
        Assert.Equal(SiloStatuses.Stopped, (await table.ListAsync(default)).Single(s => s.Id == alive).Status);
    }

    [Fact]
    public async Task Grains_are_counted_by_state()
    {
        var statistics = _silo.Services.GetRequiredService<IGrainStatistics>();
        var type = "stat" + Guid.NewGuid().ToString("N")[..6];
        foreach (var state in new[] { "a", "a", "b" })
        {
            await Store.CommitAsync(new GrainId(type, Guid.NewGuid().ToString("N")), null, Json($$"""{"state":"{{state}}"}"""), TurnEffects.None, default);
        }
        var counts = await statistics.CountByAsync(type, "state", default);
        Assert.Equal(2, counts["a"]);
        Assert.Equal(1, counts["b"]);
    }
}

public sealed class MemoryProviderContractTests : ProviderContractTests
{
    protected override Task ConfigureAsync(SiloOptions options)
    {
        options.UseMemory();
        return Task.CompletedTask;
    }
}

public sealed class PostgreSqlProviderContractTests : ProviderContractTests
{
    private Cluster.PostgresDatabase? _database;

    protected override async Task ConfigureAsync(SiloOptions options)
    {
        _database = await Cluster.PostgresDatabase.CreateAsync();
        options.UsePostgreSql(_database.ConnectionString);
    }

    protected override async ValueTask DisposeDatabaseAsync()
    {
        if (_database is not null)
        {
            await _database.DisposeAsync();
        }
    }

    [Fact]
    public Task Two_nodes_on_one_database_lose_no_update() => Two_nodes_on_one_store_lose_no_update();

    [Fact]
    public async Task A_node_whose_copy_of_a_grain_is_stale_answers_from_the_database()
    {
        // Node A keeps the session it created; node B changes it behind A's back.
        await using var a = await new SiloHarness(clock: TimeProvider.System, silo: o => o.UsePostgreSql(_database!.ConnectionString)).PrepareAsync();
        await using var b = await new SiloHarness(clock: TimeProvider.System, silo: o => o.UsePostgreSql(_database!.ConnectionString)).PrepareAsync();
        var id = Grains.Secrets.NewToken(16);
        var created = await a.Grains.GetGrain<QrOrleans.QrSessions.IQrSessionGrain>(id)
            .CreateAsync(new QrOrleans.QrSessions.Requester("d", "browser", "b", "o", "1.1.1.1", DateTimeOffset.UtcNow), default);
        await b.Grains.GetGrain<QrOrleans.QrSessions.IQrSessionGrain>(id).CancelAsync(created.DesktopToken, default);

        // A refusal computed on A's stale copy would be invalid_state (pending); the database says cancelled.
        var refused = await Assert.ThrowsAsync<GrainException>(() =>
            a.Grains.GetGrain<QrOrleans.QrSessions.IQrSessionGrain>(id).ApproveAsync("alice", "42", default));
        Assert.Equal("qr_already_used", refused.Code);
        // A write on the stale copy loses the version check and runs again on the database's state.
        var cancelledAgain = await a.Grains.GetGrain<QrOrleans.QrSessions.IQrSessionGrain>(id).CancelAsync(created.DesktopToken, default);
        Assert.Equal(2, cancelledAgain.Version);

        // A refusal thrown from a stale copy: B rotated the refresh token; A's copy does not know the new one.
        var deviceId = Grains.Secrets.NewHexId(16) + "-" + Grains.Secrets.NewHexId(8);
        var (_, first) = await a.Grains.GetGrain<QrOrleans.Users.IDeviceGrain>(deviceId)
            .RegisterAsync("u1", new QrOrleans.Users.NewDevice(deviceId, "phone", "phone", "1.1.1.1"), default);
        var (_, _, second) = await b.Grains.GetGrain<QrOrleans.Users.IDeviceGrain>(deviceId).RefreshAsync(first.Split('.')[1], "1.1.1.1", default);
        var (_, _, third) = await a.Grains.GetGrain<QrOrleans.Users.IDeviceGrain>(deviceId).RefreshAsync(second.Split('.')[1], "1.1.1.1", default);
        Assert.NotEqual(second, third);
    }
}
