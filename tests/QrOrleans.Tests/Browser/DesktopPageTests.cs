using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.IdentityModel.Tokens;
using Microsoft.Playwright;
using QrOrleans.Tests.Infrastructure;
using Xunit;
using static Microsoft.Playwright.Assertions;

namespace QrOrleans.Tests.Browser;

/// <summary>
/// The desktop sign-in page and the phone pages in a real headless Chromium against a real gateway: what a
/// person sees on each screen, and that the desktop follows the ceremony live (no reload) over SignalR.
/// </summary>
public sealed class DesktopPageTests(BrowserFixture fixture) : IClassFixture<BrowserFixture>
{
    private GatewayNode Node => fixture.Node;

    [Fact]
    public async Task The_desktop_page_shows_a_qr_that_decodes_to_its_url_and_a_phone_can_scan_it()
    {
        await using var context = await fixture.NewContextAsync(Node);
        var desktop = await DesktopPage.OpenAsync(context);
        var sessionId = await desktop.SessionIdAsync();

        var (url, decoded, _) = await desktop.DecodeQrAsync();

        Assert.Equal(url, decoded);
        Assert.StartsWith($"{Node.BaseAddress}l/#{sessionId}.", decoded);
        await Expect(desktop.Page.Locator("#countdown")).ToHaveTextAsync(new Regex(@"^\d+$"));
        await Expect(desktop.Page.Locator("#rotation")).ToHaveTextAsync("1");
        await DocScreenshots.SaveAsync(desktop.Page, "desktop-page.png");

        // The code is live: a signed-in phone that read it can scan it.
        var api = new ApiClient(Node.Http);
        var phone = await api.NewPhoneAsync();
        var scan = (await api.ScanAsync(phone.AccessToken, decoded)).EnsureStatus(200);
        Assert.Equal(sessionId, scan.Body.GetProperty("sessionId").GetString());
        await desktop.WaitForStateAsync("scanned");
        desktop.AssertNoScriptErrors();
    }

    [Fact]
    public async Task Approving_through_the_api_signs_the_page_in_live_over_websockets_without_reload()
    {
        var api = new ApiClient(Node.Http);
        var username = NewUsername();
        var phone = await api.NewPhoneAsync(username);
        await using var context = await fixture.NewContextAsync(Node);
        var desktop = await DesktopPage.OpenAsync(context);
        var sessionId = await desktop.SessionIdAsync();

        (await api.ScanAsync(phone.AccessToken, await desktop.QrUrlAsync())).EnsureStatus(200);
        var number = await desktop.NumberMatchAsync();
        await desktop.AssertNotReloadedAsync();
        (await api.ApproveAsync(phone.AccessToken, sessionId, number)).EnsureStatus(200);

        await desktop.WaitForStateAsync("signed-in");
        await Expect(desktop.Page.Locator("#view-signed-in")).ToBeVisibleAsync();
        await Expect(desktop.Page.Locator("#user-name")).ToHaveTextAsync("User " + username);
        await desktop.AssertNotReloadedAsync();

        // Live over WebSockets, with the npm @microsoft/signalr client served from /lib.
        await Expect(desktop.Main).ToHaveAttributeAsync("data-transport", "WebSockets");
        await Expect(desktop.Page.Locator("#transport")).ToHaveTextAsync("Live over WebSockets");
        Assert.Contains(desktop.WebSocketUrls, u => new Uri(u).AbsolutePath == "/hubs/qr");
        Assert.Contains(desktop.Responses, r => new Uri(r.Url).AbsolutePath == "/lib/signalr/signalr.min.js" && r.Status == 200);
        Assert.Matches(@"^\d+\.\d+\.\d+", await desktop.Page.EvaluateAsync<string>("() => signalR.VERSION"));

        // The page keeps the new device's refresh token for its next visit, bound to the page's key: alone it is refused.
        var stored = await desktop.StoredRefreshTokenAsync();
        Assert.NotNull(stored);
        Assert.Equal(401, (await api.SendAsync(HttpMethod.Post, "/v1/auth/refresh", new { refreshToken = stored })).Status);
        desktop.AssertNoScriptErrors();
    }

