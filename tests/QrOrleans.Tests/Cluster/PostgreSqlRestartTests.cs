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
        var pgCtl = await PostgresDatabase.RestartServerAsync("fast");
        var restartedIn = restart.Elapsed;

        // The first calls after the restart may meet a pooled connection the restart broke: retry like a phone would.
        var approveWatch = Stopwatch.StartNew();
        var attempts = new List<string>();
        Reply? approved = null;
        while (approveWatch.Elapsed < TimeSpan.FromSeconds(20))
        {
            try
            {
                var r = await n2.Api.ApproveAsync(phone.AccessToken, session.SessionId, number);
                attempts.Add($"{r.Status} {r.Code}");
                // An attempt whose answer was lost may have committed: a retry then finds the session approved.
                if (r.Status == 200 || (r.Status == 409 && r.Code == "qr_already_used" && attempts.Count > 1))
                {
                    approved = r;
                    break;
                }
                if (r.Status < 500)
                {
                    break;
                }
            }
            catch (HttpRequestException e)
            {
                attempts.Add(e.Message);
            }
            await Task.Delay(250);
        }
        Assert.True(approved is not null, $"approve after the restart: {string.Join(" | ", attempts)}");
        var approvedAt = Stopwatch.GetTimestamp();

        var told = await sse.WaitForStateAsync("approved", TimeSpan.FromSeconds(15));
        var (polled, _) = await poll.WaitAsync(TimeSpan.FromSeconds(30));
        TestContext.Current.SendDiagnosticMessage(
            $"pg_ctl restart {restartedIn.TotalSeconds:F1} s; approve attempts [{string.Join(" | ", attempts)}] in {approveWatch.Elapsed.TotalSeconds:F1} s; " +
            $"SSE told {Seconds(approvedAt, told.ReceivedAt) * 1000:F0} ms after; long-poll {polled.Status}; pg_ctl: {pgCtl.Trim().Replace('\n', ' ')}");
        polled.EnsureStatus(200);
        Assert.Equal("approved", polled.Body.GetProperty("state").GetString());
        Assert.Equal(scanned.Version + 1, told.Version);

        Reply? claim = null;
        for (var i = 0; i < 40 && claim?.Status is null or >= 500; i++)
        {
            claim = await n1.Api.ClaimAsync(session);
            if (claim.Status >= 500)
            {
                await Task.Delay(250);
            }
        }
        claim!.EnsureStatus(200);
        Assert.Equal(phone.UserId, claim.Body.GetProperty("user").GetProperty("id").GetString());
        await sse.WaitForStateAsync("completed", TimeSpan.FromSeconds(10));

        // After the restart the cluster works as before: a whole new ceremony across both nodes.
        var next = await n2.Api.CreateSessionAsync();
        await using var nextSse = await SseWatcher.OpenAsync(n1, next);
        await n1.Api.ScanAndApproveAsync(phone.AccessToken, next);
        await nextSse.WaitForStateAsync("approved", TimeSpan.FromSeconds(5));
        (await n1.Api.ClaimAsync(next)).EnsureStatus(200);
    });
}
