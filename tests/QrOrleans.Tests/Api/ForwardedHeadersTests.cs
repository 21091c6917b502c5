using System.Net.Http.Headers;
using System.Net.Http.Json;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Api;

/// <summary>
/// A gateway behind a reverse proxy: X-Forwarded-For / -Proto count only when the peer (here loopback) is a
/// configured proxy; anyone else sending them is ignored, for the phone's view, the audit trail and the rate limits.
/// </summary>
public sealed class ForwardedHeadersTests
{
    private const int SessionsPerMinute = 3;

    private static Task<GatewayNode> StartAsync(params (string Key, string Value)[] proxySettings)
    {
        var settings = new Dictionary<string, string?>
        {
            ["QrOrleans:RateLimiting:Enabled"] = "true",
            ["QrOrleans:RateLimiting:SessionsPerMinutePerIp"] = SessionsPerMinute.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        foreach (var (key, value) in proxySettings)
        {
            settings["QrOrleans:ForwardedHeaders:" + key] = value;
        }
        return GatewayNode.StartAsync(settings);
    }

    [Theory]
    [InlineData(null, null)]                      // nothing configured: no proxy at all
    [InlineData("KnownProxies:0", "10.1.2.3")]    // a proxy, but not the peer: loopback is not trusted by default
    [InlineData("KnownNetworks:0", "10.0.0.0/8")]
    public async Task A_spoofed_forwarded_for_from_a_peer_that_is_not_a_known_proxy_changes_nothing(string? key, string? value)
    {
        await using var node = await StartAsync(key is null ? [] : [(key, value!)]);
        var api = new ApiClient(node.Http);
        var phone = await api.NewPhoneAsync();

        var session = await CreateSessionAsync(node, "203.0.113.7");
        Assert.Equal(201, session.Status);
        var scan = (await ScanAsync(node, phone.AccessToken, session, "198.51.100.9")).EnsureStatus(200);

        var requester = scan.Body.GetProperty("requester");
        Assert.Equal("127.0.0.1", requester.GetProperty("ip").GetString());
        Assert.True(requester.GetProperty("sameNetwork").GetBoolean()); // both really on loopback
        Assert.Equal("127.0.0.1", await ScanAuditIpAsync(api, phone.AccessToken, session));

        // Rotating the header does not open new buckets: every creation counts against 127.0.0.1.
        var codes = new List<int>();
        for (var i = 1; i <= SessionsPerMinute; i++)
        {
            codes.Add((await CreateSessionAsync(node, $"203.0.113.{100 + i}")).Status);
        }
        Assert.Equal([201, 201, 429], codes);
        Assert.Equal(429, (await CreateSessionAsync(node, null)).Status);
    }

    [Theory]
    [InlineData("KnownProxies:0", "127.0.0.1")]
    [InlineData("KnownNetworks:0", "127.0.0.0/8")]
    public async Task Behind_a_known_proxy_the_forwarded_client_is_shown_audited_and_limited(string key, string value)
    {
        await using var node = await StartAsync((key, value));
        var api = new ApiClient(node.Http);
        var phone = await api.NewPhoneAsync();

        var session = await CreateSessionAsync(node, "203.0.113.7");
        Assert.Equal(201, session.Status);
        var scan = (await ScanAsync(node, phone.AccessToken, session, "198.51.100.9")).EnsureStatus(200);

        var requester = scan.Body.GetProperty("requester");
        Assert.Equal("203.0.113.7", requester.GetProperty("ip").GetString());
        Assert.False(requester.GetProperty("sameNetwork").GetBoolean()); // the desktop and the phone are on different networks
        Assert.Equal("198.51.100.9", await ScanAuditIpAsync(api, phone.AccessToken, session));

        // 203.0.113.7 used one creation above; its bucket fills, while other clients behind the proxy keep theirs.
        var codes = new List<int>();
        for (var i = 1; i <= SessionsPerMinute; i++)
        {
            codes.Add((await CreateSessionAsync(node, "203.0.113.7")).Status);
        }
        Assert.Equal([201, 201, 429], codes);
        Assert.Equal(201, (await CreateSessionAsync(node, "203.0.113.8")).Status);
        Assert.Equal(201, (await CreateSessionAsync(node, null)).Status); // the proxy's own requests: 127.0.0.1
    }

    [Fact]
    public async Task The_forwarded_scheme_of_a_known_proxy_makes_the_dashboard_cookie_secure()
    {
        await using var trusted = await StartAsync(("KnownProxies:0", "127.0.0.1"));
        await using var untrusted = await StartAsync();

        Assert.Contains("secure", await SignInCookieAttributesAsync(trusted));
        Assert.DoesNotContain("secure", await SignInCookieAttributesAsync(untrusted));
    }

    [Theory]
    [InlineData("KnownProxies:0", "proxy.internal")]
    [InlineData("KnownNetworks:0", "10.0.0.0")]
    public async Task A_proxy_setting_that_is_not_an_address_stops_the_start(string key, string value)
    {
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => StartAsync((key, value)));

        Assert.Contains("QrOrleans:ForwardedHeaders:", error.Message, StringComparison.Ordinal);
        Assert.Contains(value, error.Message, StringComparison.Ordinal);
    }

