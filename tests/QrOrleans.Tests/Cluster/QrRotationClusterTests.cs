using System.Diagnostics;
using System.Text.Json;

namespace QrOrleans.Tests.Cluster;

public sealed class FastRotationCluster : ClusterFixture
{
    protected override IEnumerable<string> ExtraArgs => ["--QrOrleans:QrSession:QrTtl=00:00:01", "--QrOrleans:QrSession:MaxRotations=6"];
}

/// <summary>
/// The QR code rotates on a grain timer of the session's one activation (single activation across the cluster),
/// so with a 1 s TTL on three nodes it rotates once per TTL for the whole cluster, not once per node, and expires
/// after its last code. The desktop watches on another node than the one that created the session.
/// </summary>
[Collection("Cluster")]
public sealed class QrRotationClusterTests(FastRotationCluster cluster) : IClassFixture<FastRotationCluster>
{
    [Fact(Timeout = 60_000)]
    public Task The_qr_rotates_once_per_ttl_across_three_nodes_not_once_per_node() => cluster.RunAsync(async () =>
    {
        var (n1, n2, n3) = (cluster[1], cluster[2], cluster[3]);
        var started = Stopwatch.GetTimestamp();
        var session = await n1.Api.CreateSessionAsync();
        await using var sse = await SseWatcher.OpenAsync(n2, session);

        var untilMark = TimeSpan.FromSeconds(4.5) - Stopwatch.GetElapsedTime(started);
        await Task.Delay(untilMark > TimeSpan.Zero ? untilMark : TimeSpan.Zero);
        var snapshot = (await n3.Api.SnapshotAsync(session)).EnsureStatus(200).Body;
        var rotation = snapshot.GetProperty("qr").GetProperty("rotation").GetInt32();
        Assert.Equal("pending", snapshot.GetProperty("state").GetString());
        Assert.True(rotation is 4 or 5, $"after 4.5 s with a 1 s TTL the code is at rotation {rotation} (expected 4 or 5); SSE saw {sse.Describe()}");
        Assert.Equal(rotation, snapshot.GetProperty("version").GetInt64());

        // Then the rest of the session: rotations up to 6, then expiry at the session deadline (6 x TTL).
        var expired = await sse.WaitForStateAsync("expired", TimeSpan.FromSeconds(8));
        var events = sse.Events;
        Diagnostics.Report("rotation over SSE: " + string.Join(", ", events.Select(e =>
            $"v{e.Version} {e.State} r{e.Rotation} @{ClusterCalls.Seconds(started, e.ReceivedAt):F2}s")));

        // Versions up to 7 exactly once each, in order: 6 codes (one create + 5 rotations), then expired. The stream
        // starts with the snapshot current when it opened: version 1 (2 only if opening it took a whole TTL).
        var firstSeen = events[0].Version;
        Assert.True(firstSeen <= 2, $"the stream opened at version {firstSeen}");
        Assert.Equal(Enumerable.Range((int)firstSeen, 8 - (int)firstSeen).Select(v => (long)v), events.Select(e => e.Version));
        Assert.Equal(7L, expired.Version);
        var pending = events.Where(e => e.State == "pending").ToList();
        Assert.Equal(Enumerable.Range((int)firstSeen, 7 - (int)firstSeen), pending.Select(e => e.Rotation!.Value));
        Assert.All(pending, e => Assert.Equal(e.Version, (long)e.Rotation!.Value));
        Assert.All(pending, e => Assert.Equal(e.Version, e.Id));

        // Each code lives a full TTL: a rotation happens only once its predecessor expired, never twice per TTL.
        var expiries = pending.Select(e => e.Data.GetProperty("qr").GetProperty("expiresAt").GetDateTimeOffset()).ToList();
        for (var i = 1; i < expiries.Count; i++)
        {
            Assert.True(expiries[i] - expiries[i - 1] >= TimeSpan.FromSeconds(1),
                $"code {i + 1} expires {(expiries[i] - expiries[i - 1]).TotalMilliseconds} ms after code {i}");
        }
        // All the codes are different.
        Assert.Equal(pending.Count, pending.Select(e => e.Data.GetProperty("qr").GetProperty("url").GetString()).Distinct().Count());

        // Nothing fires after the end: no eighth version.
        await Task.Delay(1500);
        Assert.Equal(events.Count, sse.Events.Count);
        var final = (await n1.Api.SnapshotAsync(session)).EnsureStatus(200).Body;
        Assert.Equal(("expired", 7L), (final.GetProperty("state").GetString(), final.GetProperty("version").GetInt64()));
        Assert.False(final.TryGetProperty("qr", out var qr) && qr.ValueKind != JsonValueKind.Null);
    });
}
