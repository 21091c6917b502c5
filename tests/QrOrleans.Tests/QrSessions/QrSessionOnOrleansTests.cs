using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;
using QrOrleans.Grains.QrSessions;
using QrOrleans.QrSessions;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.QrSessions;

/// <summary>
/// The QR session on real Orleans silos (TestingHost, two silos, real clock): its timer, its reminder, the changes
/// it pushes to listening nodes, and its ETag fence.
/// </summary>
public sealed class QrSessionOnOrleansTests
{
    private static readonly Requester Desktop = new("d", "browser", "b", "o", "1.1.1.1", DateTimeOffset.UnixEpoch);

    private static async Task<(IQrSessionGrain Grain, SessionCreated Created)> NewSessionAsync(SiloHarness silo)
    {
        var grain = silo.Grains.GetGrain<IQrSessionGrain>(Grains.Secrets.NewToken(16));
        return (grain, await grain.CreateAsync(Desktop));
    }

    /// <summary>Every change of a session as a listener on each silo receives it.</summary>
    private static async Task<ConcurrentQueue<(int Silo, QrSessionChanged Change)>> FollowOnEverySiloAsync(SiloHarness silo, string sessionId)
    {
        var seen = new ConcurrentQueue<(int, QrSessionChanged)>();
        for (var i = 0; i < silo.Cluster.Silos.Count; i++)
        {
            var client = silo.Cluster.Silos[i].ServiceProvider.GetRequiredService<IClusterClient>();
            var listener = new Listener(i, seen);
            Listeners.Add(listener); // the runtime holds observers weakly
            await client.GetGrain<IQrSessionGrain>(sessionId).ListenAsync(client.CreateObjectReference<IQrSessionListener>(listener));
        }
        return seen;
    }

    private static readonly ConcurrentBag<Listener> Listeners = [];

    private sealed class Listener(int silo, ConcurrentQueue<(int, QrSessionChanged)> seen) : IQrSessionListener
    {
        public int AskedToListenAgain;

        public Task ChangedAsync(QrSessionChanged change)
        {
            seen.Enqueue((silo, change));
            return Task.CompletedTask;
        }

        public Task ListenAgainAsync(string sessionId)
        {
            Interlocked.Increment(ref AskedToListenAgain);
            return Task.CompletedTask;
        }
    }

    private static async Task Until(Func<bool> condition, TimeSpan within, string what)
    {
        var deadline = DateTime.UtcNow + within;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
    }

    [Fact]
    public async Task The_qr_rotates_on_the_grain_timer_once_per_ttl_with_nobody_calling()
    {
        await using var silo = await SiloHarness.StartAsync(o =>
        {
            // Each rotation must fire within one TTL of its due time, or the session skips it and expires: 400 ms
            // was once too little on a loaded 2-core CI machine (the timer came late and the versions were 1-3).
            o.QrTtl = TimeSpan.FromMilliseconds(1500);
            o.MaxRotations = 3;
        }, silos: 2, realClock: true);
        // Followed from before it exists, so the first rotation (only 1.5 s in) cannot be missed.
        var id = Grains.Secrets.NewToken(16);
        var seen = await FollowOnEverySiloAsync(silo, id);
        var grain = silo.Grains.GetGrain<IQrSessionGrain>(id);
        var created = await grain.CreateAsync(Desktop);

        // Created, rotations 2 and 3, then expired: versions 1 to 4, each once per consumer, with no call to the grain.
        await Until(() => seen.Count(c => c.Change.Snapshot.State == QrSessionStates.Expired) == 2, TimeSpan.FromSeconds(20), "expiry");
        foreach (var consumer in new[] { 0, 1 })
        {
            var versions = seen.Where(c => c.Silo == consumer).Select(c => c.Change.Version).ToArray();
            Assert.Equal([1L, 2L, 3L, 4L], versions);
        }
        Assert.Equal([1, 2, 3], seen.Where(c => c.Silo == 0 && c.Change.Snapshot.Qr is not null).Select(c => c.Change.Snapshot.Qr!.Rotation));
        Assert.Equal(4, (await grain.GetSnapshotAsync(created.DesktopToken)).Version);
    }

