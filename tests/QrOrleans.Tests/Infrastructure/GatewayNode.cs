using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using QrOrleans.Gateway;

namespace QrOrleans.Tests.Infrastructure;

/// <summary>A real gateway + silo on a free loopback port, as `dotnet run` would start it, with test settings.</summary>
public sealed class GatewayNode : IAsyncDisposable
{
    public const string AdminKey = "test-admin-key";

    private readonly WebApplication _app;

    private GatewayNode(WebApplication app, Uri baseAddress)
    {
        _app = app;
        BaseAddress = baseAddress;
        Http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(60) };
    }

    public Uri BaseAddress { get; }

    public HttpClient Http { get; }

    public IServiceProvider Services => _app.Services;

    /// <param name="configure">Further registrations (e.g. a grain call filter that injects faults).</param>
    public static async Task<GatewayNode> StartAsync(IDictionary<string, string?>? settings = null, Action<WebApplicationBuilder>? configure = null)
    {
        var config = new Dictionary<string, string?>
        {
            ["QrOrleans:AdminApiKey"] = AdminKey,
            ["QrOrleans:Demo"] = "false",
            ["QrOrleans:RateLimiting:Enabled"] = "false",
            ["Logging:LogLevel:Default"] = "Warning",
        };
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>())
        {
            config[k] = v;
        }
        var app = GatewayApp.Create(["--urls", "http://127.0.0.1:0", "--contentRoot", GatewayContentRoot()], builder =>
        {
            builder.Configuration.AddInMemoryCollection(config);
            builder.Logging.ClearProviders();
            configure?.Invoke(builder);
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new GatewayNode(app, new Uri(address));
    }

    /// <summary>The gateway project folder, so its wwwroot (pages and the npm SignalR client) is served.</summary>
    public static string GatewayContentRoot() => Path.Combine(RepoRoot, "src", "Gateway");

    public static string RepoRoot => typeof(GatewayNode).Assembly
        .GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
        .Cast<System.Reflection.AssemblyMetadataAttribute>()
        .Single(a => a.Key == "RepoRoot").Value!;

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>The calls of API.md, as a phone, a desktop and an operator make them.</summary>
public sealed class ApiClient(HttpClient http)
{
    public HttpClient Http => http;

    public static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public async Task<(string UserId, string AccessToken, string RefreshToken, string DeviceId)> NewPhoneAsync(string? username = null)
    {
        username ??= "u" + Guid.NewGuid().ToString("N")[..12];
        var user = await SendAsync(HttpMethod.Post, "/v1/admin/users", new { username, displayName = "User " + username }, apiKey: GatewayNode.AdminKey);
        user.EnsureStatus(201);
        var userId = user.Body.GetProperty("id").GetString()!;
        var device = await SendAsync(HttpMethod.Post, $"/v1/admin/users/{userId}/devices", new { name = "Phone of " + username, kind = "phone" }, apiKey: GatewayNode.AdminKey);
        device.EnsureStatus(201);
        return (userId, device.Body.GetProperty("accessToken").GetString()!, device.Body.GetProperty("refreshToken").GetString()!,
            device.Body.GetProperty("device").GetProperty("id").GetString()!);
    }

    public async Task<NewSession> CreateSessionAsync(object? body = null)
    {
        var r = await SendAsync(HttpMethod.Post, "/v1/qr/sessions", body ?? new { client = new { name = "Test desktop", kind = "browser" } });
        r.EnsureStatus(201);
        return new NewSession(r.Body.GetProperty("sessionId").GetString()!, r.Body.GetProperty("desktopToken").GetString()!,
            r.Body.GetProperty("qr").GetProperty("url").GetString()!, r.Body);
    }

    public Task<Reply> ScanAsync(string accessToken, string url) => SendAsync(HttpMethod.Post, "/v1/qr/scan", new { url }, accessToken);

    public Task<Reply> ApproveAsync(string accessToken, string sessionId, string number) =>
        SendAsync(HttpMethod.Post, $"/v1/qr/sessions/{sessionId}/approve", new { number }, accessToken);

    public Task<Reply> RejectAsync(string accessToken, string sessionId) =>
        SendAsync(HttpMethod.Post, $"/v1/qr/sessions/{sessionId}/reject", null, accessToken);

    public Task<Reply> SnapshotAsync(NewSession s) => SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{s.SessionId}", null, s.DesktopToken);

    public Task<Reply> ClaimAsync(NewSession s) => SendAsync(HttpMethod.Post, $"/v1/qr/sessions/{s.SessionId}/claim", null, s.DesktopToken);

    public Task<Reply> CancelAsync(NewSession s) => SendAsync(HttpMethod.Post, $"/v1/qr/sessions/{s.SessionId}/cancel", null, s.DesktopToken);

    /// <summary>Scan and approve with the right number, as a phone would after reading the desktop's screen.</summary>
    public async Task ScanAndApproveAsync(string accessToken, NewSession s)
    {
        (await ScanAsync(accessToken, s.QrUrl)).EnsureStatus(200);
        var snapshot = await SnapshotAsync(s);
        var number = snapshot.Body.GetProperty("numberMatch").GetString()!;
        (await ApproveAsync(accessToken, s.SessionId, number)).EnsureStatus(200);
    }

    public async Task<Reply> SendAsync(HttpMethod method, string path, object? body, string? bearer = null, string? apiKey = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body, options: Json);
        }
        if (bearer is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        }
        if (apiKey is not null)
        {
            request.Headers.Add("X-Api-Key", apiKey);
        }
        using var response = await http.SendAsync(request);
        return await Reply.ReadAsync(response);
    }
}

public sealed record NewSession(string SessionId, string DesktopToken, string QrUrl, JsonElement Created);

public sealed record Reply(int Status, JsonElement Body, string Text, string? ContentType, HttpResponseHeaders Headers)
{
    public static async Task<Reply> ReadAsync(HttpResponseMessage response)
    {
        var text = await response.Content.ReadAsStringAsync();
        var body = text.Length > 0 && text.TrimStart().StartsWith('{') || text.TrimStart().StartsWith('[')
            ? JsonDocument.Parse(text).RootElement.Clone()
            : default;
        return new Reply((int)response.StatusCode, body, text, response.Content.Headers.ContentType?.MediaType, response.Headers);
    }

    public string? Code => Body.ValueKind == JsonValueKind.Object && Body.TryGetProperty("code", out var c) ? c.GetString() : null;

    public Reply EnsureStatus(int status)
    {
        if (Status != status)
        {
            throw new Xunit.Sdk.XunitException($"Expected HTTP {status}, got {Status}: {Text}");
        }
        return this;
    }
}
