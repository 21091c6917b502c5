using Microsoft.Extensions.Logging;
using QrOrleans.Grains.Vault;
using QrOrleans.Tests.Infrastructure;
using QrOrleans.Tests.Observability;

namespace QrOrleans.Tests.Vault;

/// <summary>The ephemeral-key warning is given once when the host starts, before any account exists, naming the fix.</summary>
public sealed class VaultStartupWarningTests
{
    [Fact]
    public async Task Without_vault_keys_the_gateway_warns_at_start_up_naming_the_setting_and_not_again_at_first_use()
    {
        await using var node = await LoggedGateway.StartAsync();

        // Nothing has touched an account yet: the warning is already there, once.
        var warning = Assert.Single(VaultWarnings(node));
        Assert.Equal((LogLevel.Warning, "QrOrleans.Vault"), (warning.Level, warning.Category));
        Assert.Contains("QrOrleans:Vault:Keys:1=", warning.Text, StringComparison.Ordinal);
        Assert.Contains("QrOrleans:Vault:CurrentVersion=1", warning.Text, StringComparison.Ordinal);
        Assert.Contains("QrOrleans__Vault__Keys__1", warning.Text, StringComparison.Ordinal);

        // The first account, sealed under that key, brings no second one.
        var api = new ApiClient(node.Http);
        var put = await api.SendAsync(HttpMethod.Put, "/v1/accounts/first-account", new
        {
            platform = "sandbox", connector = new { autoConfirm = true },
            owner = new { webhookUrl = "http://127.0.0.1:9/owner-inbox", webhookSecret = "vault-test-webhook-secret" },
        }, apiKey: GatewayNode.AdminKey);
        Assert.Equal(201, put.Status);
        (await api.SendAsync(HttpMethod.Post, "/v1/accounts/first-account/pair", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(202);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while ((await api.SendAsync(HttpMethod.Get, "/v1/accounts/first-account", null, apiKey: GatewayNode.AdminKey)).Body
            .GetProperty("state").GetString() != "connected")
        {
            Assert.True(DateTime.UtcNow < deadline, "The account did not connect.");
            await Task.Delay(50);
        }
        Assert.Single(VaultWarnings(node));
    }

    [Fact]
    public async Task With_a_vault_key_the_gateway_gives_no_warning()
    {
        await using var node = await LoggedGateway.StartAsync(new Dictionary<string, string?>
        {
            ["QrOrleans:Vault:Keys:1"] = CredentialVault.GenerateKey(),
            ["QrOrleans:Vault:CurrentVersion"] = "1",
        });

        Assert.Empty(VaultWarnings(node));
        Assert.DoesNotContain(node.Logs.Lines, l => l.Category == "QrOrleans.Vault");
    }

    [Fact]
    public async Task A_key_ring_that_does_not_add_up_stops_the_start_instead_of_the_first_account()
    {
        var e = await Assert.ThrowsAnyAsync<Exception>(() => LoggedGateway.StartAsync(new Dictionary<string, string?>
        {
            ["QrOrleans:Vault:CurrentVersion"] = "2",
        }));
        Assert.Contains("QrOrleans:Vault:CurrentVersion is 2", e.ToString(), StringComparison.Ordinal);
    }

    private static List<(LogLevel Level, string Category, string Text)> VaultWarnings(LoggedGateway node) =>
        [.. node.Logs.Lines.Where(l => l.Text.Contains("QrOrleans:Vault has no keys", StringComparison.Ordinal))];
}
