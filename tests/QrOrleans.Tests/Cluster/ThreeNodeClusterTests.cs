using System.Diagnostics;
using Microsoft.Playwright;
using QrOrleans.Tests.Browser;
using static Microsoft.Playwright.Assertions;
using static QrOrleans.Tests.Cluster.ClusterCalls;

namespace QrOrleans.Tests.Cluster;

/// <summary>
/// The cluster test classes run one after another (each starts its own node processes; two cores), in parallel
/// with the rest of the suite. Each class is a cluster of its own (a unique ClusterId and ServiceId) on the shared
/// test Redis.
/// </summary>
[CollectionDefinition("Cluster")]
public sealed class ClusterCollection;

public sealed class ThreeNodeCluster : ClusterFixture;

/// <summary>
/// Three real gateway processes, each co-hosting a silo of one Orleans cluster on the test Redis: a ceremony whose
/// steps land on different nodes, told to the desktop live (SSE, long-poll, SignalR in a real browser) through the
/// session's Orleans stream, and single activation deciding a race between nodes.
/// </summary>
[Collection("Cluster")]
public sealed class ThreeNodeClusterTests(ThreeNodeCluster cluster) : IClassFixture<ThreeNodeCluster>
{
    /// <summary>
    /// A node keeps a device's "active" for a few seconds (so a phone's calls cost no grain call each); a sign-out on
    /// one node is announced on the revocation stream, so the nodes that had just let the device in refuse it within
    /// a second. Five devices in a row, each checked on both other nodes.
    /// </summary>
    [Fact(Timeout = 90_000)]
    public Task A_device_signed_out_on_one_node_is_refused_within_a_second_on_nodes_that_had_just_let_it_in() => cluster.RunAsync(async () =>
    {
        var (n1, n2, n3) = (cluster[1], cluster[2], cluster[3]);
        foreach (var viewer in cluster.Nodes)
        {
            await AllActiveAsync(viewer, cluster.Nodes, TimeSpan.FromSeconds(15));
        }
        var phone = await n1.Api.NewPhoneAsync();
        var slowest = 0.0;
        for (var round = 0; round < 5; round++)
        {
            var tablet = (await n1.Api.SendAsync(HttpMethod.Post, $"/v1/admin/users/{phone.UserId}/devices", new { name = $"Tablet {round}", kind = "tablet" },
                apiKey: ClusterNode.AdminKey)).EnsureStatus(201).Body;
            var token = tablet.GetProperty("accessToken").GetString()!;
            var deviceId = tablet.GetProperty("device").GetProperty("id").GetString()!;
            (await n2.Api.SendAsync(HttpMethod.Get, "/v1/me", null, token)).EnsureStatus(200);
            (await n3.Api.SendAsync(HttpMethod.Get, "/v1/me", null, token)).EnsureStatus(200);

            (await n1.Api.SendAsync(HttpMethod.Delete, "/v1/devices/" + deviceId, null, phone.AccessToken)).EnsureStatus(204);
            var revokedAt = Stopwatch.GetTimestamp();
            Assert.Equal(401, (await n1.Api.SendAsync(HttpMethod.Get, "/v1/me", null, token)).Status); // the node that signed it out: at once
            foreach (var node in new[] { n2, n3 })
            {
                while ((await node.Api.SendAsync(HttpMethod.Get, "/v1/me", null, token)).Status == 200)
                {
                    Assert.True(Seconds(revokedAt, Stopwatch.GetTimestamp()) < 1.0, $"round {round}: a node still let the signed-out device in after a second");
                    await Task.Delay(20);
                }
                slowest = Math.Max(slowest, Seconds(revokedAt, Stopwatch.GetTimestamp()));
            }
        }
        Diagnostics.Report($"device sign-out on node 1 -> refused on nodes 2 and 3: slowest {slowest * 1000:F0} ms");
    });

