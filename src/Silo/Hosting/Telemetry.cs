using System.Diagnostics;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using QrOrleans.Grains.QrSessions;

namespace QrOrleans.Silo.Hosting;

/// <summary>
/// OpenTelemetry through its hosting package, for every process of the system: a gateway and a headless silo host
/// alike (the ceremony's spans are made by the session grain, wherever it is active). The OTLP exporter is added per
/// signal only when its endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT, or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT /
/// _METRICS_ENDPOINT), in the environment or any configuration source, and the exporter reads the other OTEL_*
/// settings itself; so a node without a collector neither exports nor makes spans.
/// </summary>
public static class Telemetry
{
    /// <summary>Orleans' own instruments (grain calls, activations, reminders, messaging…).</summary>
    private const string OrleansMeter = "Microsoft.Orleans";

    /// <param name="prometheus">Also keep metrics for a Prometheus scrape (the gateway maps /metrics).</param>
    public static IHostApplicationBuilder AddQrOpenTelemetry(this IHostApplicationBuilder builder, bool prometheus = false)
    {
        var config = builder.Configuration;
        var exportTraces = Configured(config, "TRACES");
        var exportMetrics = Configured(config, "METRICS");
        // The exporter reads OTEL_EXPORTER_OTLP_ENDPOINT / _PROTOCOL / _HEADERS itself; what it leaves to
        // UseOtlpExporter (which would also export logs) is applied here: a signal's own endpoint, used as is, and
        // its own protocol and headers; and the specification's default protocol (this exporter alone defaults to gRPC).
        void Otlp(OtlpExporterOptions o, string signal)
        {
            var protocol = config[$"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"] is { Length: > 0 } own ? own : config["OTEL_EXPORTER_OTLP_PROTOCOL"];
            o.Protocol = string.Equals(protocol, "grpc", StringComparison.OrdinalIgnoreCase) ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf;
            if (config[$"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"] is { Length: > 0 } endpoint)
            {
                o.Endpoint = new Uri(endpoint);
            }
            if (config[$"OTEL_EXPORTER_OTLP_{signal}_HEADERS"] is { Length: > 0 } headers)
            {
                o.Headers = headers;
            }
        }

        var otel = builder.Services.AddOpenTelemetry().ConfigureResource(r => r
            .AddService(config["OTEL_SERVICE_NAME"] is { Length: > 0 } name ? name : "qrorleans", autoGenerateServiceInstanceId: false)
            .AddDetector(sp => new InstanceDetector(sp.GetService<Orleans.Runtime.ILocalSiloDetails>())));
        if (exportMetrics || prometheus)
        {
            otel.WithMetrics(m =>
            {
                m.AddMeter(CeremonyTrace.Name, OrleansMeter)
                    .AddAspNetCoreInstrumentation()
                    .AddHttpClientInstrumentation()
                    .AddRuntimeInstrumentation();
                if (exportMetrics)
                {
                    m.AddOtlpExporter((o, _) => Otlp(o, "METRICS"));
                }
                if (prometheus)
                {
                    m.AddPrometheusExporter();
                }
            });
        }
        if (exportTraces)
        {
            otel.WithTracing(t => t
                .AddSource(CeremonyTrace.Name, Orleans.Diagnostics.ActivitySources.AllActivitySourceName)
                .AddAspNetCoreInstrumentation(o => o.EnrichWithHttpRequest = RedactRequest)
                .AddHttpClientInstrumentation(o => o.EnrichWithHttpRequestMessage = RedactOutgoing)
                .AddOtlpExporter(o => Otlp(o, "TRACES")));
        }
        return builder;
    }

    /// <summary>
    /// A code of the earlier shape opens /l/{token}, whose path holds a live QR secret: logs and spans carry its
    /// route instead. Today's codes open /l/ with the token in the fragment, which never reaches the server.
    /// </summary>
    public static string RedactPath(string path) =>
        path.StartsWith("/l/", StringComparison.OrdinalIgnoreCase) && path.Length > 3 ? "/l/{token}" : path;

    private static bool Configured(IConfiguration config, string signal) =>
        !string.IsNullOrWhiteSpace(config["OTEL_EXPORTER_OTLP_ENDPOINT"])
        || !string.IsNullOrWhiteSpace(config[$"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"]);

    /// <summary>A request span carries the path (see <see cref="RedactPath"/>); the query string is dropped too.</summary>
    private static void RedactRequest(Activity activity, HttpRequest request)
    {
        activity.SetTag("url.path", RedactPath(request.Path.Value ?? ""));
        activity.SetTag("url.query", null);
    }

    /// <summary>Outgoing calls (webhooks, connectors) go to URLs whose path may be a credential: only the origin is kept.</summary>
    private static void RedactOutgoing(Activity activity, HttpRequestMessage request)
    {
        if (request.RequestUri is { IsAbsoluteUri: true } uri)
        {
            activity.SetTag("url.full", uri.GetLeftPart(UriPartial.Authority) + "/");
        }
    }

    /// <summary>service.instance.id: the silo address where a silo runs here, else host and process.</summary>
    private sealed class InstanceDetector(Orleans.Runtime.ILocalSiloDetails? silo) : IResourceDetector
    {
        public Resource Detect() => new([new("service.instance.id",
            silo?.SiloAddress.ToParsableString() ?? Environment.MachineName + "-" + Environment.ProcessId)]);
    }
}
