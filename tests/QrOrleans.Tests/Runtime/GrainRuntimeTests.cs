using Microsoft.Extensions.DependencyInjection;
using QrOrleans.Gateway.QrSessions;
using QrOrleans.QrSessions;
using QrOrleans.Runtime;
using QrOrleans.Silo;
using QrOrleans.Silo.Runtime;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Runtime;

public interface ICounterGrain : IGrain
{
    Task<int> IncrementAsync(CancellationToken ct);

    Task ScheduleAsync(TimeSpan after, CancellationToken ct);
}

public sealed record CounterState(int Count, int Reminded);

/// <summary>A grain for runtime tests: counts increments; its reminder fails while <see cref="FailuresLeft"/> &gt; 0.</summary>
public sealed class CounterGrain(GrainId id, IGrainRuntime runtime, CounterProbe probe) : ICounterGrain, IRemindable
{
    public Task<int> IncrementAsync(CancellationToken ct) =>
        runtime.RunTurnAsync<CounterState, int>(id, turn =>
        {
            probe.BodyRuns++;
            probe.BeforeCommit?.Invoke();
            var count = (turn.State?.Count ?? 0) + 1;
            turn.State = (turn.State ?? new CounterState(0, 0)) with { Count = count };
            turn.Publish(new { count }, GrainJson.Options);
            return count;
        }, ct);

    public Task ScheduleAsync(TimeSpan after, CancellationToken ct) =>
        runtime.RunTurnAsync<CounterState, bool>(id, turn =>
        {
            turn.State ??= new CounterState(0, 0);
            turn.SetReminder("tick", turn.Now + after);
            return true;
        }, ct);

    public Task ReceiveReminderAsync(string name, DateTimeOffset dueAt, CancellationToken ct)
    {
        Interlocked.Increment(ref probe.ReminderCalls);
        if (Interlocked.Decrement(ref probe.FailuresLeft) >= 0)
        {
            throw new InvalidOperationException("the handler fails this time");
        }
        return runtime.RunTurnAsync<CounterState, bool>(id, turn =>
        {
            turn.State = turn.State! with { Reminded = turn.State.Reminded + 1 };
            return true;
        }, ct);
    }
}

public sealed class CounterProbe
{
    public int BodyRuns;
    public int ReminderCalls;
    public int FailuresLeft;
    public Action? BeforeCommit;
}

public sealed class GrainRuntimeTests
{
    private static SiloHarness Silo(CounterProbe probe, Action<SiloOptions>? silo = null, TimeProvider? clock = null) => new(
        clock: clock,
        services: s => s.AddSingleton(probe).AddGrain<ICounterGrain, CounterGrain>("counter"),
        silo: silo);

    [Fact]
    public async Task Concurrent_calls_on_one_grain_run_one_at_a_time()
    {
        var probe = new CounterProbe();
        await using var silo = Silo(probe);
        var grain = silo.Grains.GetGrain<ICounterGrain>("c1");

        var results = await Task.WhenAll(Enumerable.Range(0, 500).Select(_ => Task.Run(() => grain.IncrementAsync(default))));

        Assert.Equal(Enumerable.Range(1, 500), results.Order());   // every call saw the one before it
        Assert.Equal(0, silo.Runtime.ConflictRetries);              // serialized by the turn lock, not by luck
        Assert.Equal(500, probe.BodyRuns);
    }

    [Fact]
    public async Task A_stale_version_is_refused_and_the_turn_runs_again_on_fresh_state()
    {
        var probe = new CounterProbe();
        await using var silo = Silo(probe);
        var grain = silo.Grains.GetGrain<ICounterGrain>("c2");
        await grain.IncrementAsync(default);
        var store = silo.Services.GetRequiredService<IGrainStore>();
        var id = new GrainId("counter", "c2");

        // Another node commits between this turn's read and its write, once.
        var interfered = false;
        probe.BeforeCommit = () =>
        {
            if (interfered)
            {
                return;
            }
            interfered = true;
            var current = store.ReadAsync(id, default).GetAwaiter().GetResult()!;
            store.CommitAsync(id, current.Etag, System.Text.Json.JsonSerializer.SerializeToUtf8Bytes(new CounterState(10, 0), GrainJson.Options),
                TurnEffects.None, default).GetAwaiter().GetResult();
        };
        probe.BodyRuns = 0;

        var result = await grain.IncrementAsync(default);

        Assert.Equal(11, result);                   // built on the other node's write, not on the stale read
        Assert.Equal(2, probe.BodyRuns);            // the first run lost the race and ran again
        Assert.Equal(1, silo.Runtime.ConflictRetries);
        await Assert.ThrowsAsync<EtagConflictException>(() => store.CommitAsync(id, 1, [], TurnEffects.None, default));
        Assert.Equal(3, (await store.ReadAsync(id, default))!.Etag);
    }

