using QrOrleans.Grains.Vault;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Accounts;

/// <summary>The operator's key rotation: add a key version, make it current, re-seal, retire the old key.</summary>
public sealed class KeyRotationTests
{
    [Fact]
    public async Task Resealing_moves_every_account_to_the_new_key_so_the_old_one_can_be_retired()
    {
        var redis = new FleetRedis();
        await using var owner = await WebhookReceiver.StartAsync();
        var id = Fleet.NewId("rotate");
        var newKey = CredentialVault.GenerateKey();

        await using (var before = await GatewayNode.StartAsync(Fleet.Settings(redis)))
        {
            var fleet = new Fleet(before);
            await fleet.LinkAsync(id, owner);
            // Stopped: no health check runs, so only the command below can re-seal.
            (await fleet.PostAsync($"/v1/accounts/{id}/stop")).EnsureStatus(200);
        }

        await using (var rotating = await GatewayNode.StartAsync(Fleet.Settings(redis, new Dictionary<string, string?>
        {
            ["QrOrleans:Vault:Keys:2"] = newKey,
            ["QrOrleans:Vault:CurrentVersion"] = "2",
        })))
        {
            var fleet = new Fleet(rotating);
            var first = (await fleet.PostAsync("/v1/admin/vault/reseal")).EnsureStatus(200);
            Assert.Equal((1, 0, 0), (first.Body.GetProperty("resealed").GetInt32(), first.Body.GetProperty("unchanged").GetInt32(),
                first.Body.GetProperty("failed").GetArrayLength()));
            var again = (await fleet.PostAsync("/v1/admin/vault/reseal")).EnsureStatus(200);
            Assert.Equal((0, 1), (again.Body.GetProperty("resealed").GetInt32(), again.Body.GetProperty("unchanged").GetInt32()));
            Assert.Equal(401, (await fleet.Api.SendAsync(HttpMethod.Post, "/v1/admin/vault/reseal", null)).Status);
        }

        var newOnly = Fleet.Settings(redis, new Dictionary<string, string?> { ["QrOrleans:Vault:Keys:2"] = newKey, ["QrOrleans:Vault:CurrentVersion"] = "2" });
        newOnly.Remove("QrOrleans:Vault:Keys:1");
        await using (var retired = await GatewayNode.StartAsync(newOnly))
        {
            var export = await new Fleet(retired).PostAsync($"/v1/accounts/{id}/export", new { passphrase = "correct horse battery staple" });
            export.EnsureStatus(200); // the stored credentials open with the new key alone
        }

        await using (var oldOnly = await GatewayNode.StartAsync(Fleet.Settings(redis)))
        {
            var refused = await new Fleet(oldOnly).PostAsync($"/v1/accounts/{id}/export", new { passphrase = "correct horse battery staple" });
            Assert.Equal((422, "unknown_key_version"), refused.Of()); // and no longer with the old one
        }

        // The owner's webhook secret moved to the new key with the credentials: with the new key alone, the next
        // webhook is still signed with it.
        await using var signing = await GatewayNode.StartAsync(newOnly);
        (await new Fleet(signing).PostAsync($"/v1/accounts/{id}/unlink")).EnsureStatus(200);
        var unlinked = (await owner.WaitForEventAsync("account.unlinked")).Single(d => d.Event == "account.unlinked");
        Assert.True(unlinked.SignedWith(Fleet.WebhookSecret));
    }
}
