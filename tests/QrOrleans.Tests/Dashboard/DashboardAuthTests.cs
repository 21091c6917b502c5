using System.Net;
using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using QrOrleans.Tests.Api;
using QrOrleans.Tests.Infrastructure;
using QrOrleans.Tests.Observability;

namespace QrOrleans.Tests.Dashboard;

/// <summary>The dashboard's sign-in cookie and its refusals, over HTTP.</summary>
public sealed class DashboardAuthTests(NodeFixture fixture) : IClassFixture<NodeFixture>
{
    private GatewayNode Node => fixture.Node;

    [Fact]
    public async Task Signing_in_with_the_operator_key_sets_an_httponly_strict_cookie_that_opens_the_data()
    {
        using var http = NoRedirects(Node);
        using var form = new FormUrlEncodedContent([new("key", GatewayNode.AdminKey)]);

        using var response = await http.PostAsync("/dashboard/sign-in", form);

        Assert.Equal(HttpStatusCode.SeeOther, response.StatusCode);
        Assert.Equal("/dashboard", response.Headers.Location?.OriginalString);
        var setCookie = Assert.Single(response.Headers.GetValues("Set-Cookie"));
        var attributes = setCookie.Split(';').Select(a => a.Trim().ToLowerInvariant()).ToList();
        Assert.Contains("httponly", attributes);
        Assert.Contains("samesite=strict", attributes);
        Assert.Contains("path=/", attributes);
        Assert.DoesNotContain("secure", attributes); // plain HTTP here; over HTTPS the cookie is Secure
        var cookie = setCookie.Split(';')[0];
        Assert.StartsWith("qro_dashboard=", cookie);
        Assert.DoesNotContain(GatewayNode.AdminKey, Uri.UnescapeDataString(cookie));

        Assert.Equal(HttpStatusCode.OK, (await GetAsync(http, "/v1/dashboard", cookie)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await PostAsync(http, "/hubs/dashboard/negotiate?negotiateVersion=1", cookie)).StatusCode);
    }