    [Fact]
    public async Task A_reminder_fires_and_fires_again_after_its_handler_fails()
    {
        var probe = new CounterProbe { FailuresLeft = 2 };
        await using var silo = Silo(probe, o =>
        {
            o.ReminderPollInterval = TimeSpan.FromMilliseconds(20);
            o.ReminderLease = TimeSpan.FromMilliseconds(200);
        }, TimeProvider.System);
        var service = silo.Services.GetRequiredService<ReminderService>();
        await service.StartAsync(default);
        try
        {
            var grain = silo.Grains.GetGrain<ICounterGrain>("c3");
            await grain.ScheduleAsync(TimeSpan.FromMilliseconds(50), default);

            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (service.Delivered == 0 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(20);
            }
            Assert.Equal(1, service.Delivered);
            Assert.Equal(2, service.Failed);
            Assert.Equal(3, probe.ReminderCalls);

            await Task.Delay(600); // a completed one-shot reminder does not come back
            Assert.Equal(3, probe.ReminderCalls);
            var state = await silo.Runtime.ReadAsync<CounterState>(new GrainId("counter", "c3"), default);
            Assert.Equal(1, state!.Value.State.Reminded);
        }
        finally
        {
            await service.StopAsync(default);
        }
    }

    [Fact]
    public async Task A_reminder_set_again_by_its_handler_is_not_deleted_by_the_completion()
    {
        await using var silo = new SiloHarness(o => { o.QrTtl = TimeSpan.FromSeconds(30); o.MaxRotations = 6; });
        var grain = silo.Grains.GetGrain<IQrSessionGrain>(Grains.Secrets.NewToken(16));
        var created = await grain.CreateAsync(new Requester("d", "browser", "b", "o", "1.1.1.1", DateTimeOffset.UnixEpoch), default);
        for (var rotation = 2; rotation <= 6; rotation++)
        {
            silo.Clock!.Advance(TimeSpan.FromSeconds(30));
            Assert.Equal(1, await silo.FireDueRemindersAsync());
            Assert.Equal(rotation, (await grain.GetSnapshotAsync(created.DesktopToken, default)).Qr!.Rotation);
        }
    }

    [Fact]
    public async Task A_watcher_that_missed_events_converges_on_the_snapshot_after_a_resync()
    {
        // The stream hub is not running: every event is lost, as if the notifications never arrived.
        await using var silo = new SiloHarness(o => { o.QrTtl = TimeSpan.FromSeconds(30); o.MaxRotations = 6; });
        var streams = silo.Services.GetRequiredService<IGrainStreams>();
        var sessionId = Grains.Secrets.NewToken(16);
        var grain = silo.Grains.GetGrain<IQrSessionGrain>(sessionId);
        var created = await grain.CreateAsync(new Requester("d", "browser", "b", "o", "1.1.1.1", DateTimeOffset.UnixEpoch), default);

        var (feed, first) = await SnapshotFeed.OpenAsync(silo.Grains, streams, sessionId, created.DesktopToken, default);
        using (feed)
        {
            await grain.ScanAsync(created.Snapshot.Qr!.Url.Split('.')[^1], "alice", "1.1.1.1", default);
            await grain.RejectAsync("alice", default);

            feed.OnResync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            var next = await feed.NextAsync(first.Version, timeout.Token);

            Assert.NotNull(next);
            Assert.Equal(3, next.Value.Version);
            Assert.Contains("\"state\":\"rejected\"", next.Value.Json, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Events_carry_the_version_they_commit_and_arrive_in_order()
    {
        var probe = new CounterProbe();
        await using var silo = Silo(probe);
        var hub = silo.Services.GetRequiredService<StreamHub>();
        await hub.StartAsync(default);
        try
        {
            var seen = new List<long>();
            var done = new TaskCompletionSource();
            using var sub = hub.Subscribe(new GrainId("counter", "c4"), new Observer(e =>
            {
                lock (seen)
                {
                    seen.Add(e.Version);
                    if (seen.Count == 100)
                    {
                        done.TrySetResult();
                    }
                }
            }));
            var grain = silo.Grains.GetGrain<ICounterGrain>("c4");
            await Task.WhenAll(Enumerable.Range(0, 100).Select(_ => grain.IncrementAsync(default)));
            await done.Task.WaitAsync(TimeSpan.FromSeconds(5));
            Assert.Equal(Enumerable.Range(1, 100).Select(i => (long)i), seen);
        }
        finally
        {
            await hub.StopAsync(default);
        }
    }

    private sealed class Observer(Action<StreamEvent> onNext) : IStreamObserver
    {
        public void OnNext(StreamEvent e) => onNext(e);

        public void OnResync() { }
    }
}
