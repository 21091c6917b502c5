using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime;
using StackExchange.Redis;

namespace QrOrleans.Silo.Hosting;

/// <summary>One check of <c>/readyz</c>: its name, whether it passed, and why not.</summary>
public sealed record ReadinessCheck(string Name, bool Healthy, string Detail);

/// <summary>
/// <c>/healthz</c> says the process is up; <c>/readyz</c> says this node can serve: Redis answers (Redis mode), and
/// this silo is Active in Orleans membership (or, for a client gateway, the cluster answers). 503 when a check fails.
/// </summary>
public static class Readiness
{
    public static IEndpointRouteBuilder MapHealthProbes(this IEndpointRouteBuilder app)
    {
        app.MapGet("/healthz", () => TypedResults.Text("ok")).ExcludeFromDescription();
        app.MapGet("/readyz", async (IServiceProvider services, CancellationToken ct) =>
        {
            var checks = await CheckAsync(services, ct);
            var ready = checks.All(c => c.Healthy);
            return Results.Json(new { status = ready ? "ready" : "not_ready", checks }, statusCode: ready ? 200 : 503);
        }).ExcludeFromDescription();
        return app;
    }

    public static async Task<IReadOnlyList<ReadinessCheck>> CheckAsync(IServiceProvider services, CancellationToken ct)
    {
        var cluster = services.GetRequiredService<ClusterSettings>();
        var checks = new List<ReadinessCheck>();
        if (cluster.Provider == ClusterProvider.Redis)
        {
            checks.Add(await RedisAsync(services.GetRequiredService<RedisProbe>(), ct));
        }
        if (services.GetService<IClusterMembershipService>() is { } membership)
        {
            var self = services.GetRequiredService<ILocalSiloDetails>().SiloAddress;
            var status = membership.CurrentSnapshot.GetSiloStatus(self);
            checks.Add(new ReadinessCheck("silo", status == SiloStatus.Active, $"this silo is {status}"));
        }
        else
        {
            checks.Add(await ClusterAsync(services.GetRequiredService<IClusterClient>(), ct));
        }
        return checks;
    }

    private static async Task<ReadinessCheck> RedisAsync(RedisProbe probe, CancellationToken ct)
    {
        try
        {
            var latency = await probe.PingAsync().WaitAsync(TimeSpan.FromSeconds(2), ct);
            return new ReadinessCheck("redis", true, $"ping {latency.TotalMilliseconds:0.#} ms");
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            return new ReadinessCheck("redis", false, e.GetType().Name);
        }
    }

    private static async Task<ReadinessCheck> ClusterAsync(IClusterClient client, CancellationToken ct)
    {
        try
        {
            var hosts = await client.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true).WaitAsync(TimeSpan.FromSeconds(2), ct);
            return new ReadinessCheck("cluster", hosts.Count > 0, $"{hosts.Count} active silos");
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            return new ReadinessCheck("cluster", false, e.GetType().Name);
        }
    }
}

/// <summary>A connection of its own for the readiness probe, made on first use and kept.</summary>
public sealed class RedisProbe(ClusterSettings cluster) : IAsyncDisposable
{
    private readonly Lazy<Task<ConnectionMultiplexer>> _connection = new(() =>
    {
        var options = ConfigurationOptions.Parse(cluster.RequireRedis());
        options.AbortOnConnectFail = false;
        return ConnectionMultiplexer.ConnectAsync(options);
    });

    public async Task<TimeSpan> PingAsync() => await (await _connection.Value.ConfigureAwait(false)).GetDatabase().PingAsync().ConfigureAwait(false);

    public async ValueTask DisposeAsync()
    {
        if (_connection.IsValueCreated)
        {
            await (await _connection.Value.ConfigureAwait(false)).DisposeAsync().ConfigureAwait(false);
        }
    }
}