    [Fact]
    public async Task A_phone_in_another_browser_approves_by_number_then_signs_the_new_device_out()
    {
        var api = new ApiClient(Node.Http);
        var username = NewUsername();
        var phoneUser = await api.NewPhoneAsync(username);
        await using var desktopContext = await fixture.NewContextAsync(Node);
        await using var phoneContext = await fixture.NewContextAsync(Node, phone: true);
        var desktop = await DesktopPage.OpenAsync(desktopContext);
        var phone = await PhonePage.SignInAsync(phoneContext, phoneUser.RefreshToken, "User " + username);

        // The phone's camera opens the code's link.
        var qrUrl = await desktop.QrUrlAsync();
        Assert.Equal("/l/", new Uri(qrUrl).AbsolutePath); // the token is in the fragment, which is never sent
        Assert.StartsWith("#", new Uri(qrUrl).Fragment, StringComparison.Ordinal);
        await phone.GotoAsync(qrUrl);
        await Expect(phone.Locator("main#link")).ToHaveAttributeAsync("data-state", "ask");
        // The page took the token and cleared it from the address bar, so the history does not keep it.
        Assert.Equal(new Uri(Node.BaseAddress, "/l/").ToString(), phone.Url);
        await Expect(phone.Locator("#client-name")).ToBeVisibleAsync();
        await Expect(phone.Locator("#client-name")).ToContainTextAsync("(browser)");
        await Expect(phone.Locator("#client-browser")).ToHaveTextAsync(new Regex("Chrome|Chromium"));
        await Expect(phone.Locator("#choices button")).ToHaveCountAsync(3);
        var number = await desktop.NumberMatchAsync();
        await Expect(phone.Locator($"#choices button[data-number=\"{number}\"]")).ToHaveCountAsync(1);
        await DocScreenshots.SaveAsync(phone, "approve-page.png");

        await phone.Locator($"#choices button[data-number=\"{number}\"]").ClickAsync();

        await Expect(phone.Locator("main#link")).ToHaveAttributeAsync("data-state", "approved");
        await desktop.WaitForStateAsync("signed-in");
        await Expect(desktop.Page.Locator("#user-name")).ToHaveTextAsync("User " + username);
        await desktop.AssertNotReloadedAsync();
        var deviceName = (await desktop.Page.Locator("#device-name").TextContentAsync())!;
        var deviceId = await desktop.StoredDeviceIdAsync();
        Assert.NotNull(deviceId);
        Assert.False(string.IsNullOrWhiteSpace(deviceName));

        // The phone's device list shows the new device, and the desktop's token works until it is signed out.
        await phone.GotoAsync("/phone");
        await Expect(phone.Locator("main#phone")).ToHaveAttributeAsync("data-state", "home");
        var linked = phone.Locator($"#devices li[data-device-id=\"{deviceId}\"]");
        await Expect(linked).ToContainTextAsync(deviceName);
        await Expect(phone.Locator("#devices li")).ToHaveCountAsync(2);
        await Expect(phone.Locator("#devices li", new() { HasText = "(this phone)" })).ToHaveCountAsync(1);

        // A reload keeps the desktop signed in as that same device: no new code, no second device on the phone.
        await desktop.Page.ReloadAsync();
        await desktop.WaitForStateAsync("signed-in");
        Assert.Equal(deviceId, await desktop.Main.GetAttributeAsync("data-device-id"));
        await phone.ReloadAsync();
        await Expect(phone.Locator("main#phone")).ToHaveAttributeAsync("data-state", "home");
        await Expect(phone.Locator("#devices li")).ToHaveCountAsync(2);

        await linked.GetByRole(AriaRole.Button, new() { Name = "Sign out" }).ClickAsync();

        await Expect(linked).ToHaveCountAsync(0);
        await Expect(phone.Locator("#devices li")).ToHaveCountAsync(1);
        await Expect(phone.Locator("#phone-error")).ToHaveTextAsync("");

        // The desktop learns it at its next visit: its refresh is refused, so it forgets the sign-in and shows a new code.
        await desktop.Page.ReloadAsync();
        await desktop.WaitForPendingQrAsync();
        Assert.Null(await desktop.StoredSignInAsync());
        desktop.AssertNoScriptErrors();
    }