    [Fact(Timeout = 60_000)]
    public Task A_ceremony_spread_over_three_nodes_reaches_the_desktop_on_node_1_within_a_second() => cluster.RunAsync(async () =>
    {
        var (n1, n2, n3) = (cluster[1], cluster[2], cluster[3]);
        foreach (var viewer in cluster.Nodes)
        {
            await AllActiveAsync(viewer, cluster.Nodes, TimeSpan.FromSeconds(15));
        }
        var phone = await n3.Api.NewPhoneAsync();
        var session = await n1.Api.CreateSessionAsync();
        await using var sse = await SseWatcher.OpenAsync(n1, session);
        var first = await sse.NextAsync(TimeSpan.FromSeconds(5));
        Assert.Equal(("state", 1L, "pending"), (first.Event, first.Id, first.State));

        var scannedPoll = LongPollAsync(n1, session, 1);
        (await n2.Api.ScanAsync(phone.AccessToken, session.QrUrl)).EnsureStatus(200);
        var scanned = await sse.WaitForStateAsync("scanned", TimeSpan.FromSeconds(5));
        var number = scanned.Data.GetProperty("numberMatch").GetString()!;
        var polledScan = (await scannedPoll.WaitAsync(TimeSpan.FromSeconds(5))).Reply.EnsureStatus(200);
        Assert.Equal(("scanned", 2L), (polledScan.Body.GetProperty("state").GetString(), polledScan.Body.GetProperty("version").GetInt64()));
        Assert.Equal(number, polledScan.Body.GetProperty("numberMatch").GetString());

        var approvedPoll = LongPollAsync(n1, session, 2);
        await Task.Delay(200); // the long-poll is waiting on node 1, not answered by a read after the approval
        Assert.False(approvedPoll.IsCompleted);
        var approve = (await n3.Api.ApproveAsync(phone.AccessToken, session.SessionId, number)).EnsureStatus(200);
        var approvedAt = Stopwatch.GetTimestamp();
        Assert.Equal("approved", approve.Body.GetProperty("state").GetString());

        var approved = await sse.WaitForStateAsync("approved", TimeSpan.FromSeconds(5));
        var (polled, polledAt) = await approvedPoll.WaitAsync(TimeSpan.FromSeconds(5));
        polled.EnsureStatus(200);
        Assert.Equal(("approved", 3L), (polled.Body.GetProperty("state").GetString(), polled.Body.GetProperty("version").GetInt64()));
        Assert.Equal(3L, approved.Version);
        var sseDelay = Seconds(approvedAt, approved.ReceivedAt);
        var pollDelay = Seconds(approvedAt, polledAt);
        Assert.True(sseDelay < 1.0, $"SSE told the desktop {sseDelay:F3} s after the approval");
        Assert.True(pollDelay < 1.0, $"The long-poll answered {pollDelay:F3} s after the approval");
        Diagnostics.Report($"approve on node 3 -> node 1: SSE {sseDelay * 1000:F1} ms, long-poll {pollDelay * 1000:F1} ms");

        var claim = (await n1.Api.ClaimAsync(session)).EnsureStatus(200);
        Assert.Equal(phone.UserId, claim.Body.GetProperty("user").GetProperty("id").GetString());
        var completed = await sse.WaitForStateAsync("completed", TimeSpan.FromSeconds(5));
        Assert.Equal(4L, completed.Version);
        Assert.Equal([1L, 2L, 3L, 4L], sse.Events.Select(e => e.Version));

        // The new device's tokens work on every node.
        var access = claim.Body.GetProperty("accessToken").GetString()!;
        foreach (var node in cluster.Nodes)
        {
            (await node.Api.SendAsync(HttpMethod.Get, "/v1/me", null, access)).EnsureStatus(200);
        }
        Assert.Equal(410, (await n2.Api.ClaimAsync(session)).Status);
    });

