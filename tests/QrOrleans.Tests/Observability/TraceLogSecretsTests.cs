using System.Text.Json;
using System.Threading.Channels;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.Logging;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Observability;

/// <summary>
/// Whatever an operator sets the log levels to, no QR secret or token reaches a log: every category at Trace, in the
/// general rules, in the ones that name each category our own filters cap, and in the rules of the provider itself
/// (which outrank all general rules), while whole ceremonies run the way browsers, phones and a CLI run them.
/// </summary>
public sealed class TraceLogSecretsTests
{
    /// <summary>Every knob an operator has: Default, the framework prefixes, each capped category, and per provider.</summary>
    private static Dictionary<string, string?> EverythingAtTrace()
    {
        var settings = new Dictionary<string, string?>();
        foreach (var category in new[]
                 {
                     "Default", "Microsoft", "Microsoft.AspNetCore", "Microsoft.AspNetCore.Hosting.Diagnostics", "Microsoft.AspNetCore.Routing",
                     "Microsoft.AspNetCore.StaticFiles", "Microsoft.AspNetCore.Server.Kestrel", "Microsoft.AspNetCore.SignalR",
                     "Microsoft.AspNetCore.Http.Connections", "Microsoft.AspNetCore.Http.Result", "Microsoft.AspNetCore.Rewrite",
                     "Microsoft.AspNetCore.Authentication", "Microsoft.AspNetCore.HttpLogging", "Orleans", "System", "QrOrleans",
                 })
        {
            settings[$"Logging:LogLevel:{category}"] = "Trace";
            settings[$"Logging:Captured:LogLevel:{category}"] = "Trace";
        }
        return settings;
    }

    [Fact]
    public async Task No_qr_secret_or_token_of_whole_ceremonies_reaches_a_log_with_every_category_at_trace()
    {
        var secrets = new List<(string What, string Value)>();
        var node = await LoggedGateway.StartAsync(EverythingAtTrace());
        try
        {
            var api = new ApiClient(node.Http);
            var phone = await api.NewPhoneAsync();
            secrets.Add(("phone access token", phone.AccessToken));
            secrets.Add(("phone refresh token secret", phone.RefreshToken.Split('.')[1]));

            // A desktop that signs in all the way, watched over SignalR, Server-Sent Events and long-polling.
            var session = await api.CreateSessionAsync(new { client = new { name = "Laptop", kind = "browser" } });
            AddSession(secrets, "approved", session);
            var states = Channel.CreateUnbounded<JsonElement>();
            await using var hub = new HubConnectionBuilder().WithUrl(new Uri(node.BaseAddress, "/hubs/qr")).Build();
            hub.On<JsonElement>("state", s => states.Writer.TryWrite(s));
            await hub.StartAsync(TestContext.Current.CancellationToken);
            await hub.InvokeAsync("Watch", session.SessionId, session.DesktopToken, TestContext.Current.CancellationToken);
            await LogRedactionTests.StateAsync(states.Reader, "pending");
            using var sse = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            var events = LogRedactionTests.ReadEventsAsync(node.Http, session, sse.Token);
            var longPoll = api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}?waitForVersion=1&timeout=15", null, session.DesktopToken);
            foreach (var image in new[] { "qr.svg", "qr.png" })
            {
                (await api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}/{image}", null, session.DesktopToken)).EnsureStatus(200);
            }

            // The phone's camera opens the code's page as a browser does (the fragment stays in the browser), then scans by URL.
            using (var page = await node.Http.GetAsync(session.QrUrl, TestContext.Current.CancellationToken))
            {
                page.EnsureSuccessStatusCode();
            }
            (await api.ScanAsync(phone.AccessToken, session.QrUrl)).EnsureStatus(200);
            var number = (await api.SnapshotAsync(session)).EnsureStatus(200).Body.GetProperty("numberMatch").GetString()!;
            (await api.ApproveAsync(phone.AccessToken, session.SessionId, number)).EnsureStatus(200);
            await LogRedactionTests.StateAsync(states.Reader, "approved");
            (await longPoll).EnsureStatus(200);
            var claim = (await api.ClaimAsync(session)).EnsureStatus(200).Body;
            secrets.Add(("claimed access token", claim.GetProperty("accessToken").GetString()!));
            var refresh = claim.GetProperty("refreshToken").GetString()!;
            secrets.Add(("claimed refresh token secret", refresh.Split('.')[1]));
            var rotated = (await api.SendAsync(HttpMethod.Post, "/v1/auth/refresh", new { refreshToken = refresh })).EnsureStatus(200).Body;
            secrets.Add(("rotated access token", rotated.GetProperty("accessToken").GetString()!));
            secrets.Add(("rotated refresh token secret", rotated.GetProperty("refreshToken").GetString()!.Split('.')[1]));
            Assert.Contains("approved", await events);

            // A CLI-like desktop whose code is scanned by its token and rejected; one cancelled; refusals along the way.
            var byToken = await api.CreateSessionAsync(new { client = new { name = "Terminal", kind = "cli" } });
            AddSession(secrets, "rejected", byToken);
            var token = byToken.QrUrl[(byToken.QrUrl.IndexOf('#') + 1)..];
            (await api.SendAsync(HttpMethod.Post, "/v1/qr/scan", new { token }, phone.AccessToken)).EnsureStatus(200);
            (await api.RejectAsync(phone.AccessToken, byToken.SessionId)).EnsureStatus(200);
            Assert.Equal(409, (await api.SendAsync(HttpMethod.Post, "/v1/qr/scan", new { token }, phone.AccessToken)).Status);
            var cancelled = await api.CreateSessionAsync();
            AddSession(secrets, "cancelled", cancelled);
            (await api.CancelAsync(cancelled)).EnsureStatus(200);
            Assert.Equal(401, (await api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{cancelled.SessionId}", null, session.DesktopToken)).Status);
            Assert.Equal(401, (await api.ScanAsync(session.DesktopToken, cancelled.QrUrl)).Status);
        }
        finally
        {
            await node.DisposeAsync();
        }

        var lines = node.Logs.Lines.ToArray();
        // Trace is really on: the framework and Orleans write their most detailed lines.
        Assert.Contains(lines, l => l.Level == LogLevel.Trace && l.Category.StartsWith("Microsoft.AspNetCore.", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Level == LogLevel.Trace && l.Category.StartsWith("Orleans.", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.Category == "QrOrleans.Gateway.Requests" && l.Text.Contains("GET /l/ answered 200", StringComparison.Ordinal));
        var leaks = (from line in lines
                     from secret in secrets
                     where line.Text.Contains(secret.Value, StringComparison.Ordinal)
                     select $"{secret.What} in [{line.Level} {line.Category}] {Shorten(line.Text)}").Distinct().ToList();
        Assert.True(leaks.Count == 0, $"Secrets in {leaks.Count} of {lines.Length} log lines:\n" + string.Join("\n", leaks.Take(30)));
    }

    private static void AddSession(List<(string, string)> secrets, string what, NewSession session)
    {
        secrets.Add(($"desktop token ({what})", session.DesktopToken));
        secrets.Add(($"QR secret ({what})", session.QrUrl[(session.QrUrl.LastIndexOf('.') + 1)..]));
    }

    private static string Shorten(string text) => text.Length > 400 ? text[..400] + "…" : text;
}
