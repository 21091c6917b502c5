using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using QrOrleans.Accounts;
using QrOrleans.Grains;
using QrOrleans.Grains.Accounts;
using QrOrleans.Grains.Connectors.ILink;
using QrOrleans.Grains.Connectors.QrOrleansServer;
using QrOrleans.Grains.Vault;
using QrOrleans.Silo.Accounts;
using QrOrleans.Grains.Audit;
using QrOrleans.Grains.QrSessions;

namespace QrOrleans.Silo.Hosting;

/// <summary>
/// What the grains need from their silo, from the <c>QrOrleans</c> configuration section: the same on a gateway
/// that co-hosts a silo and on a headless <c>src/Silo</c> host, so the two never disagree about timings.
/// </summary>
public static class GrainServices
{
    /// <param name="section">The <c>QrOrleans</c> section.</param>
    public static IServiceCollection AddQrGrainServices(this IServiceCollection services, IConfiguration section, ClusterSettings cluster)
    {
        var qr = section.GetSection("QrSession").Get<QrSessionOptions>() ?? new QrSessionOptions();
        qr.PublicOrigin = section.GetValue<string>("PublicOrigin") ?? "";
        qr.RecoveryPeriod = cluster.RecoveryReminderPeriod;
        if (section.GetValue<bool?>("QrSession:RecoveryReminder") is null)
        {
            qr.RecoveryReminder = cluster.Provider != ClusterProvider.Localhost;
        }
        services.TryAddSingleton(qr);
        services.TryAddSingleton(section.GetSection("Audit").Get<AuditOptions>() ?? new AuditOptions());
        services.TryAddSingleton<ActivationCensus>();
        services.TryAddKeyedSingleton(OrleansNames.Clock, TimeProvider.System);
        services.TryAddSingleton(cluster);
        services.AddQrHealthChecks(cluster);

        // The agent fleet: its timings, the vault, and the connectors beside the sandbox. Connectors hold
        // per-account memory (cursors, context tokens): one instance each per node. Their long-polls wait up to
        // ~35 s, so the shared client's timeout sits above that.
        services.TryAddSingleton(section.GetSection("Accounts").Get<AccountOptions>() ?? new AccountOptions());
        var connectorHttp = new HttpClient { Timeout = TimeSpan.FromSeconds(60) };
        services.AddSingleton<IPlatformConnector>(_ => new ILinkConnector(connectorHttp));
        // An agent links itself to this very cluster by default: QR URLs and the connector share the public origin.
        services.AddSingleton<IPlatformConnector>(sp => new QrOrleansConnector(connectorHttp, () => new Uri(sp.GetRequiredService<QrSessionOptions>().PublicOrigin)));
        var vaultOptions = section.GetSection("Vault").Get<VaultOptions>() ?? new VaultOptions();
        services.TryAddSingleton<ICredentialVault>(_ => new CredentialVault(vaultOptions));
        services.AddHostedService<VaultStartupCheck>();
        services.AddQrFleet();
        return services;
    }
}
