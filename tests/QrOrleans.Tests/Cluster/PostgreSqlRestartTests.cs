using System.Diagnostics;
using QrOrleans.Tests.Infrastructure;
using static QrOrleans.Tests.Cluster.ClusterCalls;

namespace QrOrleans.Tests.Cluster;

/// <summary>Tests that restart the shared PostgreSQL server: they run alone, after every parallel test.</summary>
[CollectionDefinition("PostgreSqlRestart", DisableParallelization = true)]
public sealed class PostgreSqlRestartCollection;

public sealed class TwoNodeCluster : ClusterFixture
{
    protected override int NodeCount => 2;
}

/// <summary>
/// PostgreSQL restarts in the middle of a ceremony: the nodes' pools reconnect, the LISTEN connection comes
/// back and yields a resync, so a desktop that was waiting is still told, and nothing is lost.
/// </summary>
[Collection("PostgreSqlRestart")]
public sealed class PostgreSqlRestartTests(TwoNodeCluster cluster) : IClassFixture<TwoNodeCluster>
{
    [Fact(Timeout = 90_000)]
    public Task A_desktop_waiting_through_a_postgresql_restart_is_still_told_and_claims() => cluster.RunAsync(async () =>
    {
        var (n1, n2) = (cluster[1], cluster[2]);
        var phone = await n1.Api.NewPhoneAsync();
        var session = await n1.Api.CreateSessionAsync();
        (await n2.Api.ScanAsync(phone.AccessToken, session.QrUrl)).EnsureStatus(200);
        await using var sse = await SseWatcher.OpenAsync(n1, session);
        var scanned = await sse.WaitForStateAsync("scanned", TimeSpan.FromSeconds(5));
        var number = scanned.Data.GetProperty("numberMatch").GetString()!;
        var poll = LongPollAsync(n1, session, scanned.Version, timeoutSeconds: 30);
        await Task.Delay(300);
        Assert.False(poll.IsCompleted);

        var restart = Stopwatch.StartNew();
        var pgCtl = await PostgresDatabase.RestartServerAsync("immediate");
        var restartedIn = restart.Elapsed;

        // The first calls after the restart may meet a pooled connection the restart broke: retry like a phone would.
        var approveWatch = Stopwatch.StartNew();
        var attempts = new List<string>();
        await ApproveUntilDoneAsync(n2, phone.AccessToken, session, number, attempts);
        var approvedAt = Stopwatch.GetTimestamp();
        var approveTook = approveWatch.Elapsed;

        var told = await sse.WaitForStateAsync("approved", TimeSpan.FromSeconds(15));
        var (polled, _) = await poll.WaitAsync(TimeSpan.FromSeconds(30));
        TestContext.Current.SendDiagnosticMessage(
            $"pg_ctl restart {restartedIn.TotalSeconds:F1} s; approve attempts [{string.Join(" | ", attempts)}] in {approveTook.TotalSeconds:F1} s; " +
            $"SSE told {Seconds(approvedAt, told.ReceivedAt) * 1000:F0} ms after; long-poll {polled.Status}; pg_ctl: {pgCtl.Trim().Replace('\n', ' ')}");
        polled.EnsureStatus(200);
        Assert.Equal("approved", polled.Body.GetProperty("state").GetString());
        Assert.Equal(scanned.Version + 1, told.Version);

        var claim = (await UntilNot5xxAsync(() => n1.Api.ClaimAsync(session), [])).EnsureStatus(200);
        Assert.Equal(phone.UserId, claim.Body.GetProperty("user").GetProperty("id").GetString());
        await sse.WaitForStateAsync("completed", TimeSpan.FromSeconds(10));

        // After the restart the cluster works as before: a whole new ceremony across both nodes.
        var next = await n2.Api.CreateSessionAsync();
        await using var nextSse = await SseWatcher.OpenAsync(n1, next);
        await n1.Api.ScanAndApproveAsync(phone.AccessToken, next);
        await nextSse.WaitForStateAsync("approved", TimeSpan.FromSeconds(5));
        (await n1.Api.ClaimAsync(next)).EnsureStatus(200);
    });

