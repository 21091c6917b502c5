using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Orleans.Runtime;
using StackExchange.Redis;

namespace QrOrleans.Silo.Hosting;

/// <summary>
/// <c>/healthz</c> says the process is up (no checks: an orchestrator must not restart a node because Redis is
/// away); <c>/readyz</c> says this node can serve: Redis answers (Redis mode), and this silo is Active in Orleans
/// membership (or, for a client gateway, the cluster answers). 503 when a check is unhealthy.
/// </summary>
public static class Readiness
{
    // Within the orchestrator's probe timeout, and short enough that a Redis outage shows within seconds.
    private static readonly TimeSpan CheckTimeout = TimeSpan.FromSeconds(2);

    public static IServiceCollection AddQrHealthChecks(this IServiceCollection services, ClusterSettings cluster)
    {
        var checks = services.AddHealthChecks();
        if (cluster.Provider == ClusterProvider.Redis)
        {
            // Its own connection (the check keeps one per configuration string); StackExchange.Redis would otherwise
            // hold a ping queued for 5 s while it reconnects.
            var probe = ConfigurationOptions.Parse(cluster.RequireRedis());
            probe.ConnectTimeout = (int)CheckTimeout.TotalMilliseconds;
            probe.AsyncTimeout = (int)CheckTimeout.TotalMilliseconds;
            checks.AddRedis(probe.ToString(), name: "redis", timeout: CheckTimeout);
        }
        if (cluster.Role == ClusterRole.Client)
        {
            checks.AddCheck<ClusterAnswers>("cluster", timeout: CheckTimeout);
        }
        else
        {
            checks.AddCheck<SiloIsActive>("silo", timeout: CheckTimeout);
        }
        return services;
    }

    public static IEndpointRouteBuilder MapHealthProbes(this IEndpointRouteBuilder app)
    {
        app.MapGet("/healthz", () => TypedResults.Text("ok")).ExcludeFromDescription();
        app.MapHealthChecks("/readyz", new HealthCheckOptions { ResponseWriter = WriteReport })
            .WithMetadata(new HttpMethodMetadata([HttpMethods.Get, HttpMethods.Head]))
            .ExcludeFromDescription();
        return app;
    }

    // Unhealthy answers 503 (HealthCheckOptions' default status codes); Degraded still serves.
    private static Task WriteReport(HttpContext context, HealthReport report) =>
        context.Response.WriteAsJsonAsync(new
        {
            status = report.Status == HealthStatus.Unhealthy ? "not_ready" : "ready",
            checks = report.Entries.Select(e => new
            {
                name = e.Key,
                status = e.Value.Status.ToString(),
                healthy = e.Value.Status != HealthStatus.Unhealthy,
                // the exception's type only: its message may name hosts, and the probe is anonymous
                detail = e.Value.Description ?? e.Value.Exception?.GetType().Name ?? $"{e.Value.Duration.TotalMilliseconds:0.#} ms",
            }),
        });
}

/// <summary>This silo is Active in Orleans membership (not still joining, nor shutting down or declared dead).</summary>
internal sealed class SiloIsActive(IClusterMembershipService membership, ILocalSiloDetails self) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var status = membership.CurrentSnapshot.GetSiloStatus(self.SiloAddress);
        var detail = $"this silo is {status}";
        return Task.FromResult(status == SiloStatus.Active ? HealthCheckResult.Healthy(detail) : HealthCheckResult.Unhealthy(detail));
    }
}

/// <summary>A client gateway's cluster answers and has at least one Active silo.</summary>
internal sealed class ClusterAnswers(IClusterClient client) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var hosts = await client.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true).WaitAsync(cancellationToken);
        var detail = $"{hosts.Count} active silos";
        return hosts.Count > 0 ? HealthCheckResult.Healthy(detail) : HealthCheckResult.Unhealthy(detail);
    }
}
