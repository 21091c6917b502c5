using System.Net;
using QrOrleans.Silo.Hosting;

namespace QrOrleans.Gateway.Observability;

/// <summary>QrOrleans:Metrics: the Prometheus scrape endpoint, off unless asked for.</summary>
public sealed class MetricsOptions
{
    /// <summary>Serve GET /metrics in the Prometheus text format.</summary>
    public bool Prometheus { get; set; }

    /// <summary>Networks (CIDR, e.g. 10.0.0.0/8) whose scrapers need no operator key.</summary>
    public string[] AllowedNetworks { get; set; } = [];
}

/// <summary>The gateway's telemetry: the system's (see <see cref="Telemetry"/>) and the Prometheus scrape endpoint.</summary>
public static class OpenTelemetrySetup
{
    private const string MetricsPath = "/metrics";

    public static WebApplicationBuilder AddQrOpenTelemetry(this WebApplicationBuilder builder, IConfigurationSection section)
    {
        var metrics = section.GetSection("Metrics").Get<MetricsOptions>() ?? new MetricsOptions();
        var networks = metrics.AllowedNetworks.Select(n => IPNetwork.Parse(n.Trim())).ToArray();
        builder.Services.AddSingleton(new PrometheusAccess(networks));
        builder.Services.AddSingleton(metrics);
        Telemetry.AddQrOpenTelemetry(builder, metrics.Prometheus);
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
        if (!Grains.Secrets.FixedTimeEquals(given, key))
        {
            throw Errors.Unauthenticated("The X-Api-Key header is not the operator key.");
        }
    }
}