    [Fact(Timeout = 90_000)]
    public Task An_approval_committed_while_node_1_was_not_listening_reaches_its_desktop_through_the_resync() => cluster.RunAsync(async () =>
    {
        var (n1, n2) = (cluster[1], cluster[2]);
        var phone = await n1.Api.NewPhoneAsync();
        var session = await n1.Api.CreateSessionAsync();
        (await n2.Api.ScanAsync(phone.AccessToken, session.QrUrl)).EnsureStatus(200);
        await using var sse = await SseWatcher.OpenAsync(n1, session);
        var scanned = await sse.WaitForStateAsync("scanned", TimeSpan.FromSeconds(5));
        var number = scanned.Data.GetProperty("numberMatch").GetString()!;
        var poll = LongPollAsync(n1, session, scanned.Version, timeoutSeconds: 30);
        await Task.Delay(300);

        // A 3 s outage: node 1's LISTEN connection backs off (up to 2 s between attempts), so when the approval
        // commits right after the server is back, node 1 is most likely not listening yet and misses the NOTIFY.
        Reply? duringOutage;
        await PostgresDatabase.StopServerAsync();
        try
        {
            var one = Stopwatch.StartNew();
            duringOutage = await n2.Api.ApproveAsync(phone.AccessToken, session.SessionId, number);
            TestContext.Current.SendDiagnosticMessage($"approve during the outage: {duringOutage.Status} in {one.ElapsedMilliseconds} ms");
            await Task.Delay(TimeSpan.FromSeconds(3));
        }
        finally
        {
            await PostgresDatabase.StartServerAsync();
        }
        Assert.True(duringOutage.Status >= 500, $"approve while PostgreSQL was down: {duringOutage.Status} {duringOutage.Text}");

        var approveWatch = Stopwatch.StartNew();
        var attempts = new List<string>();
        await ApproveUntilDoneAsync(n2, phone.AccessToken, session, number, attempts);
        var approvedAt = Stopwatch.GetTimestamp();
        var approveTook = approveWatch.Elapsed;

        var told = await sse.WaitForStateAsync("approved", TimeSpan.FromSeconds(15));
        var (polled, polledAt) = await poll.WaitAsync(TimeSpan.FromSeconds(30));
        var cluster1 = await ClusterAsync(n1);
        TestContext.Current.SendDiagnosticMessage(
            $"outage: approve during it {duringOutage.Status}; after it [{string.Join(" | ", attempts)}] in {approveTook.TotalSeconds:F1} s; " +
            $"SSE told {Seconds(approvedAt, told.ReceivedAt) * 1000:F0} ms after, long-poll {Seconds(approvedAt, polledAt) * 1000:F0} ms after; " +
            $"silos after: {string.Join(", ", cluster1.GetProperty("silos").EnumerateArray().Select(x => x.GetProperty("address").GetString() + "=" + x.GetProperty("status").GetString()))}");
        polled.EnsureStatus(200);
        Assert.Equal("approved", polled.Body.GetProperty("state").GetString());
        Assert.Equal(scanned.Version + 1, told.Version);
        (await UntilNot5xxAsync(() => n1.Api.ClaimAsync(session), [])).EnsureStatus(200);
        await sse.WaitForStateAsync("completed", TimeSpan.FromSeconds(10));
    });

    /// <summary>
    /// Approves, retrying while the node answers 5xx (its pool meeting connections the restart broke), for at
    /// most 20 s. An attempt whose answer was lost may have committed: a retry then finds the session approved.
    /// </summary>
    private static async Task<Reply> ApproveUntilDoneAsync(ClusterNode node, string accessToken, NewSession session, string number, List<string> attempts)
    {
        var reply = await UntilNot5xxAsync(() => node.Api.ApproveAsync(accessToken, session.SessionId, number), attempts);
        Assert.True(reply.Status == 200 || (reply.Status == 409 && reply.Code == "qr_already_used" && attempts.Count > 1),
            $"approve after the restart: {string.Join(" | ", attempts)}");
        return reply;
    }

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
