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
/// An OTLP exporter listens to every Meter named "QrOrleans" in the process. In production a process is one node;
/// here other tests start nodes of their own, whose same-named instruments would compete with this node's. So this
/// test runs alone.
/// </summary>
[CollectionDefinition("OtlpExport", DisableParallelization = true)]
public sealed class OtlpExportCollection;

/// <summary>Metrics and ceremony spans leave over OTLP/HTTP (protobuf) when OTEL_EXPORTER_OTLP_ENDPOINT is set.</summary>
[Collection("OtlpExport")]
public sealed class OtlpExportTests
{
    [Fact]
    public async Task A_ceremony_exports_the_QrOrleans_meter_and_its_spans_to_the_configured_endpoint()
    {
        await using var receiver = await OtlpReceiver.StartAsync();
        string qrSecret;
        var node = await GatewayNode.StartAsync(new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint,
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "300",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
        });
        try
        {
            var api = new ApiClient(node.Http);
            var phone = await api.NewPhoneAsync();
            var session = await api.CreateSessionAsync();
            qrSecret = session.QrUrl[(session.QrUrl.LastIndexOf('.') + 1)..];
            (await node.Http.GetAsync(new Uri(session.QrUrl).PathAndQuery)).EnsureSuccessStatusCode(); // the page whose path holds the secret
            await api.ScanAndApproveAsync(phone.AccessToken, session);
            (await api.ClaimAsync(session)).EnsureStatus(200);

            var deadline = DateTime.UtcNow.AddSeconds(20);
            while (DateTime.UtcNow < deadline && !(Has("/v1/metrics", "qrorleans.ceremony.duration") && Has("/v1/traces", "qr_session.claim")))
            {
                await Task.Delay(100);
            }
        }
        finally
        {
            await node.DisposeAsync(); // flushes what is still buffered
        }

        Assert.True(Has("/v1/metrics", "QrOrleans"), "no metrics body named the QrOrleans meter");
        Assert.True(Has("/v1/metrics", "qrorleans.qr_session.transitions"));
        Assert.True(Has("/v1/metrics", "qrorleans.ceremony.duration"));
        Assert.True(Has("/v1/traces", "QrOrleans"), "no traces body named the QrOrleans source");
        foreach (var step in new[] { "qr_session.create", "qr_session.scan", "qr_session.approve", "qr_session.claim" })
        {
            Assert.True(Has("/v1/traces", step), "no span " + step);
        }
        Assert.All(receiver.Requests, r =>
        {
            Assert.Equal("application/x-protobuf", r.ContentType);
            Assert.NotEmpty(r.Body);
        });
        // Request spans are exported too, but the /l/ page's path is reduced to its route before it leaves.
        Assert.DoesNotContain(receiver.Requests, r => Encoding.Latin1.GetString(r.Body).Contains(qrSecret, StringComparison.Ordinal));

        bool Has(string path, string text) => receiver.Requests.Any(r => r.Path == path && r.Body.Length > 0
            && Encoding.Latin1.GetString(r.Body).Contains(text, StringComparison.Ordinal));
    }

    [Fact]
    public async Task Nothing_is_exported_without_an_endpoint()
    {
        await using var node = await GatewayNode.StartAsync();
        Assert.False(QrOrleans.Gateway.Observability.OtlpExport.Enabled(
            node.Services.GetRequiredService<Microsoft.Extensions.Configuration.IConfiguration>()));
    }
}