    [Fact]
    public async Task Events_carry_the_version_and_the_desktop_snapshot_to_a_consumer_on_another_silo_and_nothing_secret()
    {
        await using var silo = await SiloHarness.StartAsync(silos: 2, realClock: true);
        var (grain, created) = await NewSessionAsync(silo);
        var seen = await FollowOnEverySiloAsync(silo, created.SessionId);
        var secret = created.Snapshot.Qr!.Url.Split('.')[^1];
        await grain.ScanAsync(secret, "alice", "1.1.1.2");
        var number = (await grain.GetSnapshotAsync(created.DesktopToken)).NumberMatch!;
        await grain.ApproveAsync("alice", number);

        await Until(() => seen.Count(c => c.Change.Snapshot.State == QrSessionStates.Approved) == 2, TimeSpan.FromSeconds(5), "the approval on both silos");
        foreach (var (_, change) in seen)
        {
            Assert.Equal(change.Version, change.Snapshot.Version);
            var text = System.Text.Json.JsonSerializer.Serialize(change, GrainJson.Options);
            Assert.DoesNotContain("alice", text, StringComparison.Ordinal);
            Assert.DoesNotContain(created.DesktopToken, text, StringComparison.Ordinal);
            Assert.DoesNotContain(Grains.Secrets.Hash(secret), text, StringComparison.Ordinal);
        }
        Assert.Equal(number, seen.First(c => c.Change.Snapshot.State == QrSessionStates.Scanned).Change.Snapshot.NumberMatch);
    }