    [Fact]
    public async Task The_page_signs_in_with_a_key_it_cannot_export_stays_signed_in_across_reloads_and_signs_out_by_revoking()
    {
        var api = new ApiClient(Node.Http);
        var username = NewUsername();
        var phone = await api.NewPhoneAsync(username);
        await using var context = await fixture.NewContextAsync(Node);
        var desktop = await DesktopPage.OpenAsync(context);
        var sessionId = await desktop.SessionIdAsync();
        (await api.ScanAsync(phone.AccessToken, await desktop.QrUrlAsync())).EnsureStatus(200);
        var number = await desktop.NumberMatchAsync();

        var claim = await desktop.Page.RunAndWaitForResponseAsync(
            async () => (await api.ApproveAsync(phone.AccessToken, sessionId, number)).EnsureStatus(200),
            r => new Uri(r.Url).AbsolutePath == $"/v1/qr/sessions/{sessionId}/claim");
        await desktop.WaitForStateAsync("signed-in");

        // The session was keyed: the page sent a public JWK at create, the claim answered key-bound tokens, and the
        // access token names that key's RFC 7638 thumbprint.
        Assert.Equal(200, claim.Status);
        var claimed = (await claim.JsonAsync())!.Value;
        Assert.Equal("DPoP", claimed.GetProperty("tokenType").GetString());
        var created = JsonDocument.Parse(desktop.Requests.Single(r => r.Method == "POST" && new Uri(r.Url).AbsolutePath == "/v1/qr/sessions").Body!).RootElement;
        var key = created.GetProperty("key");
        Assert.Equal(["crv", "kty", "x", "y"], key.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        var jwk = new JsonWebKey { Kty = "EC", Crv = "P-256", X = key.GetProperty("x").GetString(), Y = key.GetProperty("y").GetString() };
        Assert.Equal(Base64UrlEncoder.Encode(jwk.ComputeJwkThumbprint()),
            JwtPayload(claimed.GetProperty("accessToken").GetString()!).GetProperty("cnf").GetProperty("jkt").GetString());

        // What the page keeps: a private key no script can read out, and the device's refresh token.
        var stored = (await desktop.StoredSignInAsync())!.Value;
        Assert.False(stored.GetProperty("extractable").GetBoolean());
        Assert.Equal("P-256", stored.GetProperty("curve").GetString());
        var deviceId = stored.GetProperty("deviceId").GetString()!;
        Assert.Equal(claimed.GetProperty("device").GetProperty("id").GetString(), deviceId);

        // Reloads keep it signed in as the same device, each one renewing its tokens with a proof of the key:
        // no new code, and the phone's user has that one device besides the phone.
        for (var reload = 1; reload <= 2; reload++)
        {
            await desktop.Page.ReloadAsync();
            await desktop.WaitForStateAsync("signed-in");
            await Expect(desktop.Page.Locator("#view-signed-in")).ToBeVisibleAsync();
            await Expect(desktop.Page.Locator("#user-name")).ToHaveTextAsync("User " + username);
            await Expect(desktop.Page.Locator("#view-pending")).ToBeHiddenAsync();
            Assert.Equal(deviceId, await desktop.Main.GetAttributeAsync("data-device-id"));
            Assert.NotEqual(stored.GetProperty("refreshToken").GetString(), await desktop.StoredRefreshTokenAsync());
            stored = (await desktop.StoredSignInAsync())!.Value;
        }
        Assert.Equal(1, desktop.SessionsCreated);
        var devices = (await api.SendAsync(HttpMethod.Get, "/v1/devices", null, phone.AccessToken)).EnsureStatus(200).Body.EnumerateArray()
            .Where(d => d.GetProperty("id").GetString() != phone.DeviceId && !d.GetProperty("revoked").GetBoolean()).ToList();
        Assert.Equal([deviceId], devices.Select(d => d.GetProperty("id").GetString()));

        // "Sign out" revokes the device with its own bound token and forgets the key; a new code follows.
        await desktop.Page.GetByRole(AriaRole.Button, new() { Name = "Sign out" }).ClickAsync();
        await desktop.WaitForPendingQrAsync();
        Assert.Null(await desktop.StoredSignInAsync());
        Assert.True((await api.SendAsync(HttpMethod.Get, "/v1/devices", null, phone.AccessToken)).EnsureStatus(200).Body.EnumerateArray()
            .Single(d => d.GetProperty("id").GetString() == deviceId).GetProperty("revoked").GetBoolean());
        Assert.Equal(2, desktop.SessionsCreated);
        desktop.AssertNoScriptErrors();
    }

    private static JsonElement JwtPayload(string token) =>
        JsonDocument.Parse(System.Buffers.Text.Base64Url.DecodeFromChars(token.Split('.')[1])).RootElement;

    [Fact]
    public async Task Picking_the_wrong_number_rejects_on_both_screens_and_the_desktop_can_show_a_new_code()
    {
        var api = new ApiClient(Node.Http);
        var username = NewUsername();
        var phoneUser = await api.NewPhoneAsync(username);
        await using var desktopContext = await fixture.NewContextAsync(Node);
        await using var phoneContext = await fixture.NewContextAsync(Node, phone: true);
        var desktop = await DesktopPage.OpenAsync(desktopContext);
        var phone = await PhonePage.SignInAsync(phoneContext, phoneUser.RefreshToken, "User " + username);
        var firstUrl = await desktop.QrUrlAsync();
        var firstSession = await desktop.SessionIdAsync();

        await phone.GotoAsync(firstUrl);
        await Expect(phone.Locator("main#link")).ToHaveAttributeAsync("data-state", "ask");
        var number = await desktop.NumberMatchAsync();
        var wrong = phone.Locator($"#choices button:not([data-number=\"{number}\"])").First;
        await wrong.ClickAsync();

        await Expect(phone.Locator("main#link")).ToHaveAttributeAsync("data-state", "number_mismatch");
        await Expect(phone.Locator("#done-title")).ToHaveTextAsync("Sign-in rejected");
        await desktop.WaitForStateAsync("rejected");
        await Expect(desktop.Page.Locator("#ended-title")).ToHaveTextAsync("Sign-in rejected");
        var newCode = desktop.Page.GetByRole(AriaRole.Button, new() { Name = "Show a new code" });
        await Expect(newCode).ToBeVisibleAsync();
        await desktop.AssertNotReloadedAsync();

        await newCode.ClickAsync();

        await Expect(desktop.Page.Locator("#qr")).Not.ToHaveAttributeAsync("data-url", firstUrl);
        await desktop.WaitForPendingQrAsync();
        await Expect(desktop.Page.Locator("#view-pending")).ToBeVisibleAsync();
        await desktop.AssertNotReloadedAsync();
        var (url, decoded, _) = await desktop.DecodeQrAsync();
        Assert.Equal(url, decoded);
        Assert.NotEqual(firstUrl, url);
        Assert.NotEqual(firstSession, await desktop.SessionIdAsync());
        Assert.StartsWith($"{Node.BaseAddress}l/#{await desktop.SessionIdAsync()}.", url);
        desktop.AssertNoScriptErrors();
    }

    [Fact]
    public async Task The_qr_re_renders_when_it_rotates_without_reload()
    {
        await using var node = await GatewayNode.StartAsync(new Dictionary<string, string?> { ["QrOrleans:QrSession:QrTtl"] = "00:00:02" });
        await using var context = await fixture.NewContextAsync(node);
        // Every QR the page draws, as (rotation, url), however fast the page loads.
        await context.AddInitScriptAsync("""
            window.__qrHistory = [];
            new MutationObserver(changes => {
              for (const c of changes) if (c.target.id === 'qr') window.__qrHistory.push([c.target.dataset.rotation, c.target.dataset.url]);
            }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-rotation'] });
            """);
        var desktop = await DesktopPage.OpenAsync(context);

        await Expect(desktop.Page.Locator("#qr[data-rotation=\"2\"]")).ToHaveCountAsync(1);

        await desktop.AssertNotReloadedAsync();
        var history = await desktop.Page.EvaluateAsync<string[][]>("() => window.__qrHistory");
        Assert.True(history.Length >= 2, "QRs drawn: " + string.Join(", ", history.Select(h => string.Join(" ", h))));
        Assert.Equal("1", history[0][0]);
        Assert.Equal("2", history[1][0]);
        var first = history[0][1];
        Assert.NotEqual(first, history[1][1]);
        var (url, decoded, _) = await desktop.DecodeQrAsync();
        Assert.Equal(url, decoded);
        Assert.NotEqual(first, decoded);
        Assert.StartsWith($"{node.BaseAddress}l/#{await desktop.SessionIdAsync()}.", decoded);
        await Expect(desktop.Page.Locator("#rotation")).Not.ToHaveTextAsync("1");
        desktop.AssertNoScriptErrors();
    }

    private static string NewUsername() => "u" + Guid.NewGuid().ToString("N")[..12];
}
