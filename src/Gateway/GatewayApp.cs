using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using QrOrleans.Gateway.Accounts;
using QrOrleans.Gateway.ApiReference;
using QrOrleans.Gateway.Auth;
using QrOrleans.Gateway.Cluster;
using QrOrleans.Gateway.Dashboard;
using QrOrleans.Gateway.Observability;
using QrOrleans.Gateway.Problems;
using QrOrleans.Gateway.Pages;
using QrOrleans.Gateway.QrSessions;
using QrOrleans.Gateway.Users;
using QrOrleans.Grains.QrSessions;
using QrOrleans.Silo.Accounts;
using QrOrleans.Silo.Hosting;

namespace QrOrleans.Gateway;

/// <summary>Builds the gateway with a co-hosted silo. Tests use the same entry point with their own settings.</summary>
public static class GatewayApp
{
    public static WebApplication Create(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        builder.Logging.AddJsonConsole(o => o.IncludeScopes = false);
        configure?.Invoke(builder);

        var section = builder.Configuration.GetSection("QrOrleans");
        var gateway = section.Get<GatewayOptions>() ?? new GatewayOptions();
        var generatedKey = string.IsNullOrEmpty(gateway.AdminApiKey);
        if (generatedKey)
        {
            gateway.AdminApiKey = Grains.Secrets.NewToken(24);
        }
        var cluster = section.GetSection("Cluster").Get<ClusterSettings>() ?? new ClusterSettings();

        builder.Services.AddSingleton(gateway);
        builder.Services.AddSingleton(new StartupNotice(generatedKey));
        builder.Services.AddQrGrainServices(section, cluster);
        if (cluster.Role == ClusterRole.Client)
        {
            // The gateway in front of a cluster of src/Silo hosts: no grains run here.
            builder.UseOrleansClient(client => client.UseQrOrleansClient(cluster));
            builder.Services.AddSingleton<IClusterConnectionStatusObserver, ClusterConnection>();
        }
        else
        {
            builder.UseOrleans(silo => silo.UseQrOrleansSilo(cluster).AddQrFleet());
        }
        builder.Services.AddSingleton<SessionWatches>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<SessionWatches>());
        builder.Services.AddQrAccessTokens();
        builder.AddQrObservability(section);
        builder.Services.AddDashboard(gateway.RateLimiting);
        builder.Services.ConfigureHttpJsonOptions(o =>
            o.SerializerOptions.DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull);
        builder.Services.AddSignalR();
        builder.Services.AddQrRateLimits(gateway.RateLimiting);
        builder.Services.AddApiReference();
        builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = gateway.MaxRequestBodyBytes);
        builder.Services.AddHostedService<DemoSeeder>();

        var app = builder.Build();
        app.UseQrForwardedHeaders();
        app.Lifetime.ApplicationStarted.Register(() => ResolvePublicOrigin(app.Services));
        app.UseQrObservability();
        app.UseProblemResponses();
        app.UseDefaultFiles();
        app.UseStaticFiles();
        app.UseRateLimiter();
        app.UseQrAuthentication();

        app.MapApiReference();
        // One group for the APIs, so that each request that met a write conflict is run again once, here.
        var api = app.MapGroup("").WithConflictRetry();
        api.MapQrSessionsApi();
        api.MapDevicesApi();
        api.MapClusterApi();
        api.MapAccountsApi();
        api.MapAuditApi();
        app.MapDashboard();
        app.MapHub<QrHub>("/hubs/qr");
        app.MapPages();
        app.MapHealthProbes();
        app.MapQrMetrics();
        app.MapGet("/.well-known/jwks.json", async (AccessTokens tokens, CancellationToken ct) => TypedResults.Ok(await tokens.JwksAsync(ct)))
            .ExcludeFromDescription();
        return app;
    }

    /// <summary>The address QR codes point at: configured, or the first address the server listens on.</summary>
    public static string ResolvePublicOrigin(IServiceProvider services)
    {
        var qr = services.GetRequiredService<QrSessionOptions>();
        if (!string.IsNullOrEmpty(qr.PublicOrigin))
        {
            return qr.PublicOrigin;
        }
        var addresses = services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses;
        qr.PublicOrigin = (addresses?.FirstOrDefault() ?? "http://localhost:5000").Replace("://[::]", "://localhost", StringComparison.Ordinal)
            .Replace("://0.0.0.0", "://localhost", StringComparison.Ordinal).Replace("://+", "://localhost", StringComparison.Ordinal);
        return qr.PublicOrigin;
    }
}

/// <summary>Whether the admin key was generated here (and must be printed for the operator).</summary>
public sealed record StartupNotice(bool AdminKeyGenerated);