    [Fact]
    public async Task A_session_whose_activation_is_gone_is_brought_back_by_its_reminder_and_expires()
    {
        await using var silo = await SiloHarness.StartAsync(o =>
        {
            o.QrTtl = TimeSpan.FromMilliseconds(300);
            o.MaxRotations = 1;
        }, silos: 2, realClock: true);
        var (grain, created) = await NewSessionAsync(silo);
        Assert.Equal(["recovery"], await silo.RemindersOfAsync(grain));
        // As if its silo had died: the activation, and the timer in it, are gone; nobody calls.
        await silo.Cluster.DeactivateAsync(grain);

        // Read from storage, not through the grain (a call would catch up by itself): the reminder alone expires it.
        var storage = silo.Cluster.Silos[0].ServiceProvider.GetRequiredKeyedService<IGrainStorage>(OrleansNames.Storage);
        var stored = new Orleans.GrainState<QrSessionState>();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        do
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out waiting for the reminder to expire it");
            await Task.Delay(50, TestContext.Current.CancellationToken);
            await storage.ReadStateAsync("session", grain.GetGrainId(), stored);
        }
        while (stored.State?.State != QrSessionStates.Expired);
        Assert.Equal(QrSessionStates.Expired, (await grain.GetSnapshotAsync(created.DesktopToken)).State);
    }

    [Fact]
    public async Task A_running_session_whose_activation_goes_away_asks_its_listeners_to_listen_again()
    {
        await using var silo = await SiloHarness.StartAsync(silos: 2, realClock: true);
        var (grain, created) = await NewSessionAsync(silo);
        var client = silo.Cluster.Silos[1].ServiceProvider.GetRequiredService<IClusterClient>();
        var seen = new ConcurrentQueue<(int, QrSessionChanged)>();
        var listener = new Listener(1, seen);
        Listeners.Add(listener);
        await grain.ListenAsync(client.CreateObjectReference<IQrSessionListener>(listener));

        await silo.Cluster.DeactivateAsync(grain);

        await Until(() => Volatile.Read(ref listener.AskedToListenAgain) == 1, TimeSpan.FromSeconds(5), "the request to listen again");
        Assert.Equal(QrSessionStates.Pending, (await grain.GetSnapshotAsync(created.DesktopToken)).State);
    }

    [Fact]
    public async Task A_write_refused_for_its_etag_is_retried_on_fresh_state_and_the_caller_sees_the_newer_truth()
    {
        await using var silo = await SiloHarness.StartAsync(silos: 2, realClock: true);
        var (grain, created) = await NewSessionAsync(silo);
        var secret = created.Snapshot.Qr!.Url.Split('.')[^1];

        // Another activation (during a partition, say) cancels the session behind this activation's back.
        var storage = silo.Cluster.Silos[0].ServiceProvider.GetRequiredKeyedService<IGrainStorage>(OrleansNames.Storage);
        var stored = new Orleans.GrainState<QrSessionState>();
        await storage.ReadStateAsync("session", grain.GetGrainId(), stored);
        Assert.True(stored.RecordExists);
        stored.State = stored.State! with { State = QrSessionStates.Cancelled, EndedAt = DateTimeOffset.UtcNow, Version = stored.State.Version + 1 };
        await storage.WriteStateAsync("session", grain.GetGrainId(), stored);

        // The stale activation still thinks it is pending: its write is refused, it steps aside, the call runs again.
        var refusal = await Assert.ThrowsAsync<GrainException>(() => grain.ScanAsync(secret, "alice", "1.1.1.2"));
        Assert.Equal("qr_already_used", refusal.Code);
        var now = await grain.GetSnapshotAsync(created.DesktopToken);
        Assert.Equal(QrSessionStates.Cancelled, now.State);
        Assert.Equal(2, now.Version);
    }

    /// <summary>
    /// A node has one listener for all its sessions (GPSTracker's shape): a watch checks the desktop's token, lists the
    /// node and answers the snapshot in one call, the node then hears of each session it watches, and a watch with
    /// another session's token is refused and lists nothing.
    /// </summary>
    [Fact]
    public async Task One_listener_per_node_hears_each_session_it_watches_and_a_wrong_token_lists_nothing()
    {
        await using var silo = await SiloHarness.StartAsync(silos: 1, realClock: true);
        var client = silo.Cluster.Silos[0].ServiceProvider.GetRequiredService<IClusterClient>();
        var seen = new ConcurrentQueue<(int Silo, QrSessionChanged Change)>();
        var listener = new Listener(0, seen);
        Listeners.Add(listener);
        var node = client.CreateObjectReference<IQrSessionListener>(listener);
        var (a, createdA) = await NewSessionAsync(silo);
        var (b, createdB) = await NewSessionAsync(silo);
        var (c, createdC) = await NewSessionAsync(silo);

        Assert.Equal((createdA.SessionId, 1L), await a.WatchAsync(createdA.DesktopToken, node) is var wa ? (wa.SessionId, wa.Version) : default);
        await b.WatchAsync(createdB.DesktopToken, node);
        var refused = await Assert.ThrowsAsync<GrainException>(() => c.WatchAsync(createdB.DesktopToken, node));
        Assert.Equal("unauthenticated", refused.Code);

        await a.CancelAsync(createdA.DesktopToken);
        await b.CancelAsync(createdB.DesktopToken);
        await c.CancelAsync(createdC.DesktopToken);
        await Until(() => seen.Count >= 2, TimeSpan.FromSeconds(5), "the two cancellations");
        await Task.Delay(300); // a change of the session the node was refused for would arrive by now
        Assert.Equal(
            new[] { createdA.SessionId, createdB.SessionId }.Order(StringComparer.Ordinal),
            seen.Select(x => x.Change.Snapshot.SessionId).Order(StringComparer.Ordinal));
        Assert.All(seen, x => Assert.Equal(QrSessionStates.Cancelled, x.Change.Snapshot.State));
    }
}
