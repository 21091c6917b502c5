using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace QrOrleans.Gateway.Observability;

/// <summary>QrOrleans:Metrics: the Prometheus scrape endpoint, off unless asked for.</summary>
public sealed class MetricsOptions
{
    /// <summary>Serve GET /metrics in the Prometheus text format.</summary>
    public bool Prometheus { get; set; }

    /// <summary>Networks (CIDR, e.g. 10.0.0.0/8) whose scrapers need no operator key.</summary>
    public string[] AllowedNetworks { get; set; } = [];
}

/// <summary>
/// OpenTelemetry through its hosting package. The OTLP exporter is added per signal only when its endpoint is set
/// (OTEL_EXPORTER_OTLP_ENDPOINT, or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / _METRICS_ENDPOINT), in the environment or
/// any configuration source, and the exporter reads the other OTEL_* settings itself; so a node without a
/// collector neither exports nor makes spans.
/// </summary>
public static class OpenTelemetrySetup
{
    private const string MetricsPath = "/metrics";

    /// <summary>Orleans' own instruments (grain calls, activations, reminders, messaging…).</summary>
    private const string OrleansMeter = "Microsoft.Orleans";

    public static WebApplicationBuilder AddQrOpenTelemetry(this WebApplicationBuilder builder, IConfigurationSection section)
    {
        var config = builder.Configuration;
        var metrics = section.GetSection("Metrics").Get<MetricsOptions>() ?? new MetricsOptions();
        var networks = metrics.AllowedNetworks.Select(n => IPNetwork.Parse(n.Trim())).ToArray();
        builder.Services.AddSingleton(new PrometheusAccess(networks));
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
        if (exportMetrics || metrics.Prometheus)
        {
            otel.WithMetrics(m =>
            {
                m.AddMeter(QrTelemetry.Name, OrleansMeter)
                    .AddAspNetCoreInstrumentation()
                    .AddHttpClientInstrumentation()
                    .AddRuntimeInstrumentation();
                if (exportMetrics)
                {
                    m.AddOtlpExporter((o, _) => Otlp(o, "METRICS"));
                }
                if (metrics.Prometheus)
                {
                    m.AddPrometheusExporter();
                }
            });
        }
        if (exportTraces)
        {
            otel.WithTracing(t => t
                .AddSource(QrTelemetry.Name, Orleans.Diagnostics.ActivitySources.AllActivitySourceName)
                .AddAspNetCoreInstrumentation(o => o.EnrichWithHttpRequest = RedactRequest)
                .AddHttpClientInstrumentation(o => o.EnrichWithHttpRequestMessage = RedactOutgoing)
                .AddOtlpExporter(o => Otlp(o, "TRACES")));
        }
        builder.Services.AddSingleton(metrics);
        return builder;
    }

    /// <summary>GET /metrics when QrOrleans:Metrics:Prometheus is on: the operator key, or a scraper of an allowed network.</summary>
    public static WebApplication MapQrMetrics(this WebApplication app)
    {
        if (app.Services.GetRequiredService<MetricsOptions>().Prometheus)
        {
            app.MapPrometheusScrapingEndpoint(MetricsPath, meterProvider: null,
                configureBranchedPipeline: branch => branch.Use(async (context, next) =>
                {
                    context.RequestServices.GetRequiredService<PrometheusAccess>().Require(context);
                    await next(context).ConfigureAwait(false);
                }), optionsName: null).ExcludeFromDescription();
        }
        return app;
    }

    private static bool Configured(IConfiguration config, string signal) =>
        !string.IsNullOrWhiteSpace(config["OTEL_EXPORTER_OTLP_ENDPOINT"])
        || !string.IsNullOrWhiteSpace(config[$"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"]);

    /// <summary>
    /// A request span carries the path, and /l/{token} is a page whose path holds a live QR secret: the path is
    /// reduced to its route and the query string is dropped before anything is exported.
    /// </summary>
    private static void RedactRequest(Activity activity, HttpRequest request)
    {
        activity.SetTag("url.path", RequestLog.RedactPath(request.Path.Value ?? ""));
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

/// <summary>Who may read /metrics: the operator (X-Api-Key) or an address in QrOrleans:Metrics:AllowedNetworks.</summary>
public sealed class PrometheusAccess(IReadOnlyList<IPNetwork> networks)
{
    public void Require(HttpContext context)
    {
        var ip = context.Connection.RemoteIpAddress;
        if (ip is not null && ip.IsIPv4MappedToIPv6)
        {
            ip = ip.MapToIPv4();
        }
        if (ip is not null && networks.Any(n => n.Contains(ip)))
        {
            return;
        }
        var given = context.Request.Headers["X-Api-Key"].ToString();
        var key = context.RequestServices.GetRequiredService<GatewayOptions>().AdminApiKey;
        if (given.Length == 0)
        {
            throw Errors.Unauthenticated("Send the operator key in the X-Api-Key header, or scrape from an allowed network.");
        }
        if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(given), Encoding.UTF8.GetBytes(key)))
        {
            throw Errors.Unauthenticated("The X-Api-Key header is not the operator key.");
        }
    }
}
