using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using QrOrleans.Accounts;
using QrOrleans.Grains.Vault;

namespace QrOrleans.Silo.Hosting;

/// <summary>
/// Builds the credential vault when the host starts, not when the first account needs it: a key ring that does
/// not add up stops the start, and an ephemeral key is told once, before any account exists, with the settings
/// that fix it. Both hosts (a gateway with its silo, a headless silo) run it.
/// </summary>
public sealed partial class VaultStartupCheck(IServiceProvider services, ILoggerFactory logs) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (services.GetRequiredService<ICredentialVault>() is CredentialVault { IsEphemeral: true })
        {
            LogEphemeralKey(logs.CreateLogger("QrOrleans.Vault"), CredentialVault.EphemeralKeyWarning);
        }
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    [LoggerMessage(LogLevel.Warning, "{Warning}")]
    private static partial void LogEphemeralKey(ILogger log, string warning);
}
