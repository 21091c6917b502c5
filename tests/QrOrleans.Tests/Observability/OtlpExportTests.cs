using System.Collections.Concurrent;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Observability;

/// <summary>
/// A local receiver of POSTs on 127.0.0.1: keeps each request's path, content type and body, and answers 200 with
/// an empty protobuf body (an empty OTLP Export*ServiceResponse; webhook senders only look at the status).
/// </summary>
public sealed class OtlpReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;

    private OtlpReceiver(WebApplication app, string endpoint)
    {
        _app = app;
        Endpoint = endpoint;
    }

    public string Endpoint { get; }

    public ConcurrentQueue<(string Path, string ContentType, byte[] Body)> Requests { get; } = new();

    public static async Task<OtlpReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        OtlpReceiver? receiver = null;
        app.MapPost("/{**path}", async (HttpContext context) =>
        {
            using var body = new MemoryStream();
            await context.Request.Body.CopyToAsync(body);
            receiver!.Requests.Enqueue((context.Request.Path.Value!, context.Request.ContentType ?? "", body.ToArray()));
            return Results.Bytes([], "application/x-protobuf");
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        receiver = new OtlpReceiver(app, address);
        return receiver;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>
/// The spans of OTLP/HTTP trace bodies (ExportTraceServiceRequest → ResourceSpans → ScopeSpans → Span), read from the
/// protobuf wire format: only the fields a trace's shape needs.
/// </summary>
public static class OtlpSpans
{
    public sealed record Span(string TraceId, string SpanId, string? ParentSpanId, string Name);

    public static IEnumerable<Span> Read(byte[] body)
    {
        foreach (var resourceSpans in Fields(body, 1))
        {
            foreach (var scopeSpans in Fields(resourceSpans, 2))
            {
                foreach (var span in Fields(scopeSpans, 2))
                {
                    string? traceId = null, spanId = null, parent = null, name = null;
                    foreach (var (field, value) in All(span))
                    {
                        switch (field)
                        {
                            case 1: traceId = Convert.ToHexStringLower(value); break;
                            case 2: spanId = Convert.ToHexStringLower(value); break;
                            case 4 when value.Length > 0: parent = Convert.ToHexStringLower(value); break;
                            case 5: name = Encoding.UTF8.GetString(value); break;
                        }
                    }
                    yield return new Span(traceId!, spanId!, parent, name!);
                }
            }
        }
    }

    private static IEnumerable<byte[]> Fields(byte[] message, int number) => All(message).Where(f => f.Field == number).Select(f => f.Value);

    /// <summary>The length-delimited fields of a message; varint and fixed fields are skipped.</summary>
    private static List<(int Field, byte[] Value)> All(byte[] message)
    {
        var fields = new List<(int, byte[])>();
        var i = 0;
        while (i < message.Length)
        {
            var key = Varint(message, ref i);
            var field = (int)(key >> 3);
            switch (key & 7)
            {
                case 0: Varint(message, ref i); break;
                case 1: i += 8; break;
                case 5: i += 4; break;
                case 2:
                    var length = (int)Varint(message, ref i);
                    fields.Add((field, message[i..(i + length)]));
                    i += length;
                    break;
                default: throw new InvalidDataException($"wire type {key & 7}");
            }
        }
        return fields;
    }

    private static ulong Varint(byte[] data, ref int i)
    {
        ulong value = 0;
        for (var shift = 0; ; shift += 7)
        {
            var b = data[i++];
            value |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80)
            {
                return value;
            }
        }
    }
}

/// <summary>
/// An OTLP exporter listens to every Meter and ActivitySource named "QrOrleans" in the process. In production a
/// process is one node; here other tests start nodes of their own, whose same-named instruments would compete with
/// this node's. So these tests run alone.
/// </summary>
[CollectionDefinition("OtlpExport", DisableParallelization = true)]
public sealed class OtlpExportCollection;

/// <summary>
/// Metrics and spans leave through OpenTelemetry's own OTLP exporter (OTLP/HTTP, protobuf) when the standard
/// OTEL_EXPORTER_OTLP_* settings name an endpoint.
/// </summary>
[Collection("OtlpExport")]
public sealed class OtlpExportTests
{
    private static Dictionary<string, string?> Exporting(OtlpReceiver receiver) => new()
    {
        ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint,
        ["OTEL_METRIC_EXPORT_INTERVAL"] = "300",
        ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
    };

    [Fact]
    public async Task A_ceremony_exports_the_QrOrleans_meter_and_its_spans_to_the_configured_endpoint()
    {
        await using var receiver = await OtlpReceiver.StartAsync();
        string qrSecret;
        var node = await GatewayNode.StartAsync(Exporting(receiver));
        var silo = node.Services.GetRequiredService<Orleans.Runtime.ILocalSiloDetails>().SiloAddress.ToParsableString();
        try
        {
            var api = new ApiClient(node.Http);
            var phone = await api.NewPhoneAsync();
            var session = await api.CreateSessionAsync();
            qrSecret = session.QrUrl[(session.QrUrl.LastIndexOf('.') + 1)..];
            // A code of the earlier shape, /l/<token>, whose path holds the secret (today's codes keep it in the fragment).
            (await node.Http.GetAsync("/l/" + session.QrUrl[(session.QrUrl.LastIndexOf('#') + 1)..] + "?s=" + qrSecret)).EnsureSuccessStatusCode();
            await api.ScanAndApproveAsync(phone.AccessToken, session);
            (await api.ClaimAsync(session)).EnsureStatus(200);

            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (DateTime.UtcNow < deadline && !(Has(receiver, "/v1/metrics", "qrorleans.ceremony.duration") && Has(receiver, "/v1/traces", "/l/{token}")
                && Has(receiver, "/v1/traces", "qr_session.claim")))
            {
                await Task.Delay(100);
            }
        }
        finally
        {
            await node.DisposeAsync(); // flushes what is still buffered
        }

        Assert.True(Has(receiver, "/v1/metrics", silo) && Has(receiver, "/v1/traces", silo), "service.instance.id is not the silo address");
        Assert.True(Has(receiver, "/v1/metrics", "QrOrleans"), "no metrics body named the QrOrleans meter");
        Assert.True(Has(receiver, "/v1/metrics", "qrorleans.qr_session.transitions"));
        Assert.True(Has(receiver, "/v1/metrics", "qrorleans.ceremony.duration"));
        Assert.True(Has(receiver, "/v1/metrics", "http.server.request.duration"), "no ASP.NET Core metrics");
        Assert.True(Has(receiver, "/v1/metrics", "Microsoft.Orleans"), "no Orleans metrics");
        Assert.True(Has(receiver, "/v1/traces", "QrOrleans"), "no traces body named the QrOrleans source");
        Assert.True(Has(receiver, "/v1/traces", "Microsoft.Orleans.Application"), "no grain-call spans");
        foreach (var step in new[] { "qr_session.create", "qr_session.scan", "qr_session.approve", "qr_session.claim" })
        {
            Assert.True(Has(receiver, "/v1/traces", step), "no span " + step);
        }
        Assert.All(receiver.Requests, r =>
        {
            Assert.Equal("application/x-protobuf", r.ContentType);
            Assert.NotEmpty(r.Body);
        });
        // The /l/ page's request span is exported, its path reduced to the route and its query dropped.
        var spans = receiver.Requests.Where(r => r.Path == "/v1/traces").SelectMany(r => OtlpSpans.Read(r.Body)).ToList();
        Assert.Contains(spans, s => s.Name == "GET /l/{token}");
        Assert.DoesNotContain(receiver.Requests, r => Encoding.Latin1.GetString(r.Body).Contains(qrSecret, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Every_span_of_a_ceremony_shares_its_trace_and_hangs_under_an_exported_parent()
    {
        await using var receiver = await OtlpReceiver.StartAsync();
        var node = await GatewayNode.StartAsync(Exporting(receiver));
        try
        {
            var api = new ApiClient(node.Http);
            var phone = await api.NewPhoneAsync();
            var session = await api.CreateSessionAsync();
            (await api.ScanAsync(phone.AccessToken, session.QrUrl)).EnsureStatus(200);
            var scanned = await api.SnapshotAsync(session);
            Assert.False(scanned.Body.TryGetProperty("traceParent", out _), "the trace context is the gateway's, not the desktop's");
            var number = scanned.Body.GetProperty("numberMatch").GetString()!;
            var waiting = api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}?waitForVersion=2&timeout=10", null, session.DesktopToken);
            await Task.Delay(200);
            (await api.ApproveAsync(phone.AccessToken, session.SessionId, number)).EnsureStatus(200);
            Assert.Equal("approved", (await waiting).EnsureStatus(200).Body.GetProperty("state").GetString());
            (await api.ClaimAsync(session)).EnsureStatus(200);
            (await api.ClaimAsync(session)).EnsureStatus(410); // a refused step is a span of the same trace
        }
        finally
        {
            await node.DisposeAsync(); // flushes every span
        }

        var spans = receiver.Requests.Where(r => r.Path == "/v1/traces").SelectMany(r => OtlpSpans.Read(r.Body)).ToList();
        var root = Assert.Single(spans, s => s.Name == "qr_session.create");
        Assert.Null(root.ParentSpanId);
        var ceremony = spans.Where(s => s.TraceId == root.TraceId).ToList();
        var steps = ceremony.Where(s => s.Name.StartsWith("qr_session.", StringComparison.Ordinal)).Select(s => s.Name).ToList();
        Assert.Equal(
            new[] { "qr_session.create", "qr_session.scan", "qr_session.approve", "qr_session.notify", "qr_session.claim", "qr_session.claim" }.Order(),
            steps.Order());
        // No ceremony step anywhere else: every one is in the session's trace.
        Assert.Equal(steps.Count, spans.Count(s => s.Name.StartsWith("qr_session.", StringComparison.Ordinal)));
        var exported = ceremony.Select(s => s.SpanId).ToHashSet();
        Assert.All(ceremony, s => Assert.True(s.ParentSpanId is null ? s == root : exported.Contains(s.ParentSpanId),
            $"{s.Name} hangs under {s.ParentSpanId}, which was not exported"));
        Assert.Single(ceremony, s => s.ParentSpanId is null);
        // What a step does inside (grain calls, storage) hangs under it, in the same trace.
        Assert.Contains(ceremony, s => !s.Name.StartsWith("qr_session.", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_per_signal_endpoint_is_used_as_is_and_exports_that_signal_alone()
    {
        await using var receiver = await OtlpReceiver.StartAsync();
        await using (var node = await GatewayNode.StartAsync(new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = receiver.Endpoint + "/collector/spans",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
        }))
        {
            Assert.Null(node.Services.GetService<OpenTelemetry.Metrics.MeterProvider>());
            var api = new ApiClient(node.Http);
            (await api.CancelAsync(await api.CreateSessionAsync())).EnsureStatus(200);
        }
        Assert.NotEmpty(receiver.Requests);
        Assert.All(receiver.Requests, r => Assert.Equal("/collector/spans", r.Path));
        Assert.True(Has(receiver, "/collector/spans", "qr_session.cancel"));
    }

    [Fact]
    public async Task Nothing_is_exported_without_an_endpoint()
    {
        await using var node = await GatewayNode.StartAsync();
        Assert.Null(node.Services.GetService<OpenTelemetry.Trace.TracerProvider>());
        Assert.Null(node.Services.GetService<OpenTelemetry.Metrics.MeterProvider>());
        Assert.False(QrOrleans.Gateway.Observability.QrTelemetry.Source.HasListeners(), "spans would be made for no one");
    }

    private static bool Has(OtlpReceiver receiver, string path, string text) => receiver.Requests.Any(r => r.Path == path && r.Body.Length > 0
        && Encoding.Latin1.GetString(r.Body).Contains(text, StringComparison.Ordinal));
}
