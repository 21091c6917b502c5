using System.Net;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.Logging;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Observability;

/// <summary>
/// A whole ceremony, followed over SignalR, Server-Sent Events and long-polling, plus token refresh and reuse,
/// revocation and the dashboard sign-in, with every log category at Debug: no token, QR secret, key or cookie
/// appears in any log line, state value, exception or scope.
/// </summary>
public sealed class LogRedactionTests
{
    [Fact]
    public async Task No_secret_of_a_full_ceremony_reaches_any_log_line_at_debug()
    {
        var vaultKey = QrOrleans.Grains.Vault.CredentialVault.GenerateKey();
        var secrets = new List<(string What, string Value)> { ("operator key", GatewayNode.AdminKey), ("vault key", vaultKey) };
        await using var owner = await OtlpReceiver.StartAsync(); // the linked account owner's webhook endpoint
        var node = await LoggedGateway.StartAsync(new Dictionary<string, string?>
        {
            ["QrOrleans:Vault:Keys:1"] = vaultKey,
            ["QrOrleans:Vault:CurrentVersion"] = "1",
            ["QrOrleans:Accounts:LeaseTime"] = "00:00:02",
            ["QrOrleans:Accounts:PairingPollWait"] = "00:00:00.250",
            ["QrOrleans:Accounts:WebhookRetryBase"] = "00:00:00.200",
        });
        try
        {
            var api = new ApiClient(node.Http);
            var phone = await api.NewPhoneAsync();
            secrets.Add(("phone access token", phone.AccessToken));
            AddRefresh(secrets, "phone refresh token", phone.RefreshToken);

            var session = await api.CreateSessionAsync(new { client = new { name = "Laptop", kind = "browser" } });
            var qrToken = session.QrUrl[(session.QrUrl.IndexOf("/l/#", StringComparison.Ordinal) + 4)..];
            secrets.Add(("desktop token", session.DesktopToken));
            secrets.Add(("QR secret", qrToken.Split('.')[1]));

            // The desktop waits three ways at once. SignalR connects as the page does: negotiate, then the best transport.
            var states = Channel.CreateUnbounded<JsonElement>();
            await using var hub = new HubConnectionBuilder().WithUrl(new Uri(node.BaseAddress, "/hubs/qr")).Build();
            hub.On<JsonElement>("state", s => states.Writer.TryWrite(s));
            await hub.StartAsync();
            await hub.InvokeAsync("Watch", session.SessionId, session.DesktopToken);
            await StateAsync(states.Reader, "pending");
            using var sse = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            var events = ReadEventsAsync(node.Http, session, sse.Token);
            var longPoll = api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}?waitForVersion=1&timeout=15", null, session.DesktopToken);

            // The phone's camera opens the code's page, then the phone scans and approves; someone else tries too.
            (await node.Http.GetAsync(session.QrUrl)).EnsureSuccessStatusCode(); // the fragment stays in the client
            (await node.Http.GetAsync("/l/" + qrToken)).EnsureSuccessStatusCode(); // a code of the earlier shape, the token in the path
            using (var svg = Bearer(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}/qr.svg", session.DesktopToken))
            {
                (await node.Http.SendAsync(svg)).EnsureSuccessStatusCode();
            }
            Assert.Equal(401, (await api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}", null, "not-the-desktop-token")).Status);
            Assert.Equal(404, (await api.ScanAsync(phone.AccessToken, qrToken.Split('.')[0] + ".AAAAAAAAAAAAAAAAAAAAAA")).Status);
            await api.ScanAndApproveAsync(phone.AccessToken, session);
            await StateAsync(states.Reader, "approved");
            Assert.Equal(200, (await longPoll).Status);

            var claim = (await api.ClaimAsync(session)).EnsureStatus(200).Body;
            secrets.Add(("desktop access token", claim.GetProperty("accessToken").GetString()!));
            var desktopRefresh = claim.GetProperty("refreshToken").GetString()!;
            AddRefresh(secrets, "desktop refresh token", desktopRefresh);
            var rotated = (await api.SendAsync(HttpMethod.Post, "/v1/auth/refresh", new { refreshToken = desktopRefresh })).EnsureStatus(200).Body;
            secrets.Add(("rotated access token", rotated.GetProperty("accessToken").GetString()!));
            AddRefresh(secrets, "rotated refresh token", rotated.GetProperty("refreshToken").GetString()!);
            Assert.Equal(401, (await api.SendAsync(HttpMethod.Post, "/v1/auth/refresh", new { refreshToken = desktopRefresh })).Status);
            (await api.SendAsync(HttpMethod.Get, "/v1/me/audit", null, phone.AccessToken)).EnsureStatus(200);
            (await api.SendAsync(HttpMethod.Delete, "/v1/devices/" + claim.GetProperty("device").GetProperty("id").GetString(), null, phone.AccessToken)).EnsureStatus(204);
            using (var bad = new StringContent("{\"url\": ", Encoding.UTF8, "application/json"))
            {
                using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/qr/scan") { Content = bad };
                request.Headers.Authorization = new("Bearer", phone.AccessToken);
                Assert.Equal(HttpStatusCode.BadRequest, (await node.Http.SendAsync(request)).StatusCode);
            }

            // The operator signs in to the dashboard (and someone fails to).
            var cookie = await SignInAsync(node.Http, GatewayNode.AdminKey);
            secrets.Add(("dashboard cookie", cookie.Split('=', 2)[1]));
            await SignInAsync(node.Http, "a-wrong-operator-key");
            using (var dashboard = new HttpRequestMessage(HttpMethod.Get, "/v1/dashboard"))
            {
                dashboard.Headers.Add("Cookie", cookie);
                Assert.Equal(HttpStatusCode.OK, (await node.Http.SendAsync(dashboard)).StatusCode);
            }
            (await api.SendAsync(HttpMethod.Get, "/v1/cluster", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200);
            Assert.Contains("approved", await events);

            // The agent fleet: a sandbox account pairs (its QR relayed to the owner's webhook), sends, and is exported.
            const string webhookSecret = "owner-webhook-secret-5e1f0c9a7b3d";
            const string passphrase = "export-passphrase-8c2d4e6f";
            secrets.Add(("webhook secret", webhookSecret));
            secrets.Add(("export passphrase", passphrase));
            var accountId = "redaction-bot-" + Guid.NewGuid().ToString("N")[..8];
            (await api.SendAsync(HttpMethod.Put, $"/v1/accounts/{accountId}", new
            {
                platform = "sandbox",
                displayName = "Redaction bot",
                owner = new { webhookUrl = owner.Endpoint + "/owner", webhookSecret },
                connector = new { autoConfirm = true, scanAfterMs = 300 },
            }, apiKey: GatewayNode.AdminKey)).EnsureStatus(201);
            (await api.SendAsync(HttpMethod.Post, $"/v1/accounts/{accountId}/pair", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(202);
            var deadline = DateTime.UtcNow.AddSeconds(20);
            string? state = null;
            while (DateTime.UtcNow < deadline && state != "connected")
            {
                await Task.Delay(200);
                state = (await api.SendAsync(HttpMethod.Get, $"/v1/accounts/{accountId}", null, apiKey: GatewayNode.AdminKey)).Body.GetProperty("state").GetString();
            }
            Assert.Equal("connected", state);
            (await api.SendAsync(HttpMethod.Post, $"/v1/accounts/{accountId}/messages", new { to = "friend", text = "hello" }, apiKey: GatewayNode.AdminKey)).EnsureStatus(202);
            var exported = (await api.SendAsync(HttpMethod.Post, $"/v1/accounts/{accountId}/export", new { passphrase }, apiKey: GatewayNode.AdminKey)).EnsureStatus(200);
            secrets.Add(("sealed export", exported.Body.GetProperty("sealed").GetString()!));
            var qrUrls = owner.Requests.Where(r => r.Path == "/owner")
                .Select(r => System.Text.Json.JsonDocument.Parse(r.Body).RootElement)
                .Where(b => b.TryGetProperty("qrUrl", out _)).Select(b => b.GetProperty("qrUrl").GetString()!).ToList();
            Assert.NotEmpty(qrUrls);
            secrets.AddRange(qrUrls.Select(u => ("pairing QR", u)));
        }
        finally
        {
            await node.DisposeAsync();
        }

        var lines = node.Logs.Lines.ToArray();
        Assert.True(lines.Length > 50, $"only {lines.Length} log lines: is Debug logging on?");
        Assert.Contains(lines, l => l.Level == LogLevel.Debug && l.Category.StartsWith("Microsoft.", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Category == "QrOrleans.Gateway.Requests" && l.Text.Contains("GET /l/{token} answered 200", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Category == "QrOrleans.Gateway.Requests" && l.Text.Contains("GET /l/ answered 200", StringComparison.Ordinal));
        var leaks = (from line in lines
                     from secret in secrets
                     where line.Text.Contains(secret.Value, StringComparison.Ordinal)
                     select $"{secret.What} in [{line.Level} {line.Category}] {line.Text}").Distinct().ToList();
        Assert.True(leaks.Count == 0, "Secrets in logs:\n" + string.Join("\n", leaks.Take(20)));
    }

    /// <summary>A refresh token is "deviceId.secret": the device id may be logged, the secret never.</summary>
    private static void AddRefresh(List<(string, string)> secrets, string what, string token)
    {
        secrets.Add((what, token));
        secrets.Add((what + " secret", token.Split('.')[1]));
    }

    /// <summary>Reads pushed snapshots until one in <paramref name="state"/> arrives (10 s at most).</summary>
    internal static async Task StateAsync(ChannelReader<JsonElement> states, string state)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while ((await states.ReadAsync(timeout.Token)).GetProperty("state").GetString() != state)
        {
        }
    }

    private static HttpRequestMessage Bearer(HttpMethod method, string path, string token) =>
        new(method, path) { Headers = { Authorization = new("Bearer", token) } };

    /// <summary>The session's SSE stream as text, up to its approved event.</summary>
    internal static async Task<string> ReadEventsAsync(HttpClient http, NewSession session, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}/events");
        request.Headers.Authorization = new("Bearer", session.DesktopToken);
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
        var seen = new StringBuilder();
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            seen.AppendLine(line);
            if (line.Contains("\"approved\"", StringComparison.Ordinal))
            {
                break;
            }
        }
        return seen.ToString();
    }

    /// <summary>Posts the sign-in form; returns the Set-Cookie "name=value" (empty when refused).</summary>
    public static async Task<string> SignInAsync(HttpClient http, string key)
    {
        using var noRedirects = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, UseCookies = false }) { BaseAddress = http.BaseAddress };
        using var form = new FormUrlEncodedContent([new("key", key)]);
        using var response = await noRedirects.PostAsync("/dashboard/sign-in", form);
        Assert.Equal(HttpStatusCode.SeeOther, response.StatusCode);
        var set = response.Headers.TryGetValues("Set-Cookie", out var values) ? values.First() : "";
        return set.Split(';')[0];
    }
}
