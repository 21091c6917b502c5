using System.Text.RegularExpressions;
using Microsoft.Playwright;
using QrOrleans.Tests.Browser;
using QrOrleans.Tests.Cluster;
using static Microsoft.Playwright.Assertions;

namespace QrOrleans.Tests.Dashboard;

public sealed class TwoNodeDashboardCluster : ClusterFixture
{
    protected override IReadOnlyList<NodeKind> Kinds => [NodeKind.Gateway, NodeKind.Gateway];
}

/// <summary>
/// Two real gateway processes co-hosting the two silos of one Orleans cluster on the test Redis: the dashboard of
/// node 1 lists both silos from Orleans membership and adds up what node 2's silo published about a ceremony it
/// served, live, without a reload.
/// </summary>
[Collection("Cluster")]
public sealed class TwoNodeDashboardTests(TwoNodeDashboardCluster cluster) : IClassFixture<TwoNodeDashboardCluster>
{
    [Fact(Timeout = 120_000)]
    public Task The_dashboard_of_node_1_lists_both_silos_and_counts_a_ceremony_served_by_node_2() => cluster.RunAsync(async () =>
    {
        var (n1, n2) = (cluster[1], cluster[2]);
        Assertions.SetDefaultExpectTimeout(BrowserFixture.TimeoutMs);
        await using var chromium = await Chromium.LaunchAsync();
        await using var context = await chromium.Browser.NewContextAsync(new BrowserNewContextOptions
        {
            BaseURL = n1.BaseAddress.ToString(),
            ViewportSize = new ViewportSize { Width = 1240, Height = 900 },
        });
        context.SetDefaultTimeout(BrowserFixture.TimeoutMs);
        var page = await context.NewPageAsync();
        var errors = new List<string>();
        page.PageError += (_, e) => errors.Add(e);
        var main = page.Locator("main#dashboard");

        await page.GotoAsync("/dashboard");
        await page.Locator("#key").FillAsync(ClusterNode.AdminKey);
        await page.Locator("#sign-in button[type=submit]").ClickAsync();
        await Expect(main).ToHaveAttributeAsync("data-state", "live");

        // Orleans names a silo "address:port@generation"; each node's silo listens on its own SiloPort.
        var silo1 = page.Locator($"#silos tr[data-silo-id^=\"127.0.0.1:{n1.SiloPort}@\"]");
        var silo2 = page.Locator($"#silos tr[data-silo-id^=\"127.0.0.1:{n2.SiloPort}@\"]");
        await Expect(page.Locator("#silos tr")).ToHaveCountAsync(2);
        await Expect(silo1).ToContainTextAsync("(this node)");
        await Expect(silo1).ToHaveAttributeAsync("data-status", "Active");
        await Expect(silo2).ToHaveAttributeAsync("data-status", "Active");
        await Expect(silo2).Not.ToContainTextAsync("(this node)");
        await Expect(silo2.Locator(".gateway")).ToHaveTextAsync(n2.BaseAddress.ToString().TrimEnd('/'));

        var completed = await page.Locator("#sessions li[data-state=completed] .count").TextContentAsync();
        var ceremonies = await page.Locator("#ceremonies-window").TextContentAsync();

        // The phone's steps on node 2, the desktop following on node 1 (subscribed once its first event arrived).
        var phone = await n2.Api.NewPhoneAsync();
        var session = await n2.Api.CreateSessionAsync();
        await using (var desktop = await SseWatcher.OpenAsync(n1, session))
        {
            await desktop.NextAsync(TimeSpan.FromSeconds(10));
            await n2.Api.ScanAndApproveAsync(phone.AccessToken, session);
            await desktop.WaitForStateAsync("approved", TimeSpan.FromSeconds(10));
        }
        (await n2.Api.ClaimAsync(session)).EnsureStatus(200);

        await Expect(page.Locator("#sessions li[data-state=completed] .count")).ToHaveTextAsync(new Regex($"^(?!{completed}$)\\d+$"));
        await Expect(page.Locator("#ceremonies-window")).ToHaveTextAsync(new Regex($"^(?!{ceremonies}$)\\d+$"));
        await Expect(silo2.Locator(".served")).Not.ToHaveTextAsync("0.0");
        await Expect(page.Locator("#ceremony-p50")).Not.ToHaveTextAsync("–");
        await Expect(page.Locator("#notify-p50")).Not.ToHaveTextAsync("–");
        await Expect(page.Locator("#activations tr[data-grain-type$=\"QrSessionGrain\"] .count")).ToHaveTextAsync(new Regex("^[1-9]\\d*$"));

        // Orleans' own dashboard on node 1 sees both silos too.
        Assert.Equal(2, await page.EvaluateAsync<int>(
            "async () => (await (await fetch('/dashboard/orleans/DashboardCounters')).json()).totalActiveHostCount"));
        Assert.True(errors.Count == 0, "Script errors: " + string.Join("\n", errors));
    });

    [Fact(Timeout = 120_000)]
    public Task A_sign_out_on_node_1_refuses_the_cookie_on_both_nodes_and_closes_its_live_feed_on_node_2() => cluster.RunAsync(async () =>
    {
        var (n1, n2) = (cluster[1], cluster[2]);
        using var http1 = NoRedirects(n1.BaseAddress);
        using var http2 = NoRedirects(n2.BaseAddress);
        var cookie = await QrOrleans.Tests.Observability.LogRedactionTests.SignInAsync(n1.Http, ClusterNode.AdminKey);

        // Signed in on node 1, the cookie opens node 2 too: the sign-in is a record in the cluster's storage.
        Assert.Equal(System.Net.HttpStatusCode.OK, (await GetAsync(http2, "/v1/dashboard", cookie)).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.OK, (await GetAsync(http2, "/dashboard/orleans/DashboardCounters", cookie)).StatusCode);
        await using var feed = await LiveFeed.OpenAsync(n2.BaseAddress, cookie);

        using var signOut = await DashboardAuthTests.SignOutAsync(http1, cookie, n1.BaseAddress.GetLeftPart(UriPartial.Authority));
        Assert.Equal(System.Net.HttpStatusCode.SeeOther, signOut.StatusCode);

        // The very next request, on either node, is refused; node 2's open feed closes within seconds.
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await GetAsync(http2, "/v1/dashboard", cookie)).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await GetAsync(http1, "/v1/dashboard", cookie)).StatusCode);
        Assert.Equal(System.Net.HttpStatusCode.Unauthorized, (await GetAsync(http2, "/dashboard/orleans/DashboardCounters", cookie)).StatusCode);
        await feed.WaitClosedAsync(TimeSpan.FromSeconds(5));
    });

    private static HttpClient NoRedirects(Uri node) =>
        new(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false }) { BaseAddress = node };

    private static async Task<HttpResponseMessage> GetAsync(HttpClient http, string path, string cookie)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Add("Cookie", cookie);
        return await http.SendAsync(request);
    }
}
