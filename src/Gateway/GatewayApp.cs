using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using QrOrleans.Gateway.Accounts;
using QrOrleans.Gateway.Auth;
using QrOrleans.Gateway.Cluster;
using QrOrleans.Gateway.Dashboard;
using QrOrleans.Gateway.Observability;
using QrOrleans.Gateway.Problems;
using QrOrleans.Gateway.Pages;
using QrOrleans.Gateway.QrSessions;
using QrOrleans.Gateway.Users;
using QrOrleans.Grains.QrSessions;
using QrOrleans.Runtime;
using QrOrleans.Silo;

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
        var qr = section.GetSection("QrSession").Get<QrSessionOptions>() ?? new QrSessionOptions();
        qr.PublicOrigin = gateway.PublicOrigin;
        var storage = section.GetSection("Storage");

        builder.Services.AddSingleton(gateway);
        builder.Services.AddSingleton(qr);
        builder.Services.AddSingleton(section.GetSection("Accounts").Get<Grains.Accounts.AccountOptions>() ?? new Grains.Accounts.AccountOptions());
        builder.Services.AddSingleton(new StartupNotice(generatedKey));
        builder.Services.AddQrSilo(silo =>
        {
            section.GetSection("Silo").Bind(silo);
            silo.Provider = storage.GetValue("Provider", StorageProvider.Memory);
            silo.ConnectionString = storage.GetValue<string>("ConnectionString");
        });
        builder.Services.AddSingleton<AccessTokens>();
        // Connectors hold per-account memory (cursors, context tokens): one instance each per node. Their
        // long-polls wait up to ~35 s, so the shared client's timeout sits above that.
        var connectorHttp = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        builder.Services.AddSingleton<QrOrleans.Accounts.IPlatformConnector>(_ => new Grains.Connectors.ILink.ILinkConnector(connectorHttp));
        builder.Services.AddSingleton<QrOrleans.Accounts.IPlatformConnector>(sp => new Grains.Connectors.QrOrleansServer.QrOrleansConnector(
            connectorHttp, () => new Uri(ResolvePublicOrigin(sp))));
        builder.AddQrObservability(section);
        builder.Services.AddDashboard(gateway.RateLimiting);
        var vaultOptions = section.GetSection("Vault").Get<Grains.Vault.VaultOptions>() ?? new Grains.Vault.VaultOptions();
        builder.Services.AddSingleton<QrOrleans.Accounts.ICredentialVault>(sp => new Grains.Vault.CredentialVault(vaultOptions,
            warning => sp.GetRequiredService<ILoggerFactory>().CreateLogger("QrOrleans.Vault").LogWarning("{Warning}", warning)));
        builder.Services.ConfigureHttpJsonOptions(o =>
            o.SerializerOptions.DefaultIgnoreCondition = System.Text.Json.Serialization.JsonIgnoreCondition.WhenWritingNull);
        builder.Services.AddSignalR();
        builder.Services.AddQrRateLimits(gateway.RateLimiting);
        builder.Services.AddOpenApi();
        builder.Services.Configure<RouteHandlerOptions>(o => o.ThrowOnBadRequest = true);
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = gateway.MaxRequestBodyBytes);
        builder.Services.AddHostedService<DemoSeeder>();

        var app = builder.Build();
        app.Lifetime.ApplicationStarted.Register(() => ResolvePublicOrigin(app.Services));
        app.UseQrObservability();
        app.UseProblemResponses();
        app.UseDefaultFiles();
        app.UseStaticFiles();
        app.UseRateLimiter();

        app.MapOpenApi("/openapi/{documentName}.json");
        app.MapQrSessionsApi();
        app.MapDevicesApi();
        app.MapClusterApi();
        app.MapAccountsApi();
        app.MapAuditApi();
        app.MapDashboard();
        app.MapHub<QrHub>("/hubs/qr");
        app.MapPages();
        app.MapGet("/healthz", () => TypedResults.Text("ok")).ExcludeFromDescription();
        app.MapGet("/readyz", async (IGrainRuntime runtime, CancellationToken ct) =>
        {
            // One read through the provider: proves the store answers.
            await runtime.ReadAsync<object>(new GrainId("health", "probe"), ct);
            return TypedResults.Text("ready");
        }).ExcludeFromDescription();
        app.MapGet("/.well-known/jwks.json", async (AccessTokens tokens, CancellationToken ct) => TypedResults.Ok(await tokens.JwksAsync(ct)))
            .ExcludeFromDescription();
        return app;
    }

    /// <summary>The address QR codes point at: configured, or the first address the server listens on.</summary>
    public static string ResolvePublicOrigin(IServiceProvider services)
    {
        var qr = services.GetRequiredService<QrSessionOptions>();
        var listening = services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses.FirstOrDefault();
        if (listening is not null)
        {
            services.GetRequiredService<Silo.Runtime.SiloIdentity>().Address = listening;
        }
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
