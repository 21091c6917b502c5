using System.Text.RegularExpressions;
using Microsoft.Playwright;
using QrOrleans.Tests.Browser;
using QrOrleans.Tests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace QrOrleans.Tests.Dashboard;

/// <summary>
/// Headless Chromium and one embedded node (a gateway co-hosting a one-silo cluster). Two embedded nodes are two
/// separate clusters, so the cross-silo figures are covered by the Redis cluster tests, not here.
/// </summary>
public sealed class DashboardNodeFixture : IAsyncLifetime
{
    public Chromium Chromium { get; private set; } = null!;

    public GatewayNode Node { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        Assertions.SetDefaultExpectTimeout(BrowserFixture.TimeoutMs);
        var chromium = Chromium.LaunchAsync();
        Node = await GatewayNode.StartAsync(new Dictionary<string, string?>
        {
            ["QrOrleans:Accounts:PairingPollWait"] = "00:00:00.250",
        });
        Chromium = await chromium;
    }

    public async ValueTask DisposeAsync()
    {
        if (Node is not null)
        {
            await Node.DisposeAsync();
        }
        if (Chromium is not null)
        {
            await Chromium.DisposeAsync();
        }
    }
}

/// <summary>
/// The dashboard as an operator sees it: refused without the key, then this node's silo as Orleans membership lists
/// it, a ceremony moving the figures live without a reload, the agent fleet, and Orleans' own dashboard behind the
/// same sign-in.
/// </summary>
public sealed class DashboardPageTests(DashboardNodeFixture fixture) : IClassFixture<DashboardNodeFixture>
{
    [Fact]
    public async Task An_operator_signs_in_sees_the_silo_and_watches_a_ceremony_move_the_counters_then_opens_the_orleans_dashboard()
    {
        await using var context = await NewContextAsync(fixture.Node);
        var page = await context.NewPageAsync();
        var errors = new List<string>();
        page.PageError += (_, e) => errors.Add(e);
        var main = page.Locator("main#dashboard");

        // Without the key: only the form, and a wrong key shows an error and no data.
        await page.GotoAsync("/dashboard");
        await Expect(main).ToHaveAttributeAsync("data-state", "signed-out");
        await Expect(page.Locator("#view-sign-in")).ToBeVisibleAsync();
        await Expect(page.Locator("#view-live")).ToBeHiddenAsync();
        await page.Locator("#key").FillAsync("not-the-operator-key");
        await page.Locator("#sign-in button[type=submit]").ClickAsync();
        await Expect(page.Locator("#sign-in-error")).ToHaveTextAsync("That is not the operator key.");
        await Expect(main).ToHaveAttributeAsync("data-state", "signed-out");
        await Expect(page.Locator("#silos tr")).ToHaveCountAsync(0);
        Assert.Equal(401, await page.EvaluateAsync<int>("async () => (await fetch('/v1/dashboard')).status"));
        Assert.DoesNotContain("not-the-operator-key", page.Url);

        // Signed out, Orleans' dashboard sends the browser to this form too.
        await page.GotoAsync("/dashboard/orleans/");
        await Expect(page).ToHaveURLAsync(new Regex("/dashboard$"));
        await Expect(main).ToHaveAttributeAsync("data-state", "signed-out");

        // With the key: live over WebSockets, this node's silo as Orleans membership lists it.
        await page.Locator("#key").FillAsync(GatewayNode.AdminKey);
        await page.Locator("#sign-in button[type=submit]").ClickAsync();
        await Expect(main).ToHaveAttributeAsync("data-state", "live");
        await Expect(main).ToHaveAttributeAsync("data-transport", "WebSockets");
        Assert.DoesNotContain(GatewayNode.AdminKey, page.Url);
        var silo = page.Locator($"#silos tr[data-silo-id=\"{DashboardAuthTests.SelfSiloId(fixture.Node)}\"]");
        await Expect(silo).ToContainTextAsync("(this node)");
        await Expect(silo).ToHaveAttributeAsync("data-status", "Active");
        await Expect(silo.Locator(".gateway")).ToHaveTextAsync(fixture.Node.BaseAddress.ToString().TrimEnd('/'));
        await Expect(page.Locator("#silos tr")).ToHaveCountAsync(1);
        var cookie = Assert.Single(await context.CookiesAsync(), c => c.Name == "qro_dashboard");
        Assert.True(cookie.HttpOnly);
        Assert.Equal(SameSiteAttribute.Strict, cookie.SameSite);
        Assert.DoesNotContain(GatewayNode.AdminKey, cookie.Value);

        var completed = int.Parse((await page.Locator("#sessions li[data-state=completed] .count").TextContentAsync())!, System.Globalization.CultureInfo.InvariantCulture);
        var ceremonies = int.Parse((await page.Locator("#ceremonies-window").TextContentAsync())!, System.Globalization.CultureInfo.InvariantCulture);
        await page.EvaluateAsync("() => { window.__marker = 1; }");

        // A ceremony, the desktop following it by Server-Sent Events.
        var api = new ApiClient(fixture.Node.Http);
        var phone = await api.NewPhoneAsync();
        var session = await api.CreateSessionAsync(new { client = new { name = "Dashboard demo laptop", kind = "browser" } });
        await using (var desktop = await DesktopEvents.OpenAsync(fixture.Node.Http, session))
        {
            await api.ScanAndApproveAsync(phone.AccessToken, session);
            await desktop.WaitForAsync("approved");
        }
        (await api.ClaimAsync(session)).EnsureStatus(200);

        await Expect(page.Locator("#sessions li[data-state=completed] .count")).ToHaveTextAsync(new Regex($"^(?!{completed}$)\\d+$"));
        await Expect(page.Locator("#ceremonies-window")).ToHaveTextAsync(new Regex($"^(?!{ceremonies}$)\\d+$"));
        await Expect(silo.Locator(".served")).Not.ToHaveTextAsync("0.0");
        await Expect(page.Locator("#activations tr[data-grain-type$=\"QrSessionGrain\"] .count")).ToHaveTextAsync(new Regex("^[1-9]\\d*$"));
        await Expect(page.Locator("#reminders-count")).ToHaveTextAsync(new Regex("^[1-9]\\d*$")); // the open sessions' recovery reminders
        await Expect(page.Locator("#ceremony-p50")).Not.ToHaveTextAsync("–");
        await Expect(page.Locator("#notify-p50")).Not.ToHaveTextAsync("–");
        await Expect(page.Locator("#audit li[data-action=device_linked]").First).ToContainTextAsync("Dashboard demo laptop");
        await Expect(page.Locator("#chart-ceremonies svg rect.bar")).ToHaveCountAsync(QrOrleans.Gateway.Dashboard.DashboardQuery.WindowMinutes);
        Assert.Equal(1, await page.EvaluateAsync<int>("() => window.__marker"));

        // The agent fleet: an account pairing on the sandbox platform is listed, and its current QR is in the owner inbox.
        var accountId = "dashboard-bot-" + Guid.NewGuid().ToString("N")[..8];
        (await api.SendAsync(HttpMethod.Put, $"/v1/accounts/{accountId}", new
        {
            platform = "sandbox",
            displayName = "Dashboard bot",
            owner = new { webhookUrl = "http://127.0.0.1:9/owner", webhookSecret = "owner-webhook-secret-0123456789" },
            pairing = new { maxCycles = 3, qrTtlSeconds = 60 },
            connector = new { autoConfirm = false },
        }, apiKey: GatewayNode.AdminKey)).EnsureStatus(201);
        (await api.SendAsync(HttpMethod.Post, $"/v1/accounts/{accountId}/pair", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(202);
        var account = page.Locator($"#accounts tr[data-account-id=\"{accountId}\"]");
        await Expect(account).ToHaveAttributeAsync("data-state", "pairing");
        await Expect(account).ToContainTextAsync("Dashboard bot");
        var inbox = page.Locator($"#inbox li[data-account-id=\"{accountId}\"]");
        await Expect(inbox.Locator("svg")).ToBeVisibleAsync();
        await Expect(inbox).ToContainTextAsync("code 1 of 3");
        await Expect(account).ToContainTextAsync("1 of 3");
        await DocScreenshots.SaveAsync(page, "dashboard.png");
        (await api.SendAsync(HttpMethod.Post, $"/v1/accounts/{accountId}/stop", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200);
        await Expect(account).ToHaveAttributeAsync("data-state", "stopped");
        await Expect(inbox).ToHaveCountAsync(0);
        Assert.Equal(1, await page.EvaluateAsync<int>("() => window.__marker"));

        // Orleans' own dashboard, from the link, with the same cookie: its page renders and its data calls answer.
        var counters = page.WaitForResponseAsync(r => r.Url.EndsWith("/dashboard/orleans/DashboardCounters", StringComparison.Ordinal) && r.Status == 200);
        await page.Locator("#orleans-dashboard").ClickAsync();
        await Expect(page).ToHaveTitleAsync("Orleans Dashboard");
        await counters;
        await Expect(page.Locator("#menu")).ToContainTextAsync("Silos");
        await page.GotoAsync("/dashboard");
        await Expect(main).ToHaveAttributeAsync("data-state", "live");

        // Signing out ends it, for Orleans' dashboard too.
        await page.Locator("#sign-out").ClickAsync();
        await Expect(main).ToHaveAttributeAsync("data-state", "signed-out");
        Assert.Equal(401, await page.EvaluateAsync<int>("async () => (await fetch('/v1/dashboard')).status"));
        Assert.Equal(401, await page.EvaluateAsync<int>("async () => (await fetch('/dashboard/orleans/DashboardCounters')).status"));
        Assert.True(errors.Count == 0, "Script errors: " + string.Join("\n", errors));
    }

    private async Task<IBrowserContext> NewContextAsync(GatewayNode node)
    {
        var context = await fixture.Chromium.Browser.NewContextAsync(new BrowserNewContextOptions
        {
            BaseURL = node.BaseAddress.ToString(),
            ViewportSize = new ViewportSize { Width = 1240, Height = 900 },
        });
        context.SetDefaultTimeout(BrowserFixture.TimeoutMs);
        context.SetDefaultNavigationTimeout(BrowserFixture.TimeoutMs);
        return context;
    }
}

/// <summary>
/// A desktop following its session on /events. Opening returns once the first event arrived: the node's watch of
/// the session's stream is subscribed by then, so an approval made afterwards reaches the desktop as a notification
/// (which the dashboard's approve → notified figure measures).
/// </summary>
public sealed class DesktopEvents : IAsyncDisposable
{
    private readonly HttpResponseMessage _response;
    private readonly StreamReader _reader;

    private DesktopEvents(HttpResponseMessage response, StreamReader reader) => (_response, _reader) = (response, reader);

    public static async Task<DesktopEvents> OpenAsync(HttpClient http, NewSession session)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}/events");
        request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", session.DesktopToken);
        var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        var events = new DesktopEvents(response, new StreamReader(await response.Content.ReadAsStreamAsync()));
        await events.WaitForAsync(null);
        return events;
    }

    /// <summary>Reads events until one in <paramref name="state"/> (any event when null), within 15 s.</summary>
    public async Task WaitForAsync(string? state)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        while (await _reader.ReadLineAsync(timeout.Token) is { } line)
        {
            if (line.StartsWith("data:", StringComparison.Ordinal)
                && (state is null || line.Contains($"\"state\":\"{state}\"", StringComparison.Ordinal)))
            {
                return;
            }
        }
        throw new InvalidOperationException("The event stream ended before the session was " + (state ?? "reported"));
    }

    public ValueTask DisposeAsync()
    {
        _reader.Dispose();
        _response.Dispose();
        return ValueTask.CompletedTask;
    }
}