    [Fact]
    public async Task Without_a_valid_cookie_the_data_and_the_hub_answer_401_and_the_page_shows_only_the_form()
    {
        using var http = NoRedirects(Node);
        var good = await LogRedactionTests.SignInAsync(Node.Http, GatewayNode.AdminKey);
        var value = good.Split('=', 2)[1];
        var tampered = "qro_dashboard=" + value[..^2] + (value[^2..] == "AA" ? "BB" : "AA");
        var badMac = "qro_dashboard=" + value.Split('.')[0] + ".not-a-mac";

        foreach (var cookie in new string?[] { null, tampered, badMac, "qro_dashboard=" + GatewayNode.AdminKey })
        {
            var data = await GetAsync(http, "/v1/dashboard", cookie);
            Assert.Equal(HttpStatusCode.Unauthorized, data.StatusCode);
            Assert.Equal("application/problem+json", data.Content.Headers.ContentType?.MediaType);
            Assert.Equal(HttpStatusCode.Unauthorized, (await PostAsync(http, "/hubs/dashboard/negotiate?negotiateVersion=1", cookie)).StatusCode);
            Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync(http, "/hubs/dashboard?id=anything", cookie)).StatusCode);
        }

        var page = await GetAsync(http, "/dashboard", null);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        var html = await page.Content.ReadAsStringAsync();
        Assert.Contains("action=\"/dashboard/sign-in\"", html);
        Assert.Contains("frame-ancestors 'none'", page.Headers.GetValues("Content-Security-Policy").Single());
        Assert.Equal("no-store", page.Headers.CacheControl?.ToString());
    }

    [Fact]
    public async Task A_wrong_key_is_sent_back_to_the_form_and_scripts_get_401_or_204()
    {
        using var http = NoRedirects(Node);
        using (var wrong = new FormUrlEncodedContent([new("key", "not-the-key")]))
        {
            using var response = await http.PostAsync("/dashboard/sign-in", wrong);
            Assert.Equal(HttpStatusCode.SeeOther, response.StatusCode);
            Assert.Equal("/dashboard?signin=failed", response.Headers.Location?.OriginalString);
            Assert.DoesNotContain(response.Headers.TryGetValues("Set-Cookie", out var c) ? c : [], v => v.Split(';')[0].Length > "qro_dashboard=".Length);
        }
        foreach (var (key, status) in new[] { ("not-the-key", HttpStatusCode.Unauthorized), (GatewayNode.AdminKey, HttpStatusCode.NoContent) })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/dashboard/sign-in") { Content = new FormUrlEncodedContent([new("key", key)]) };
            request.Headers.Accept.ParseAdd("application/json");
            Assert.Equal(status, (await http.SendAsync(request)).StatusCode);
        }
        using (var crossSite = new HttpRequestMessage(HttpMethod.Post, "/dashboard/sign-in") { Content = new FormUrlEncodedContent([new("key", GatewayNode.AdminKey)]) })
        {
            crossSite.Headers.Add("Origin", "https://evil.example");
            Assert.Equal(HttpStatusCode.Forbidden, (await http.SendAsync(crossSite)).StatusCode);
        }
        using (var json = new HttpRequestMessage(HttpMethod.Post, "/dashboard/sign-in") { Content = JsonContent(new { key = GatewayNode.AdminKey }) })
        {
            Assert.Equal(HttpStatusCode.UnsupportedMediaType, (await http.SendAsync(json)).StatusCode);
        }
    }

    [Fact]
    public async Task A_sign_in_form_that_cannot_be_decoded_is_a_400_problem_not_a_server_error()
    {
        using var http = NoRedirects(Node);
        // An encoded NUL in a value or a name: ASP.NET Core's form reader refuses both.
        foreach (var body in new[] { "key=%00", "key=abc%00def", "k%00y=1" })
        {
            using var content = new StringContent(body, System.Text.Encoding.ASCII, "application/x-www-form-urlencoded");
            using var response = await http.PostAsync("/dashboard/sign-in", content);
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            using var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
            Assert.Equal("invalid_form", problem.RootElement.GetProperty("code").GetString());
            Assert.DoesNotContain(response.Headers.TryGetValues("Set-Cookie", out var c) ? c : [], v => v.Split(';')[0].Length > "qro_dashboard=".Length);
        }
        // The node still signs a correct form in.
        using var good = new FormUrlEncodedContent([new("key", GatewayNode.AdminKey)]);
        Assert.Equal(HttpStatusCode.SeeOther, (await http.PostAsync("/dashboard/sign-in", good)).StatusCode);
    }

    [Fact]
    public async Task A_cookie_counts_only_in_the_cluster_that_recorded_its_sign_in()
    {
        // Two embedded nodes are two clusters, each with its own storage: the same operator key is not enough.
        await using var sameKey = await GatewayNode.StartAsync();
        await using var otherKey = await GatewayNode.StartAsync(new Dictionary<string, string?> { ["QrOrleans:AdminApiKey"] = "another-cluster-key" });
        var cookie = await LogRedactionTests.SignInAsync(Node.Http, GatewayNode.AdminKey);

        using var here = NoRedirects(Node);
        using var same = NoRedirects(sameKey);
        using var other = NoRedirects(otherKey);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(here, "/v1/dashboard", cookie)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync(same, "/v1/dashboard", cookie)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync(other, "/v1/dashboard", cookie)).StatusCode);
    }

    [Fact]
    public async Task After_signing_out_the_cookie_opens_neither_the_data_nor_the_hub_nor_the_orleans_dashboard_and_no_record_is_left()
    {
        using var http = NoRedirects(Node);
        var cookie = await LogRedactionTests.SignInAsync(Node.Http, GatewayNode.AdminKey);
        var other = await LogRedactionTests.SignInAsync(Node.Http, GatewayNode.AdminKey);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(http, "/dashboard/orleans/DashboardCounters", cookie)).StatusCode);
        Assert.True(await IsRecordedAsync(Node, cookie));

        using var signOut = await SignOutAsync(http, cookie, Node.BaseAddress.GetLeftPart(UriPartial.Authority));
        Assert.Equal(HttpStatusCode.SeeOther, signOut.StatusCode);
        Assert.Equal("/dashboard", signOut.Headers.Location?.OriginalString);
        Assert.Contains(signOut.Headers.GetValues("Set-Cookie"), c => c.StartsWith("qro_dashboard=;", StringComparison.Ordinal));

        // The browser forgets the cookie, and a copy kept elsewhere is refused all the same.
        Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync(http, "/v1/dashboard", cookie)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await PostAsync(http, "/hubs/dashboard/negotiate?negotiateVersion=1", cookie)).StatusCode);
        foreach (var path in new[] { "/dashboard/orleans/", "/dashboard/orleans/DashboardCounters", "/dashboard/orleans/Trace" })
        {
            Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync(http, path, cookie)).StatusCode);
        }
        Assert.False(await IsRecordedAsync(Node, cookie));
        // Another sign-in of the same operator is not touched.
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(http, "/v1/dashboard", other)).StatusCode);
    }

    [Fact]
    public async Task With_the_orleans_dashboard_turned_off_its_paths_are_404_and_ours_still_works()
    {
        await using var node = await GatewayNode.StartAsync(new Dictionary<string, string?> { ["QrOrleans:Cluster:OrleansDashboard"] = "false" });
        using var http = NoRedirects(node);
        var cookie = await LogRedactionTests.SignInAsync(node.Http, GatewayNode.AdminKey);

        foreach (var path in new[] { "/dashboard/orleans/", "/dashboard/orleans/DashboardCounters" })
        {
            using var response = await GetAsync(http, path, cookie);
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        }
        Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync(http, "/dashboard/orleans/", null)).StatusCode);
        using var ours = await GetAsync(http, "/v1/dashboard", cookie);
        Assert.Equal(HttpStatusCode.OK, ours.StatusCode);
        Assert.Contains("\"Active\"", await ours.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Signing_out_from_another_origin_or_site_is_refused_and_the_sign_in_stands()
    {
        using var http = NoRedirects(Node);
        var cookie = await LogRedactionTests.SignInAsync(Node.Http, GatewayNode.AdminKey);

        foreach (var (origin, site) in new (string?, string?)[] { ("https://evil.example", null), ("null", null), (null, "cross-site"), (null, "same-site") })
        {
            using var refused = await SignOutAsync(http, cookie, origin, site);
            Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
            using var problem = JsonDocument.Parse(await refused.Content.ReadAsStringAsync());
            Assert.Equal("cross_origin", problem.RootElement.GetProperty("code").GetString());
            Assert.False(refused.Headers.Contains("Set-Cookie"));
            Assert.Equal(HttpStatusCode.OK, (await GetAsync(http, "/v1/dashboard", cookie)).StatusCode);
        }

        // The page's own form (same origin) and a script (no Origin, asking for JSON) sign out.
        using (var json = new HttpRequestMessage(HttpMethod.Post, "/dashboard/sign-out"))
        {
            json.Headers.Add("Cookie", cookie);
            json.Headers.Accept.ParseAdd("application/json");
            Assert.Equal(HttpStatusCode.NoContent, (await http.SendAsync(json)).StatusCode);
        }
        Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync(http, "/v1/dashboard", cookie)).StatusCode);
    }

    [Fact]
    public async Task An_open_live_feed_of_a_signed_out_cookie_is_closed_within_3_seconds_and_others_stay_open()
    {
        using var http = NoRedirects(Node);
        var cookie = await LogRedactionTests.SignInAsync(Node.Http, GatewayNode.AdminKey);
        var kept = await LogRedactionTests.SignInAsync(Node.Http, GatewayNode.AdminKey);
        await using var revoked = await LiveFeed.OpenAsync(Node.BaseAddress, cookie);
        await using var other = await LiveFeed.OpenAsync(Node.BaseAddress, kept);

        using var signOut = await SignOutAsync(http, cookie, Node.BaseAddress.GetLeftPart(UriPartial.Authority));
        Assert.Equal(HttpStatusCode.SeeOther, signOut.StatusCode);

        await revoked.WaitClosedAsync(TimeSpan.FromSeconds(3));
        Assert.True(revoked.ToldSignedOut, "the page was not told why its feed closed");
        var seen = other.Snapshots;
        await other.WaitForSnapshotsAsync(seen + 2, TimeSpan.FromSeconds(5)); // still live, a push a second
        Assert.Equal(Microsoft.AspNetCore.SignalR.Client.HubConnectionState.Connected, other.State);
    }

    [Fact]
    public async Task The_orleans_dashboards_open_log_stream_is_cut_when_its_sign_in_ends()
    {
        using var http = NoRedirects(Node);
        var cookie = await LogRedactionTests.SignInAsync(Node.Http, GatewayNode.AdminKey);
        using var trace = new HttpRequestMessage(HttpMethod.Get, "/dashboard/orleans/Trace");
        trace.Headers.Add("Cookie", cookie);
        using var response = await http.SendAsync(trace, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await using var body = await response.Content.ReadAsStreamAsync();
        var drained = DrainAsync(body);
        await Task.Delay(1500);
        Assert.False(drained.IsCompleted, "the log stream ended by itself"); // it stays open while signed in

        using var signOut = await SignOutAsync(http, cookie, Node.BaseAddress.GetLeftPart(UriPartial.Authority));
        Assert.Equal(HttpStatusCode.SeeOther, signOut.StatusCode);
        Assert.Same(drained, await Task.WhenAny(drained, Task.Delay(TimeSpan.FromSeconds(3))));

        static async Task DrainAsync(Stream body)
        {
            var buffer = new byte[4096];
            try
            {
                while (await body.ReadAsync(buffer) > 0)
                {
                }
            }
            catch (Exception e) when (e is IOException or HttpRequestException)
            {
                // cut by the server: what this test waits for
            }
        }
    }

    [Fact]
    public async Task On_redis_a_sign_in_outlives_a_restart_of_the_node_and_a_sign_out_after_it_holds()
    {
        var redis = new QrOrleans.Tests.Accounts.FleetRedis();
        string cookie;
        await using (var before = await GatewayNode.StartAsync(redis.NodeSettings()))
        {
            cookie = await LogRedactionTests.SignInAsync(before.Http, GatewayNode.AdminKey);
        }
        await using var restarted = await GatewayNode.StartAsync(redis.NodeSettings());
        using var http = NoRedirects(restarted);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(http, "/v1/dashboard", cookie)).StatusCode);

        using var signOut = await SignOutAsync(http, cookie, restarted.BaseAddress.GetLeftPart(UriPartial.Authority));
        Assert.Equal(HttpStatusCode.SeeOther, signOut.StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await GetAsync(http, "/v1/dashboard", cookie)).StatusCode);
    }

    [Fact]
    public async Task The_data_follow_a_ceremony_on_this_node()
    {
        var api = new ApiClient(Node.Http);
        var phone = await api.NewPhoneAsync();
        var session = await api.CreateSessionAsync();
        await api.ScanAndApproveAsync(phone.AccessToken, session);
        (await api.ClaimAsync(session)).EnsureStatus(200);

        // The node publishes its figures at most once a second, and other tests share it: wait for this ceremony's
        // own audit entry, which the node records after the completion.
        bool Linked(JsonElement a) => a.GetProperty("action").GetString() == "device_linked" && a.GetProperty("userId").GetString() == phone.UserId;
        JsonElement d = default;
        var deadline = DateTime.UtcNow.AddSeconds(10);
        do
        {
            await Task.Delay(200);
            d = (await api.SendAsync(HttpMethod.Get, "/v1/dashboard", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200).Body;
        }
        while (DateTime.UtcNow < deadline && !d.GetProperty("audit").EnumerateArray().Any(Linked));

        Assert.True(d.GetProperty("totals").GetProperty("ceremonies").GetInt64() >= 1);
        Assert.True(d.GetProperty("sessions").GetProperty("completed").GetInt32() >= 1);
        Assert.Equal(JsonValueKind.Number, d.GetProperty("totals").GetProperty("ceremonyP50").ValueKind);
        var silo = Assert.Single(d.GetProperty("silos").EnumerateArray());
        Assert.True(silo.GetProperty("self").GetBoolean());
        Assert.Equal("Active", silo.GetProperty("status").GetString());
        Assert.Equal(SelfSiloId(Node), silo.GetProperty("id").GetString());
        Assert.Equal(QrOrleans.Gateway.Dashboard.DashboardQuery.WindowMinutes, d.GetProperty("minutes").GetArrayLength());
        Assert.Contains(d.GetProperty("audit").EnumerateArray(), Linked);
        Assert.Equal(JsonValueKind.Array, d.GetProperty("accounts").GetProperty("accounts").ValueKind);
        Assert.Equal(JsonValueKind.Array, d.GetProperty("accounts").GetProperty("inbox").ValueKind);
    }

    [Fact]
    public async Task The_orleans_dashboard_refuses_a_missing_or_tampered_cookie_and_sends_a_signed_out_browser_to_the_form()
    {
        using var http = NoRedirects(Node);
        var good = await LogRedactionTests.SignInAsync(Node.Http, GatewayNode.AdminKey);
        var value = good.Split('=', 2)[1];
        var tampered = "qro_dashboard=" + value[..^2] + (value[^2..] == "AA" ? "BB" : "AA");

        foreach (var cookie in new string?[] { null, tampered, "qro_dashboard=" + GatewayNode.AdminKey })
        {
            foreach (var path in new[] { "/dashboard/orleans/", "/dashboard/orleans/index.min.js", "/dashboard/orleans/DashboardCounters", "/dashboard/orleans/Trace" })
            {
                var refused = await GetAsync(http, path, cookie);
                Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
                Assert.Equal("application/problem+json", refused.Content.Headers.ContentType?.MediaType);
            }
            using var browser = new HttpRequestMessage(HttpMethod.Get, "/dashboard/orleans/");
            browser.Headers.Accept.ParseAdd("text/html,application/xhtml+xml");
            if (cookie is not null)
            {
                browser.Headers.Add("Cookie", cookie);
            }
            using var redirected = await http.SendAsync(browser);
            Assert.Equal(HttpStatusCode.SeeOther, redirected.StatusCode);
            Assert.Equal("/dashboard", redirected.Headers.Location?.OriginalString);
        }
    }

    [Fact]
    public async Task Signed_in_the_orleans_dashboard_serves_its_page_and_its_data_but_never_grain_state()
    {
        using var http = NoRedirects(Node);
        var cookie = await LogRedactionTests.SignInAsync(Node.Http, GatewayNode.AdminKey);

        var bare = await GetAsync(http, "/dashboard/orleans", cookie);
        Assert.Equal("/dashboard/orleans/", bare.Headers.Location?.OriginalString); // its assets are relative to the slash
        var page = await GetAsync(http, "/dashboard/orleans/", cookie);
        Assert.Equal(HttpStatusCode.OK, page.StatusCode);
        Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        var html = await page.Content.ReadAsStringAsync();
        Assert.Contains("<title>Orleans Dashboard</title>", html);
        Assert.Contains("index.min.js", html);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(http, "/dashboard/orleans/index.min.js", cookie)).StatusCode);

        // The Orleans dashboard gathers its counters on its own schedule (about every second): just after start it
        // may not have counted this silo yet.
        JsonDocument? counted = null;
        for (var attempt = 0; attempt < 50 && counted?.RootElement.GetProperty("totalActiveHostCount").GetInt32() != 1; attempt++)
        {
            if (attempt > 0)
            {
                await Task.Delay(200, TestContext.Current.CancellationToken);
            }
            var counters = await GetAsync(http, "/dashboard/orleans/DashboardCounters", cookie);
            Assert.Equal(HttpStatusCode.OK, counters.StatusCode);
            counted?.Dispose();
            counted = JsonDocument.Parse(await counters.Content.ReadAsStringAsync());
        }
        using var json = counted!;
        Assert.Equal(1, json.RootElement.GetProperty("totalActiveHostCount").GetInt32());
        var host = Assert.Single(json.RootElement.GetProperty("hosts").EnumerateArray());
        Assert.Equal(SelfSiloAddress(Node).ToParsableString(), host.GetProperty("siloAddress").GetString());

        var session = await new ApiClient(Node.Http).CreateSessionAsync();
        var state = await GetAsync(http, $"/dashboard/orleans/GrainState?grainId={session.SessionId}&grainType=QrOrleans.Grains.QrSessions.QrSessionGrain", cookie);
        Assert.Equal(HttpStatusCode.Forbidden, state.StatusCode);
        Assert.DoesNotContain(session.QrUrl.Split('.')[^1], await state.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task The_cluster_view_lists_this_silo_from_orleans_membership_with_activations_and_live_sessions_by_state()
    {
        var api = new ApiClient(Node.Http);
        var session = await api.CreateSessionAsync();

        JsonElement c;
        var deadline = DateTime.UtcNow.AddSeconds(10);
        do
        {
            c = (await api.SendAsync(HttpMethod.Get, "/v1/cluster", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200).Body;
            if (c.GetProperty("grains").GetProperty("qrSession").GetProperty("pending").GetInt32() >= 1)
            {
                break;
            }
            await Task.Delay(200);
        }
        while (DateTime.UtcNow < deadline);

        Assert.Equal(SelfSiloId(Node), c.GetProperty("self").GetString());
        var silo = Assert.Single(c.GetProperty("silos").EnumerateArray());
        Assert.Equal(SelfSiloId(Node), silo.GetProperty("id").GetString());
        Assert.Equal(SelfSiloAddress(Node).Endpoint.ToString(), silo.GetProperty("address").GetString());
        Assert.Equal("Active", silo.GetProperty("status").GetString());
        Assert.InRange(silo.GetProperty("lastHeartbeatAt").GetDateTimeOffset(), silo.GetProperty("startedAt").GetDateTimeOffset(), DateTimeOffset.UtcNow.AddSeconds(5));
        Assert.True(c.GetProperty("grains").GetProperty("qrSession").GetProperty("pending").GetInt32() >= 1);
        Assert.Equal(JsonValueKind.Number, c.GetProperty("grains").GetProperty("linkedAccount").GetProperty("pairing").ValueKind);
        var sessions = Assert.Single(c.GetProperty("activations").EnumerateObject(), a => a.Name.EndsWith("QrSessionGrain", StringComparison.Ordinal));
        Assert.True(sessions.Value.GetInt32() >= 1);

        Assert.Equal(401, (await api.SendAsync(HttpMethod.Get, "/v1/cluster", null)).Status);
        (await api.CancelAsync(session)).EnsureStatus(200);
    }

    internal static Orleans.Runtime.SiloAddress SelfSiloAddress(GatewayNode node) =>
        node.Services.GetRequiredService<Orleans.Runtime.ILocalSiloDetails>().SiloAddress;

    internal static string SelfSiloId(GatewayNode node) => SelfSiloAddress(node).ToParsableString();

    /// <summary>POST /dashboard/sign-out as a browser's form would send it, with its Origin and Sec-Fetch-Site when given.</summary>
    internal static async Task<HttpResponseMessage> SignOutAsync(HttpClient http, string cookie, string? origin, string? site = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/dashboard/sign-out") { Content = new FormUrlEncodedContent([]) };
        request.Headers.Add("Cookie", cookie);
        if (origin is not null)
        {
            request.Headers.Add("Origin", origin);
        }
        if (site is not null)
        {
            request.Headers.Add("Sec-Fetch-Site", site);
        }
        return await http.SendAsync(request);
    }

    /// <summary>Whether the sign-in of <paramref name="cookie"/> is in the node's grain storage (read past any activation).</summary>
    private static async Task<bool> IsRecordedAsync(GatewayNode node, string cookie)
    {
        var payload = Convert.FromBase64String(Padded(cookie.Split('=', 2)[1].Split('.')[0]));
        var key = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(payload.AsSpan(0, 16)));
        var storage = node.Services.GetRequiredKeyedService<Orleans.Storage.IGrainStorage>(OrleansNames.Storage);
        var state = new Orleans.GrainState<QrOrleans.Grains.Dashboard.DashboardSignInState>(new());
        await storage.ReadStateAsync("signIn", Orleans.Runtime.GrainId.Create("dashboardsignin", key), state);
        return state.RecordExists;

        static string Padded(string b64url)
        {
            var s = b64url.Replace('-', '+').Replace('_', '/');
            return s + new string('=', (4 - s.Length % 4) % 4);
        }
    }

    private static HttpClient NoRedirects(GatewayNode node) =>
        new(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false }) { BaseAddress = node.BaseAddress };

    private static StringContent JsonContent(object body) =>
        new(JsonSerializer.Serialize(body), System.Text.Encoding.UTF8, "application/json");

    private static Task<HttpResponseMessage> GetAsync(HttpClient http, string path, string? cookie) => SendAsync(http, HttpMethod.Get, path, cookie);

    private static Task<HttpResponseMessage> PostAsync(HttpClient http, string path, string? cookie) => SendAsync(http, HttpMethod.Post, path, cookie);

    private static async Task<HttpResponseMessage> SendAsync(HttpClient http, HttpMethod method, string path, string? cookie)
    {
        using var request = new HttpRequestMessage(method, path);
        if (cookie is not null)
        {
            request.Headers.Add("Cookie", cookie);
        }
        return await http.SendAsync(request);
    }
}
