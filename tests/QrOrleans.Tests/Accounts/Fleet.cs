using System.Text.Json;
using QrOrleans.Grains.Vault;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Accounts;

/// <summary>Test settings of the agent fleet and the operator's calls of API.md, over real HTTP.</summary>
public sealed class Fleet(GatewayNode node)
{
    public const string WebhookSecret = "owner-webhook-secret-0123456789";

    /// <summary>One vault key for every node of this process, as a cluster shares its key ring.</summary>
    private static readonly string VaultKey = CredentialVault.GenerateKey();

    public GatewayNode Node => node;

    public ApiClient Api { get; } = new(node.Http);

    /// <summary>Short timings so behaviour shows in seconds; <paramref name="redis"/> puts the node on the test Redis.</summary>
    public static Dictionary<string, string?> Settings(FleetRedis? redis = null, IDictionary<string, string?>? extra = null)
    {
        var settings = new Dictionary<string, string?>
        {
            ["QrOrleans:Vault:Keys:1"] = VaultKey,
            ["QrOrleans:Vault:CurrentVersion"] = "1",
            ["QrOrleans:Accounts:HealthInterval"] = "00:00:01",
            ["QrOrleans:Accounts:RetryBase"] = "00:00:00.500",
            ["QrOrleans:Accounts:RetryMax"] = "00:00:02",
            ["QrOrleans:Accounts:WebhookRetryBase"] = "00:00:00.200",
            ["QrOrleans:Accounts:WebhookRetryMax"] = "00:00:01",
            ["QrOrleans:Accounts:WebhookTimeout"] = "00:00:02",
            ["QrOrleans:Accounts:PairingPollWait"] = "00:00:00.250",
        };
        foreach (var (k, v) in (IEnumerable<KeyValuePair<string, string?>>?)redis?.NodeSettings() ?? [])
        {
            settings[k] = v;
        }
        foreach (var (k, v) in extra ?? new Dictionary<string, string?>())
        {
            settings[k] = v;
        }
        return settings;
    }

    public static string NewId(string prefix) => $"{prefix}-{Guid.NewGuid().ToString("N")[..10]}";

    public Task<Reply> PutAsync(string id, object body) => Api.SendAsync(HttpMethod.Put, $"/v1/accounts/{id}", body, apiKey: GatewayNode.AdminKey);

    /// <summary>A sandbox account whose owner is <paramref name="receiver"/>.</summary>
    public async Task<Reply> CreateAsync(string id, WebhookReceiver receiver, object? connector = null, int maxCycles = 3, int qrTtlSeconds = 30,
        int capacity = 100, double refillPerMinute = 600, string? displayName = null) =>
        (await PutAsync(id, new
        {
            platform = "sandbox",
            displayName = displayName ?? id,
            owner = new { webhookUrl = receiver.Url, webhookSecret = WebhookSecret },
            rateBudget = new { capacity, refillPerMinute },
            pairing = new { maxCycles, qrTtlSeconds },
            connector = connector ?? new { autoConfirm = true },
        })).EnsureStatus(201);

    public Task<Reply> GetAsync(string id) => Api.SendAsync(HttpMethod.Get, $"/v1/accounts/{id}", null, apiKey: GatewayNode.AdminKey);

    public Task<Reply> PairAsync(string id) => Api.SendAsync(HttpMethod.Post, $"/v1/accounts/{id}/pair", null, apiKey: GatewayNode.AdminKey);

    public Task<Reply> SendAsync(string id, string text = "hello", string to = "wxid_friend") =>
        Api.SendAsync(HttpMethod.Post, $"/v1/accounts/{id}/messages", new { to, text }, apiKey: GatewayNode.AdminKey);

    public Task<Reply> PostAsync(string path, object? body = null) => Api.SendAsync(HttpMethod.Post, path, body, apiKey: GatewayNode.AdminKey);

    public Task<Reply> DeleteAsync(string id) => Api.SendAsync(HttpMethod.Delete, $"/v1/accounts/{id}", null, apiKey: GatewayNode.AdminKey);

    public async Task<string> StateAsync(string id) => (await GetAsync(id)).EnsureStatus(200).Body.GetProperty("state").GetString()!;

    /// <summary>Polls GET until the account is in <paramref name="state"/>; returns the account.</summary>
    public async Task<JsonElement> WaitForStateAsync(string id, string state, double seconds = 10)
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(seconds);
        var last = "";
        while (DateTimeOffset.UtcNow < deadline)
        {
            var account = (await GetAsync(id)).EnsureStatus(200).Body;
            last = account.GetProperty("state").GetString()!;
            if (last == state)
            {
                return account;
            }
            await Task.Delay(25);
        }
        throw new Xunit.Sdk.XunitException($"Account {id} did not reach {state} within {seconds} s (last: {last}).");
    }

    /// <summary>Creates an auto-confirming sandbox account, pairs it and waits until it is connected.</summary>
    public async Task LinkAsync(string id, WebhookReceiver receiver, object? connector = null, int capacity = 100, double refillPerMinute = 600)
    {
        await CreateAsync(id, receiver, connector, capacity: capacity, refillPerMinute: refillPerMinute);
        (await PairAsync(id)).EnsureStatus(202);
        await WaitForStateAsync(id, "connected");
    }
}

/// <summary>
/// A cluster of its own on the test Redis (scripts/test starts a private redis-server and sets QRO_TEST_REDIS): a
/// fresh cluster and service id, so nothing another test stored is seen, and free ports for each node.
/// </summary>
public sealed class FleetRedis
{
    public string Id { get; } = "fleet-" + Guid.NewGuid().ToString("N")[..10];

    public static string Server => Environment.GetEnvironmentVariable("QRO_TEST_REDIS") is { Length: > 0 } server
        ? server
        : throw new Xunit.Sdk.XunitException("QRO_TEST_REDIS is not set: run the tests through scripts/test, which starts a private redis-server.");

    public Dictionary<string, string?> NodeSettings() => new()
    {
        ["QrOrleans:Cluster:Provider"] = "Redis",
        ["QrOrleans:Cluster:Redis"] = Server,
        ["QrOrleans:Cluster:ClusterId"] = Id,
        ["QrOrleans:Cluster:ServiceId"] = Id,
        ["QrOrleans:Cluster:SiloPort"] = FreePort(),
        ["QrOrleans:Cluster:GatewayPort"] = FreePort(),
    };

    private static string FreePort()
    {
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        socket.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
        return ((System.Net.IPEndPoint)socket.LocalEndPoint!).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
}

public static class ReplyExtensions
{
    public static (int Status, string? Code) Of(this Reply r) => (r.Status, r.Code);
}
