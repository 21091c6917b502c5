using QrOrleans.Grains.Audit;

namespace QrOrleans.Gateway.Observability;

/// <summary>Metrics, traces, the redacting request log, this node's dashboard figures and the audit trail.</summary>
public static class ObservabilitySetup
{
    public static WebApplicationBuilder AddQrObservability(this WebApplicationBuilder builder, IConfigurationSection section)
    {
        var services = builder.Services;
        builder.Logging.AddRedactingFilters();
        services.AddMetrics();
        services.AddSingleton<QrTelemetry>();
        services.AddSingleton<NodeStats>();
        services.AddSingleton<CeremonyTelemetry>();
        services.AddSingleton(section.GetSection("Audit").Get<AuditOptions>() ?? new AuditOptions());
        services.AddSingleton<AuditTrail>();
        builder.AddQrOpenTelemetry(section);
        return builder;
    }

    public static IApplicationBuilder UseQrObservability(this IApplicationBuilder app) => app.UseRequestLog();
}
