using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Observability;

/// <summary>GET /metrics: off unless QrOrleans:Metrics:Prometheus=true; then for the operator key or an allowed network.</summary>
public sealed class PrometheusMetricsTests
{
    [Fact]
    public async Task There_is_no_scrape_endpoint_by_default()
    {
        await using var node = await GatewayNode.StartAsync();
        var reply = await new ApiClient(node.Http).SendAsync(HttpMethod.Get, "/metrics", null, apiKey: GatewayNode.AdminKey);
        Assert.Equal(404, reply.Status);
    }

    [Fact]
    public async Task The_operator_key_reads_the_QrOrleans_metrics_and_a_stranger_is_refused()
    {
        await using var node = await GatewayNode.StartAsync(new Dictionary<string, string?>
        {
            ["QrOrleans:Metrics:Prometheus"] = "true",
            ["QrOrleans:Metrics:AllowedNetworks:0"] = "10.0.0.0/8", // not where the test calls from (loopback)
        });
        var api = new ApiClient(node.Http);
        (await api.CancelAsync(await api.CreateSessionAsync())).EnsureStatus(200);

        var stranger = await api.SendAsync(HttpMethod.Get, "/metrics", null);
        Assert.Equal(401, stranger.Status);
        Assert.Equal("application/problem+json", stranger.ContentType);
        Assert.Equal("unauthenticated", stranger.Code);
        var wrongKey = await api.SendAsync(HttpMethod.Get, "/metrics", null, apiKey: "not-the-key");
        Assert.Equal("unauthenticated", wrongKey.EnsureStatus(401).Code);

        var scrape = (await api.SendAsync(HttpMethod.Get, "/metrics", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200);
        Assert.Equal("text/plain", scrape.ContentType);
        Assert.Contains("qrorleans_qr_session_transitions", scrape.Text, StringComparison.Ordinal);
        Assert.Contains("state=\"cancelled\"", scrape.Text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_scraper_on_an_allowed_network_needs_no_key()
    {
        await using var node = await GatewayNode.StartAsync(new Dictionary<string, string?>
        {
            ["QrOrleans:Metrics:Prometheus"] = "true",
            ["QrOrleans:Metrics:AllowedNetworks:0"] = "192.168.0.0/16",
            ["QrOrleans:Metrics:AllowedNetworks:1"] = "127.0.0.0/8",
        });
        var api = new ApiClient(node.Http);
        await api.CreateSessionAsync();

        var scrape = (await api.SendAsync(HttpMethod.Get, "/metrics", null)).EnsureStatus(200);
        Assert.Contains("qrorleans_qr_session_transitions", scrape.Text, StringComparison.Ordinal);
    }
}
