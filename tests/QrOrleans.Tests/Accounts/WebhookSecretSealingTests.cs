using System.Text.Json.Nodes;
using Orleans.Runtime;
using QrOrleans.Accounts;
using QrOrleans.Grains.Accounts;
using QrOrleans.Tests.Infrastructure;
using StackExchange.Redis;

namespace QrOrleans.Tests.Accounts;

/// <summary>
/// The owner's webhook secret is sealed by the vault wherever it is stored, is in no answer, and still signs every
/// webhook; state stored with the secret in plain text (before it was sealed) loads, and is sealed then.
/// </summary>
public sealed class WebhookSecretSealingTests
{
    private static readonly AccountOptions Options = new()
    {
        HealthInterval = TimeSpan.FromSeconds(1),
        PairingPollWait = TimeSpan.FromMilliseconds(250),
        WebhookRetryBase = TimeSpan.FromMilliseconds(200),
        WebhookRetryMax = TimeSpan.FromSeconds(1),
    };

    [Fact]
    public async Task On_redis_the_secret_is_nowhere_in_storage_or_in_any_answer_and_every_webhook_is_signed_with_it()
    {
        var redis = new FleetRedis();
        await using var node = await GatewayNode.StartAsync(Fleet.Settings(redis));
        var fleet = new Fleet(node);
        await using var owner = await WebhookReceiver.StartAsync();
        var id = Fleet.NewId("sealed-secret");
        var first = "first-owner-secret-" + Guid.NewGuid().ToString("N");
        var second = "second-owner-secret-" + Guid.NewGuid().ToString("N");

        var answers = new List<string>();
        answers.Add((await fleet.PutAsync(id, new
        {
            platform = "sandbox",
            owner = new { webhookUrl = owner.Url, webhookSecret = first },
            connector = new { autoConfirm = true },
        })).EnsureStatus(201).Text);
        (await fleet.PairAsync(id)).EnsureStatus(202);
        await fleet.WaitForStateAsync(id, "connected");
        var linked = await owner.WaitForEventAsync("account.connected");
        Assert.All(linked, d => Assert.True(d.SignedWith(first), $"{d.Event} is not signed with the owner's secret"));

        // A new secret signs what follows.
        answers.Add((await fleet.PutAsync(id, new { owner = new { webhookSecret = second } })).EnsureStatus(200).Text);
        answers.Add((await fleet.GetAsync(id)).EnsureStatus(200).Text);
        answers.Add((await fleet.Api.SendAsync(HttpMethod.Get, "/v1/accounts", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200).Text);
        answers.Add((await fleet.PostAsync($"/v1/accounts/{id}/export", new { passphrase = "correct horse battery staple" })).EnsureStatus(200).Text);
        answers.Add((await fleet.PostAsync($"/v1/accounts/{id}/unlink")).EnsureStatus(200).Text);
        var unlinked = (await owner.WaitForEventAsync("account.unlinked")).Single(d => d.Event == "account.unlinked");
        Assert.True(unlinked.SignedWith(second));
        Assert.False(unlinked.SignedWith(first));

        foreach (var answer in answers)
        {
            Assert.DoesNotContain(first, answer, StringComparison.Ordinal);
            Assert.DoesNotContain(second, answer, StringComparison.Ordinal);
        }

        // Every value in Redis, read raw: the account's and the outbox's documents hold the secret sealed only.
        var stored = await RedisValuesAsync();
        Assert.DoesNotContain(stored, v => v.Contains(first, StringComparison.Ordinal) || v.Contains(second, StringComparison.Ordinal));
        Assert.Contains(stored, v => v.Contains(owner.Url, StringComparison.Ordinal) && v.Contains("\"sealedWebhookSecret\":\"v1.1.", StringComparison.Ordinal));
        Assert.Contains(stored, v => v.Contains(owner.Url, StringComparison.Ordinal) && v.Contains("\"sealedSecret\":\"v1.1.", StringComparison.Ordinal));
    }

    [Fact]
    public async Task An_account_and_an_outbox_stored_with_a_plain_text_secret_load_are_sealed_and_keep_signing_with_it()
    {
        await using var owner = await WebhookReceiver.StartAsync();
        const string plain = "legacy-owner-secret-0123456789";
        await using var cluster = await FleetCluster.StartAsync(1, Options);

        // An account as stored before secrets were sealed: today's document with the secret in plain text.
        var template = Fleet.NewId("template");
        await cluster.Account(template).ConfigureAsync(new AccountSettings(Platforms.Sandbox, "agent", owner.Url, plain,
            new RateBudgetConfig(10, 60), new PairingConfig(3, 30), """{"autoConfirm":true}"""));
        var document = JsonNode.Parse(cluster.Storage.Raw("account", AccountId(template))!)!;
        var stored = document["account"]!["config"]!["owner"]!.AsObject();
        stored.Remove("sealedWebhookSecret");
        stored["webhookSecret"] = plain;
        var id = Fleet.NewId("legacy");
        cluster.Storage.Put("account", AccountId(id), document.ToJsonString());

        Assert.Equal(AccountStates.Unlinked, (await cluster.Account(id).GetAsync())!.State); // it loads
        var sealedAccount = cluster.Storage.Raw("account", AccountId(id))!;
        Assert.DoesNotContain(plain, sealedAccount, StringComparison.Ordinal); // sealed at activation
        var sealedSecret = JsonNode.Parse(sealedAccount)!["account"]!["config"]!["owner"]!["sealedWebhookSecret"]!.GetValue<string>();
        Assert.Equal(plain, cluster.Vault.Unseal(WebhookSecrets.SealedFor(id), sealedSecret));
        await cluster.Account(id).RequestPairingAsync();
        var linked = await owner.WaitForEventAsync("account.connected", seconds: 15);
        Assert.All(linked, d => Assert.True(d.SignedWith(plain), $"{d.Event} is not signed with the owner's secret"));

        // An outbox as stored before: its target's secret in plain text, a delivery waiting.
        var outbox = Fleet.NewId("legacy-outbox");
        var now = DateTimeOffset.UtcNow.ToString("O");
        cluster.Storage.Put("outbox", OutboxId(outbox), $$"""
            {"target":{"url":"{{owner.Url}}","secret":"{{plain}}"},"incarnation":"0123abcd","acceptedSeq":1,
             "queue":[{"deliveryId":"dlv_legacy-{{outbox}}","event":"account.connected","body":"{\"event\":\"account.connected\"}",
                       "createdAt":"{{now}}","attempts":0,"nextAttemptAt":"{{now}}"}],"delivered":0}
            """);
        await cluster.Outbox(outbox).ResumeAsync();
        var delivered = await owner.WaitForAsync(r => r.Any(d => d.Delivery == $"dlv_legacy-{outbox}" && d.Answered < 300),
            TimeSpan.FromSeconds(10), "the legacy outbox's delivery");
        Assert.True(delivered.Single(d => d.Delivery == $"dlv_legacy-{outbox}").SignedWith(plain));
        var sealedOutbox = cluster.Storage.Raw("outbox", OutboxId(outbox))!;
        Assert.DoesNotContain(plain, sealedOutbox, StringComparison.Ordinal);
        Assert.Contains("\"sealedSecret\":\"v1.1.", sealedOutbox, StringComparison.Ordinal);

        // A node not yet upgraded hands over a target with the secret in plain text: it is stored sealed.
        var handed = Fleet.NewId("old-node");
        await cluster.Outbox(handed).AcceptAsync(new WebhookTarget(owner.Url, null, plain), []);
        Assert.DoesNotContain(plain, cluster.Storage.Raw("outbox", OutboxId(handed))!, StringComparison.Ordinal);
    }

    private static GrainId AccountId(string id) => GrainId.Create("linkedaccount", id);

    private static GrainId OutboxId(string id) => GrainId.Create("outbox", id);

    /// <summary>Every key's value in the test Redis (strings, hashes, lists, sets), as text.</summary>
    private static async Task<IReadOnlyList<string>> RedisValuesAsync()
    {
        await using var redis = await ConnectionMultiplexer.ConnectAsync(FleetRedis.Server);
        var db = redis.GetDatabase();
        var values = new List<string>();
        foreach (var server in redis.GetServers())
        {
            await foreach (var key in server.KeysAsync(pattern: "*"))
            {
                var type = await db.KeyTypeAsync(key);
                values.Add(key.ToString() + " " + type switch
                {
                    RedisType.String => (string?)await db.StringGetAsync(key) ?? "",
                    RedisType.Hash => string.Join(" ", (await db.HashGetAllAsync(key)).Select(e => $"{e.Name}={e.Value}")),
                    RedisType.List => string.Join(" ", await db.ListRangeAsync(key)),
                    RedisType.Set => string.Join(" ", await db.SetMembersAsync(key)),
                    RedisType.SortedSet => string.Join(" ", await db.SortedSetRangeByRankAsync(key)),
                    _ => "",
                });
            }
        }
        return values;
    }
}
