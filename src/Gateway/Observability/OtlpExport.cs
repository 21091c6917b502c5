using System.Diagnostics;
using System.Globalization;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace QrOrleans.Gateway.Observability;

/// <summary>
/// Exports the "QrOrleans" meter and activity source (and ASP.NET Core's request spans and HTTP metrics) over OTLP,
/// only when OTEL_EXPORTER_OTLP_ENDPOINT is set (environment or any configuration source). OTLP/HTTP with protobuf
/// bodies unless OTEL_EXPORTER_OTLP_PROTOCOL=grpc. The providers are built by hand because
/// OpenTelemetry.Extensions.Hosting cannot be restored here.
/// </summary>
public sealed class OtlpExport(IConfiguration config, Orleans.Runtime.ILocalSiloDetails? silo = null) : IHostedService, IDisposable
{
    public const string EndpointKey = "OTEL_EXPORTER_OTLP_ENDPOINT";

    /// <summary>ASP.NET Core's own sources: server spans (which continue a caller's traceparent) and HTTP metrics.</summary>
    private const string AspNetCore = "Microsoft.AspNetCore";

    private MeterProvider? _meters;
    private TracerProvider? _traces;

    public static bool Enabled(IConfiguration config) => !string.IsNullOrWhiteSpace(config[EndpointKey]);

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (!Enabled(config))
        {
            return Task.CompletedTask;
        }
        var grpc = string.Equals(config["OTEL_EXPORTER_OTLP_PROTOCOL"], "grpc", StringComparison.OrdinalIgnoreCase);
        var metricInterval = Milliseconds("OTEL_METRIC_EXPORT_INTERVAL", 60_000);
        var spanDelay = Milliseconds("OTEL_BSP_SCHEDULE_DELAY", 5_000);
        var serviceName = config["OTEL_SERVICE_NAME"] is { Length: > 0 } name ? name : "qrorleans";
        void Resource(ResourceBuilder r) => r.AddService(serviceName, serviceInstanceId: silo?.SiloAddress.ToParsableString() ?? Environment.MachineName + "-" + Environment.ProcessId);

        _meters = Sdk.CreateMeterProviderBuilder()
            .ConfigureResource(Resource)
            .AddMeter(QrTelemetry.Name, AspNetCore + ".Hosting")
            .AddOtlpExporter((exporter, reader) =>
            {
                Configure(exporter, "metrics", grpc);
                reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = metricInterval;
            })
            .Build();
        _traces = Sdk.CreateTracerProviderBuilder()
            .ConfigureResource(Resource)
            .AddSource(QrTelemetry.Name, AspNetCore)
            .AddProcessor(new RedactUrls())
            .AddOtlpExporter(exporter =>
            {
                Configure(exporter, "traces", grpc);
                exporter.BatchExportProcessorOptions.ScheduledDelayMilliseconds = spanDelay;
            })
            .Build();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        // Flush what is buffered so a clean shutdown loses nothing.
        _traces?.ForceFlush(2_000);
        _meters?.ForceFlush(2_000);
        return Task.CompletedTask;
    }

    public void Dispose()
    {
        _traces?.Dispose();
        _meters?.Dispose();
    }

    private void Configure(OtlpExporterOptions exporter, string signal, bool grpc)
    {
        exporter.Protocol = grpc ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf;
        // As the specification says: a signal's own endpoint is used as is; the base endpoint gets /v1/<signal> over HTTP.
        var own = config[$"OTEL_EXPORTER_OTLP_{signal.ToUpperInvariant()}_ENDPOINT"];
        var baseEndpoint = config[EndpointKey]!.TrimEnd('/');
        exporter.Endpoint = new Uri(own is { Length: > 0 } ? own : grpc ? baseEndpoint : $"{baseEndpoint}/v1/{signal}");
        if (config["OTEL_EXPORTER_OTLP_HEADERS"] is { Length: > 0 } headers)
        {
            exporter.Headers = headers;
        }
    }

    private int Milliseconds(string key, int fallback) =>
        int.TryParse(config[key], NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms) && ms > 0 ? ms : fallback;

    /// <summary>
    /// Request spans carry the path, and /l/{token} is a page whose path holds a live QR secret: the path is
    /// reduced to its route, and query strings are dropped, before anything is exported.
    /// </summary>
    private sealed class RedactUrls : BaseProcessor<Activity>
    {
        public override void OnEnd(Activity data)
        {
            foreach (var key in new[] { "url.path", "http.target" })
            {
                if (data.GetTagItem(key) is string path)
                {
                    data.SetTag(key, RequestLog.RedactPath(path));
                }
            }
            foreach (var key in new[] { "url.query", "url.full", "http.url" })
            {
                if (data.GetTagItem(key) is not null)
                {
                    data.SetTag(key, null);
                }
            }
        }
    }
}
