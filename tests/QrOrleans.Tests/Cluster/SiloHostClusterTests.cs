using System.Diagnostics;
using System.Text.Json;
using QrOrleans.Tests.Observability;
using static QrOrleans.Tests.Cluster.ClusterCalls;

namespace QrOrleans.Tests.Cluster;

/// <summary>Two headless silo hosts (<c>dotnet run --project src/Silo</c>) and a gateway in Client role in front.</summary>
public sealed class SiloHostCluster : ClusterFixture
{
    protected override IReadOnlyList<NodeKind> Kinds => [NodeKind.Silo, NodeKind.Silo, NodeKind.ClientGateway];

    /// <summary>Every node exports its spans here: the ceremony's are made by the grains, on the silo hosts.</summary>
    public OtlpReceiver Traces { get; } = OtlpReceiver.StartAsync().GetAwaiter().GetResult();

    protected override IEnumerable<string> ExtraArgs =>
        [$"--OTEL_EXPORTER_OTLP_TRACES_ENDPOINT={Traces.Endpoint}/v1/traces", "--OTEL_BSP_SCHEDULE_DELAY=200"];

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        await Traces.DisposeAsync();
    }
}

/// <summary>
/// The standard shape "an HTTP gateway fronts the cluster": the grains live in two src/Silo processes that answer
/// only their probes, and a gateway that is an Orleans client (found through Redis) serves the whole API.
/// </summary>
[Collection("Cluster")]
public sealed class SiloHostClusterTests(SiloHostCluster cluster) : IClassFixture<SiloHostCluster>
{
    [Fact(Timeout = 120_000)]
    public Task A_client_gateway_in_front_of_two_silo_hosts_runs_a_whole_ceremony() => cluster.RunAsync(async () =>
    {
        var (silo1, silo2, gateway) = (cluster[1], cluster[2], cluster[3]);

        // The silo hosts answer their probes, and nothing else.
        foreach (var silo in new[] { silo1, silo2 })
        {
            var healthz = await silo.Http.GetAsync("/healthz");
            Assert.Equal(200, (int)healthz.StatusCode);
            Assert.Equal("ok", await healthz.Content.ReadAsStringAsync());
            var ready = await silo.ReadyzAsync();
            Assert.True(ready.Status == 200, $"{silo.Name} /readyz: {ready.Status} {ready.Text}");
            Assert.Equal("application/json", ready.ContentType);
            Assert.Equal("ready", ready.Body.GetProperty("status").GetString());
            var checks = ready.Body.GetProperty("checks").EnumerateArray().ToDictionary(c => c.GetProperty("name").GetString()!);
            Assert.True(checks["redis"].GetProperty("healthy").GetBoolean(), ready.Text);
            Assert.True(checks["silo"].GetProperty("healthy").GetBoolean(), ready.Text);
            Assert.Contains("Active", checks["silo"].GetProperty("detail").GetString(), StringComparison.Ordinal);
            foreach (var path in new[] { "/", "/v1/qr/sessions", "/dashboard", "/openapi/v1.json" })
            {
                Assert.Equal(404, (int)(await silo.Http.GetAsync(path)).StatusCode);
            }
            Assert.Equal(405, (int)(await silo.Http.PostAsync("/readyz", null)).StatusCode);
        }

        // The gateway sees the cluster it fronts: both silo hosts, and no silo of its own.
        await AllActiveAsync(gateway, [silo1, silo2], TimeSpan.FromSeconds(15));
        var view = await ClusterAsync(gateway);
        Assert.Empty(SilosOf(view, gateway));
        Assert.Equal(2, view.GetProperty("silos").EnumerateArray().Count(s => string.Equals(s.GetProperty("status").GetString(), "Active", StringComparison.OrdinalIgnoreCase)));

        // A whole ceremony through the gateway.
        var phone = await gateway.Api.NewPhoneAsync();
        var session = await gateway.Api.CreateSessionAsync();
        Assert.StartsWith($"{gateway.BaseAddress}l/#{session.SessionId}.", session.QrUrl, StringComparison.Ordinal);
        await using var sse = await SseWatcher.OpenAsync(gateway, session);
        Assert.Equal("pending", (await sse.NextAsync(TimeSpan.FromSeconds(5))).State);
        var scan = (await gateway.Api.ScanAsync(phone.AccessToken, session.QrUrl)).EnsureStatus(200);
        var scanned = await sse.WaitForStateAsync("scanned", TimeSpan.FromSeconds(5));
        var number = scanned.Data.GetProperty("numberMatch").GetString()!;
        Assert.Contains(number, scan.Body.GetProperty("numberChoices").EnumerateArray().Select(e => e.GetString()));
        var poll = LongPollAsync(gateway, session, scanned.Version);
        await Task.Delay(200);
        Assert.False(poll.IsCompleted);
        (await gateway.Api.ApproveAsync(phone.AccessToken, session.SessionId, number)).EnsureStatus(200);
        var approvedAt = Stopwatch.GetTimestamp();
        var approved = await sse.WaitForStateAsync("approved", TimeSpan.FromSeconds(5));
        var (polled, polledAt) = await poll.WaitAsync(TimeSpan.FromSeconds(5));
        polled.EnsureStatus(200);
        Assert.Equal(("approved", 3L), (polled.Body.GetProperty("state").GetString(), polled.Body.GetProperty("version").GetInt64()));
        Diagnostics.Report($"client gateway: approval told over SSE {Seconds(approvedAt, approved.ReceivedAt) * 1000:F0} ms, long-poll {Seconds(approvedAt, polledAt) * 1000:F0} ms after");
        Assert.True(Seconds(approvedAt, approved.ReceivedAt) < 1.0);

        var claim = (await gateway.Api.ClaimAsync(session)).EnsureStatus(200);
        Assert.Equal(phone.UserId, claim.Body.GetProperty("user").GetProperty("id").GetString());
        Assert.Equal(4L, (await sse.WaitForStateAsync("completed", TimeSpan.FromSeconds(5))).Version);
        Assert.Equal([1L, 2L, 3L, 4L], sse.Events.Select(e => e.Version));
        var access = claim.Body.GetProperty("accessToken").GetString()!;
        var me = (await gateway.Api.SendAsync(HttpMethod.Get, "/v1/me", null, access)).EnsureStatus(200);
        Assert.Equal(JsonValueKind.Object, me.Body.ValueKind);
        Assert.Equal(410, (await gateway.Api.ClaimAsync(session)).Status);
        var devices = (await gateway.Api.SendAsync(HttpMethod.Get, "/v1/devices", null, phone.AccessToken)).EnsureStatus(200);
        Assert.Contains(claim.Body.GetProperty("device").GetProperty("id").GetString()!, devices.Text, StringComparison.Ordinal);

        // The silo hosts export the ceremony's trace: its root and steps are made by the session grain, which runs
        // there (the gateway runs no grains), and all of them share the root's trace id.
        var deadline = DateTime.UtcNow.AddSeconds(15);
        List<OtlpSpans.Span> steps = [];
        while (DateTime.UtcNow < deadline)
        {
            steps = cluster.Traces.Requests.Where(r => r.Path == "/v1/traces").SelectMany(r => OtlpSpans.Read(r.Body))
                .Where(x => x.Name.StartsWith("qr_session.", StringComparison.Ordinal)).ToList();
            if (new[] { "qr_session.create", "qr_session.scan", "qr_session.approve", "qr_session.claim" }.All(n => steps.Any(x => x.Name == n)))
            {
                break;
            }
            await Task.Delay(200);
        }
        var root = Assert.Single(steps, x => x.Name == "qr_session.create");
        Assert.All(new[] { "qr_session.scan", "qr_session.approve", "qr_session.claim" }, n =>
            Assert.Contains(steps, x => x.Name == n && x.TraceId == root.TraceId && x.ParentSpanId == root.SpanId));
    });
}
