using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using QrOrleans.Accounts;
using QrOrleans.Grains;
using QrOrleans.Grains.Accounts;
using QrOrleans.Grains.Connectors.Sandbox;
using QrOrleans.Silo.Hosting;

namespace QrOrleans.Silo.Accounts;

public static class FleetHosting
{
    /// <summary>
    /// What a silo of the agent fleet needs besides the grains themselves: <see cref="AddQrFleet(IServiceCollection)"/>,
    /// the recovery reminder's period (the cluster's <see cref="ClusterSettings.RecoveryReminderPeriod"/>), and the
    /// <see cref="FleetWatch"/> that wakes the accounts of a dead silo on the survivors. Call after
    /// <c>UseQrOrleansSilo</c>. The credential vault (<see cref="ICredentialVault"/>) and the connectors other than
    /// the sandbox are registered by the host.
    /// </summary>
    public static ISiloBuilder AddQrFleet(this ISiloBuilder silo)
    {
        silo.Services.AddQrFleet();
        silo.Services.TryAddSingleton(sp =>
        {
            var cluster = sp.GetService<ClusterSettings>() ?? new ClusterSettings();
            var period = cluster.RecoveryReminderPeriod < cluster.MinimumReminderPeriod ? cluster.MinimumReminderPeriod : cluster.RecoveryReminderPeriod;
            return new AccountRecoveryOptions(period);
        });
        silo.Services.TryAddSingleton<ActivationCensus>();
        silo.Services.AddSingleton<FleetWatch>();
        silo.Services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => sp.GetRequiredService<FleetWatch>());
        return silo;
    }

    /// <summary>
    /// What both a silo and a gateway in Client role need for linked accounts (the gateway makes sends and imports
    /// itself): the fleet's timings (defaults, unless <see cref="AccountOptions"/> was registered first from
    /// <c>QrOrleans:Accounts</c>), the connectors by platform with the sandbox among them, and the webhook sender.
    /// </summary>
    public static IServiceCollection AddQrFleet(this IServiceCollection services)
    {
        services.TryAddSingleton<AccountOptions>();
        services.TryAddSingleton<WebhookSender>();
        services.TryAddSingleton<PlatformConnectors>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IPlatformConnector>(new SandboxConnector(SandboxPlatform.Shared)));
        return services;
    }
}
