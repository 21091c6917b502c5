using System.Diagnostics;
using QrOrleans.Tests.Infrastructure;
using static QrOrleans.Tests.Cluster.ClusterCalls;

namespace QrOrleans.Tests.Cluster;

/// <summary>Tests that restart the shared test Redis: they run alone, after every parallel test.</summary>
[CollectionDefinition("RedisRestart", DisableParallelization = true)]
public sealed class RedisRestartCollection;

public sealed class RedisRestartCluster : ClusterFixture
{
    protected override IReadOnlyList<NodeKind> Kinds => [NodeKind.Gateway, NodeKind.Gateway];

    // Room for two node restarts between a scan and its approval.
    protected override IEnumerable<string> ExtraArgs => ["--QrOrleans:QrSession:ApprovalWindow=00:03:00"];
}

/// <summary>
/// Redis (the cluster's membership, grain state and reminders) shuts down and starts again on its append-only file:
/// the nodes say they are not ready while it is gone, reconnect, a desktop that was waiting all along is still told
/// of the approval, and a session created before the restart is still in Redis (read back by freshly started nodes).
/// </summary>
[Collection("RedisRestart")]
public sealed class RedisRestartTests(RedisRestartCluster cluster) : IClassFixture<RedisRestartCluster>
{
    [Fact(Timeout = 180_000)]
    public Task A_redis_restart_keeps_the_sessions_and_a_waiting_desktop_still_learns_of_the_approval() => cluster.RunAsync(async () =>
    {
        var (n1, n2) = (cluster[1], cluster[2]);
        await AllActiveAsync(n1, cluster.Nodes, TimeSpan.FromSeconds(15));
        var phone = await n1.Api.NewPhoneAsync();

        // A: a desktop on node 1 waits (SSE and long-poll) through the restart for the approval.
        var a = await n1.Api.CreateSessionAsync();
        (await n2.Api.ScanAsync(phone.AccessToken, a.QrUrl)).EnsureStatus(200);
        await using var sse = await SseWatcher.OpenAsync(n1, a);
        var scanned = await sse.WaitForStateAsync("scanned", TimeSpan.FromSeconds(5));
        var numberA = scanned.Data.GetProperty("numberMatch").GetString()!;
        // B: created and scanned before the restart, read back after it by nodes that were started after it.
        var b = await n2.Api.CreateSessionAsync();
        (await n1.Api.ScanAsync(phone.AccessToken, b.QrUrl)).EnsureStatus(200);
        var before = (await n2.Api.SnapshotAsync(b)).EnsureStatus(200).Body;
        var numberB = before.GetProperty("numberMatch").GetString()!;

        var poll = LongPollAsync(n1, a, scanned.Version, timeoutSeconds: 30);
        await Task.Delay(300);
        Assert.False(poll.IsCompleted);

        // Redis goes away (SHUTDOWN fsyncs the append-only file): the nodes are not ready while it is gone.
        var outage = Stopwatch.StartNew();
        await TestRedis.ShutdownAsync();
        Reply? notReady = null;
        await Diagnostics.EventuallyAsync(TimeSpan.FromSeconds(10), async () => (notReady = await n1.ReadyzAsync()).Status == 503,
            () => $"node 1 /readyz 503 while Redis is down (last: {notReady?.Status} {notReady?.Text})");
        Diagnostics.Report($"Redis down: node 1 /readyz {notReady!.Status} {notReady.Text}");
        Assert.Equal("not_ready", notReady.Body.GetProperty("status").GetString());
        var redis = notReady.Body.GetProperty("checks").EnumerateArray().Single(c => c.GetProperty("name").GetString() == "redis");
        Assert.Equal(("Unhealthy", false), (redis.GetProperty("status").GetString(), redis.GetProperty("healthy").GetBoolean()));
        await TestRedis.StartAsync();
        Diagnostics.Report($"Redis was down {outage.Elapsed.TotalSeconds:F1} s");
        var back = Stopwatch.StartNew();
        foreach (var node in cluster.Nodes)
        {
            await node.WaitUntilReadyAsync(TimeSpan.FromSeconds(30));
        }
        Diagnostics.Report($"both nodes ready again {back.Elapsed.TotalSeconds:F1} s after Redis answered");

        // The approval (retried like a phone would while the nodes reconnect) reaches the desktop that waited.
        var attempts = new List<string>();
        var approve = await UntilNot5xxAsync(() => n2.Api.ApproveAsync(phone.AccessToken, a.SessionId, numberA), attempts);
        Assert.True(approve.Status == 200 || (approve.Status == 409 && attempts.Count > 1), $"approve after the restart: {string.Join(" | ", attempts)}");
        var approvedAt = Stopwatch.GetTimestamp();
        var told = await sse.WaitForStateAsync("approved", TimeSpan.FromSeconds(10));
        var (polled, polledAt) = await poll.WaitAsync(TimeSpan.FromSeconds(35));
        Diagnostics.Report($"approve attempts after the restart [{string.Join(" | ", attempts)}]; SSE told {Seconds(approvedAt, told.ReceivedAt) * 1000:F0} ms after, " +
            $"long-poll {polled.Status} {Seconds(approvedAt, polledAt) * 1000:F0} ms after");
        Assert.Equal(scanned.Version + 1, told.Version);
        polled.EnsureStatus(200);
        Assert.Equal("approved", polled.Body.GetProperty("state").GetString());
        var claim = (await UntilNot5xxAsync(() => n1.Api.ClaimAsync(a), [])).EnsureStatus(200);
        Assert.Equal(phone.UserId, claim.Body.GetProperty("user").GetProperty("id").GetString());
        await sse.WaitForStateAsync("completed", TimeSpan.FromSeconds(10));

        // Every process of the cluster dies and starts again: nothing is left in memory, so what B answers now was
        // read from Redis, which kept it across its own restart.
        n1.Kill();
        n2.Kill();
        await Task.WhenAll(n1.RestartAsync(), n2.RestartAsync());
        var after = (await UntilNot5xxAsync(() => n1.Api.SnapshotAsync(b), [])).EnsureStatus(200).Body;
        Assert.Equal(("scanned", 2L, numberB), (after.GetProperty("state").GetString(), after.GetProperty("version").GetInt64(), after.GetProperty("numberMatch").GetString()));
        await using var sseB = await SseWatcher.OpenAsync(n2, b);
        await sseB.WaitForStateAsync("scanned", TimeSpan.FromSeconds(5));
        (await n1.Api.ApproveAsync(phone.AccessToken, b.SessionId, numberB)).EnsureStatus(200);
        await sseB.WaitForStateAsync("approved", TimeSpan.FromSeconds(5));
        var claimB = (await n2.Api.ClaimAsync(b)).EnsureStatus(200);
        // The user, its devices and the signing key came back from Redis too: the tokens minted after work on both.
        foreach (var node in cluster.Nodes)
        {
            (await node.Api.SendAsync(HttpMethod.Get, "/v1/me", null, claimB.Body.GetProperty("accessToken").GetString())).EnsureStatus(200);
            (await node.Api.SendAsync(HttpMethod.Get, "/v1/me", null, claim.Body.GetProperty("accessToken").GetString())).EnsureStatus(200);
        }
    }, lines: 60);

    /// <summary>Retries while the node answers 5xx (its connections to Redis coming back), for at most 20 s.</summary>
    private static async Task<Reply> UntilNot5xxAsync(Func<Task<Reply>> call, List<string> attempts)
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                var one = Stopwatch.StartNew();
                var reply = await call();
                attempts.Add($"{reply.Status} {reply.Code} in {one.ElapsedMilliseconds} ms");
                if (reply.Status < 500 || watch.Elapsed > TimeSpan.FromSeconds(20))
                {
                    return reply;
                }
            }
            catch (HttpRequestException e) when (watch.Elapsed < TimeSpan.FromSeconds(20))
            {
                attempts.Add(e.Message);
            }
            await Task.Delay(100);
        }
    }
}
