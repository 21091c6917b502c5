using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using QrOrleans.Accounts;
using QrOrleans.Grains.Accounts;
using QrOrleans.Grains.Connectors.Sandbox;

namespace QrOrleans.Silo.Accounts;

public static class AccountsServiceCollectionExtensions
{
    /// <summary>
    /// The agent fleet: the account and outbox grains, the sandbox connector, and this node's account host.
    /// Other connectors add themselves as <see cref="IPlatformConnector"/>; the credential vault
    /// (<see cref="ICredentialVault"/>) is registered by its own feature and needed once an account is used.
    /// </summary>
    public static IServiceCollection AddLinkedAccounts(this IServiceCollection services)
    {
        services.TryAddSingleton<AccountOptions>(); // defaults; the gateway registers the configured one first
        services.AddGrain<ILinkedAccountGrain, LinkedAccountGrain>(AccountGrainTypes.Account);
        services.AddGrain<IOutboxGrain, OutboxGrain>(AccountGrainTypes.Outbox);
        services.TryAddSingleton<WebhookSender>();
        services.TryAddSingleton<PlatformConnectors>();
        services.AddSingleton<IPlatformConnector>(new SandboxConnector(SandboxPlatform.Shared));
        services.AddSingleton<AccountHost>();
        services.AddHostedService(sp => sp.GetRequiredService<AccountHost>());
        return services;
    }
}
