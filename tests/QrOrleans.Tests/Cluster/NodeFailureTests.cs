using System.Diagnostics;
using static QrOrleans.Tests.Cluster.ClusterCalls;

namespace QrOrleans.Tests.Cluster;

public sealed class NodeFailureCluster : ClusterFixture;

/// <summary>
/// A node dies without a word (kill -9): nothing of the ceremony lived in it (state, reminders and events are in
/// PostgreSQL), so the other nodes finish it; and the membership table marks the silent node dead.
/// </summary>
[Collection("Cluster")]
public sealed class NodeFailureTests(NodeFailureCluster cluster) : IClassFixture<NodeFailureCluster>
{
    [Fact(Timeout = 60_000)]
    public Task Killing_the_node_that_served_the_scan_leaves_the_ceremony_to_the_others_and_the_node_is_marked_dead() => cluster.RunAsync(async () =>
    {
        var (n1, n2, n3) = (cluster[1], cluster[2], cluster[3]);
        // All three have joined (a node registers its address within a heartbeat of listening).
        await EventuallyAsync(TimeSpan.FromSeconds(5), async () =>
        {
            var view = await ClusterAsync(n1);
            return cluster.Nodes.All(n => SiloOf(view, n)?.GetProperty("status").GetString() == "active");
        }, "all three silos active");

        var phone = await n1.Api.NewPhoneAsync();
        var session = await n1.Api.CreateSessionAsync();
        await using var sse = await SseWatcher.OpenAsync(n1, session);
        await sse.WaitForStateAsync("pending", TimeSpan.FromSeconds(5));
        (await n2.Api.ScanAsync(phone.AccessToken, session.QrUrl)).EnsureStatus(200);

        n2.Kill();
        var killedAt = Stopwatch.GetTimestamp();
        Assert.True(n2.HasExited);

        var number = (await n1.Api.SnapshotAsync(session)).EnsureStatus(200).Body.GetProperty("numberMatch").GetString()!;
        (await n3.Api.ApproveAsync(phone.AccessToken, session.SessionId, number)).EnsureStatus(200);
        await sse.WaitForStateAsync("approved", TimeSpan.FromSeconds(5));
        var claim = (await n1.Api.ClaimAsync(session)).EnsureStatus(200);
        Assert.Equal(phone.UserId, claim.Body.GetProperty("user").GetProperty("id").GetString());
        (await n3.Api.SendAsync(HttpMethod.Get, "/v1/me", null, claim.Body.GetProperty("accessToken").GetString())).EnsureStatus(200);

        // DeadAfter is 3 s with heartbeats every 0.5 s: a surviving node marks node 2 dead soon after.
        System.Text.Json.JsonElement? last = null;
        await EventuallyAsync(TimeSpan.FromSeconds(10), async () =>
        {
            last = await ClusterAsync(n3);
            return SiloOf(last.Value, n2)?.GetProperty("status").GetString() == "dead";
        }, $"{n2} marked dead");
        var deadAfter = Stopwatch.GetElapsedTime(killedAt).TotalSeconds;
        TestContext.Current.SendDiagnosticMessage($"node 2 marked dead {deadAfter:F1} s after kill -9");
        Assert.True(deadAfter <= 8.5, $"marked dead only {deadAfter:F1} s after the kill");
        Assert.Equal("active", SiloOf(last!.Value, n1)?.GetProperty("status").GetString());
        Assert.Equal("active", SiloOf(last!.Value, n3)?.GetProperty("status").GetString());
        Assert.Equal(1, last!.Value.GetProperty("grains").GetProperty("qrSession").GetProperty("completed").GetInt32());

        // Node 1 sees the same membership, and the dead stays dead.
        await Task.Delay(1200);
        Assert.Equal("dead", SiloOf(await ClusterAsync(n1), n2)?.GetProperty("status").GetString());
    });

    private static async Task EventuallyAsync(TimeSpan timeout, Func<Task<bool>> condition, string what)
    {
        var watch = Stopwatch.StartNew();
        while (!await condition())
        {
            if (watch.Elapsed > timeout)
            {
                throw new Xunit.Sdk.XunitException($"Not within {timeout.TotalSeconds} s: {what}");
            }
            await Task.Delay(200);
        }
    }
}
