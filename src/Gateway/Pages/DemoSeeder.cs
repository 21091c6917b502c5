using QrOrleans.Accounts;
using QrOrleans.Gateway.Auth;
using QrOrleans.Gateway.Users;
using QrOrleans.Grains.Vault;
using QrOrleans.Users;

namespace QrOrleans.Gateway.Pages;

/// <summary>
/// On the embedded default: a demo user with a phone, and the URLs a newcomer needs, printed once. The phone
/// link carries a refresh token in the URL fragment (never sent to a server); it signs in one browser.
/// </summary>
public sealed class DemoSeeder(
    IGrainFactory grains, GatewayOptions options, StartupNotice notice, IHostApplicationLifetime lifetime,
    IServiceProvider services) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var started = new TaskCompletionSource();
        using var registration = lifetime.ApplicationStarted.Register(() => started.TrySetResult());
        await started.Task.WaitAsync(stoppingToken);
        var origin = GatewayApp.ResolvePublicOrigin(services).TrimEnd('/');
        var lines = new List<string> { "", "QrOrleans is running.", $"  Desktop sign-in page:  {origin}/" };
        if (options.Demo)
        {
            var userId = await grains.GetGrain<IUsernameGrain>("demo").GetUserIdAsync(stoppingToken);
            if (userId is null)
            {
                try
                {
                    userId = (await DevicesApi.RegisterUserAsync(grains, "demo", "Demo User", stoppingToken)).Id;
                }
                catch (GrainException e) when (e.Code == "username_taken")
                {
                    // Another node of the cluster created it at the same moment: use theirs.
                    userId = await grains.GetGrain<IUsernameGrain>("demo").GetUserIdAsync(stoppingToken)
                        ?? throw new InvalidOperationException("The demo user vanished.", e);
                }
            }
            var phone = await grains.GetGrain<IUserGrain>(userId)
                .AddDeviceAsync(new NewDevice(DeviceIds.New(userId), "Demo phone", "phone", "127.0.0.1"), stoppingToken);
            lines.Add($"  Demo phone (signed in as 'demo'; open once): {origin}/phone#refresh={Uri.EscapeDataString(phone.RefreshToken)}");
        }
        if (notice.AdminKeyGenerated)
        {
            lines.Add($"  Operator key (X-Api-Key, generated for this run): {options.AdminApiKey}");
        }
        lines.Add(services.GetService<Silo.Hosting.ClusterSettings>() is { OrleansDashboard: false }
            ? $"  Cluster dashboard (operator key): {origin}/dashboard"
            : $"  Cluster dashboard (operator key): {origin}/dashboard   Orleans dashboard: {origin}/dashboard/orleans/");
        lines.Add($"  API reference: {origin}/openapi (document: {origin}/openapi/v1.json)   Health: {origin}/healthz");
        if (services.GetRequiredService<ICredentialVault>() is CredentialVault { IsEphemeral: true })
        {
            lines.Add("  Warning: no credential vault key. Linked accounts are sealed under a key of this run only and need re-pairing");
            lines.Add("  after a restart. Set QrOrleans:Vault:Keys:1 (32 random bytes in base64: openssl rand -base64 32) and");
            lines.Add("  QrOrleans:Vault:CurrentVersion=1 (environment: QrOrleans__Vault__Keys__1, QrOrleans__Vault__CurrentVersion).");
        }
        lines.Add("");
        // Console, not the logger: these lines are for the person who started the server, not for log storage.
        Console.WriteLine(string.Join(Environment.NewLine, lines));
    }
}