    [Fact(Timeout = 90_000)]
    public Task The_desktop_page_on_node_1_signs_in_live_over_signalr_when_nodes_2_and_3_scan_and_approve() => cluster.RunAsync(async () =>
    {
        var (n1, n2, n3) = (cluster[1], cluster[2], cluster[3]);
        var username = "u" + Guid.NewGuid().ToString("N")[..12];
        var phone = await n2.Api.NewPhoneAsync(username);
        await using var chromium = await Chromium.LaunchAsync();
        await using var context = await chromium.Browser.NewContextAsync(new BrowserNewContextOptions { BaseURL = n1.BaseAddress.ToString() });
        context.SetDefaultTimeout(15_000);
        var page = await context.NewPageAsync();
        var errors = new List<string>();
        page.PageError += (_, e) => errors.Add(e);
        await page.GotoAsync("/");
        var main = page.Locator("main#desktop");
        await Expect(main).ToHaveAttributeAsync("data-state", "pending", new() { Timeout = 15_000 });
        await Expect(page.Locator("#qr[data-url] svg")).ToBeVisibleAsync(new() { Timeout = 15_000 });
        await Expect(main).ToHaveAttributeAsync("data-transport", "WebSockets", new() { Timeout = 15_000 });
        var url = (await page.Locator("#qr[data-url]").GetAttributeAsync("data-url"))!;
        var sessionId = (await main.GetAttributeAsync("data-session-id"))!;
        Assert.StartsWith($"{n1.BaseAddress}l/#{sessionId}.", url, StringComparison.Ordinal);

        var scan = (await n2.Api.ScanAsync(phone.AccessToken, url)).EnsureStatus(200);
        Assert.Equal(sessionId, scan.Body.GetProperty("sessionId").GetString());
        await Expect(main).ToHaveAttributeAsync("data-state", "scanned", new() { Timeout = 5_000 });
        var number = (await page.Locator("#number-match").TextContentAsync())!.Trim();
        Assert.Contains(number, scan.Body.GetProperty("numberChoices").EnumerateArray().Select(e => e.GetString()));

        (await n3.Api.ApproveAsync(phone.AccessToken, sessionId, number)).EnsureStatus(200);
        var approvedAt = Stopwatch.GetTimestamp();
        await Expect(main).ToHaveAttributeAsync("data-state", "signed-in", new() { Timeout = 5_000 });
        Diagnostics.Report($"SignalR page on node 1 signed in {Stopwatch.GetElapsedTime(approvedAt).TotalMilliseconds:F0} ms after the approval on node 3");
        await Expect(page.Locator("#user-name")).ToHaveTextAsync("User " + username);
        Assert.Empty(errors);
    });

    [Fact(Timeout = 120_000)]
    public Task Two_phones_scanning_one_code_through_two_nodes_at_once_exactly_one_wins_100_times() => cluster.RunAsync(async () =>
    {
        var nodes = cluster.Nodes;
        var a = await nodes[0].Api.NewPhoneAsync();
        var b = await nodes[1].Api.NewPhoneAsync();
        var wins = new Dictionary<string, int> { ["a"] = 0, ["b"] = 0 };
        var watch = Stopwatch.StartNew();
        for (var i = 0; i < 100; i++)
        {
            var (nodeA, nodeB, desktop) = (nodes[i % 3], nodes[(i + 1) % 3], nodes[(i + 2) % 3]);
            var session = await desktop.Api.CreateSessionAsync();
            var go = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var scanA = Task.Run(async () => { await go.Task; return await nodeA.Api.ScanAsync(a.AccessToken, session.QrUrl); });
            var scanB = Task.Run(async () => { await go.Task; return await nodeB.Api.ScanAsync(b.AccessToken, session.QrUrl); });
            go.SetResult();
            var replies = await Task.WhenAll(scanA, scanB);
            var outcome = replies.Select(r => (r.Status, r.Code)).ToList();
            Assert.True(
                outcome.Count(o => o.Status == 200) == 1 && outcome.Count(o => o == (409, "qr_already_scanned")) == 1,
                $"round {i} ({nodeA.Name} vs {nodeB.Name}): {string.Join(" | ", replies.Select(r => $"{r.Status} {r.Text}"))}");
            var winner = replies[0].Status == 200 ? "a" : "b";
            wins[winner]++;
            Assert.Equal(session.SessionId, replies[winner == "a" ? 0 : 1].Body.GetProperty("sessionId").GetString());

            var snapshot = (await desktop.Api.SnapshotAsync(session)).EnsureStatus(200);
            Assert.Equal(("scanned", 2L), (snapshot.Body.GetProperty("state").GetString(), snapshot.Body.GetProperty("version").GetInt64()));
            // Only the winner may approve.
            var loser = winner == "a" ? (b, nodeB) : (a, nodeA);
            Assert.Equal(403, (await loser.Item2.Api.ApproveAsync(loser.Item1.AccessToken, session.SessionId, snapshot.Body.GetProperty("numberMatch").GetString()!)).Status);
        }
        Diagnostics.Report($"100 cross-node scan races in {watch.Elapsed.TotalSeconds:F1} s; wins a={wins["a"]} b={wins["b"]}");
    });
}