    private static async Task<List<string>> SignInCookieAttributesAsync(GatewayNode node)
    {
        using var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = node.BaseAddress };
        using var request = new HttpRequestMessage(HttpMethod.Post, "/dashboard/sign-in")
        {
            Content = new FormUrlEncodedContent([new("key", GatewayNode.AdminKey)]),
        };
        request.Headers.Add("X-Forwarded-For", "203.0.113.7");
        request.Headers.Add("X-Forwarded-Proto", "https");
        using var response = await http.SendAsync(request);
        Assert.Equal(System.Net.HttpStatusCode.SeeOther, response.StatusCode);
        return [.. Assert.Single(response.Headers.GetValues("Set-Cookie")).Split(';').Select(a => a.Trim().ToLowerInvariant())];
    }

    /// <summary>
    /// The IP the user's trail gives the scan. A session hands its entries to the trail when it ends, so the phone
    /// rejects it first; the hand-over follows the rejection on the session's next turn.
    /// </summary>
    private static async Task<string?> ScanAuditIpAsync(ApiClient api, string accessToken, Reply session)
    {
        var id = session.Body.GetProperty("sessionId").GetString();
        (await api.SendAsync(HttpMethod.Post, $"/v1/qr/sessions/{id}/reject", null, accessToken)).EnsureStatus(200);
        for (var attempt = 0; ; attempt++)
        {
            var trail = (await api.SendAsync(HttpMethod.Get, "/v1/me/audit", null, accessToken)).EnsureStatus(200).Body.EnumerateArray()
                .Where(e => e.GetProperty("action").GetString() == "qr_scanned").ToArray();
            if (trail.Length > 0 || attempt == 50)
            {
                return Assert.Single(trail).GetProperty("ip").GetString();
            }
            await Task.Delay(100);
        }
    }

    private static async Task<Reply> CreateSessionAsync(GatewayNode node, string? forwardedFor) =>
        await SendAsync(node, HttpMethod.Post, "/v1/qr/sessions", new { client = new { name = "Desktop behind a proxy", kind = "browser" } }, null, forwardedFor);

    private static async Task<Reply> ScanAsync(GatewayNode node, string accessToken, Reply session, string forwardedFor) =>
        await SendAsync(node, HttpMethod.Post, "/v1/qr/scan", new { url = session.Body.GetProperty("qr").GetProperty("url").GetString() }, accessToken, forwardedFor);

    private static async Task<Reply> SendAsync(GatewayNode node, HttpMethod method, string path, object body, string? bearer, string? forwardedFor)
    {
        using var request = new HttpRequestMessage(method, path) { Content = JsonContent.Create(body, options: ApiClient.Json) };
        if (bearer is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        }
        if (forwardedFor is not null)
        {
            request.Headers.Add("X-Forwarded-For", forwardedFor);
        }
        using var response = await node.Http.SendAsync(request);
        return await Reply.ReadAsync(response);
    }
}
