using Microsoft.Playwright;
using QrOrleans.Tests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace QrOrleans.Tests.Browser;

/// <summary>
/// The phone pages when their sign-in is gone (a replayed phone link, a device signed out elsewhere), and the
/// look every page shares: favicon, viewport, type scale, a card that keeps off a phone's screen edges.
/// </summary>
public sealed class PhonePageTests(BrowserFixture fixture) : IClassFixture<BrowserFixture>
{
    private const string Guidance = "open a new phone link";

    /// <summary>Uncaught script errors (unhandled rejections included) on every tab this test opened.</summary>
    private readonly List<string> _scriptErrors = [];

    private GatewayNode Node => fixture.Node;

    [Fact]
    public async Task Opening_the_same_phone_link_again_shows_not_signed_in_and_what_to_do_next()
    {
        var phoneUser = await new ApiClient(Node.Http).NewPhoneAsync();
        var link = "/phone#refresh=" + Uri.EscapeDataString(phoneUser.RefreshToken);
        await using var context = await fixture.NewContextAsync(Node, phone: true);
        var page = await OpenAsync(context);
        await page.GotoAsync(link);
        await Expect(page.Locator("main#phone")).ToHaveAttributeAsync("data-state", "home");

        // The link from the server's start-up lines, opened a second time (a new tab, the terminal clicked again).
        await page.GotoAsync("about:blank");
        await page.GotoAsync(link);

        await AssertSignedOutAsync(page, "This phone link was already used");
        // A reload still says why, not just "no sign-in".
        await page.ReloadAsync();
        await AssertSignedOutAsync(page, "This phone link was already used");
        AssertNoScriptErrors();
    }

    [Fact]
    public async Task A_replayed_link_in_another_browser_signs_both_out_and_both_say_so()
    {
        var phoneUser = await new ApiClient(Node.Http).NewPhoneAsync();
        var link = "/phone#refresh=" + Uri.EscapeDataString(phoneUser.RefreshToken);
        await using var first = await fixture.NewContextAsync(Node, phone: true);
        await using var second = await fixture.NewContextAsync(Node, phone: true);
        var firstPage = await OpenAsync(first);
        await firstPage.GotoAsync(link);
        await Expect(firstPage.Locator("main#phone")).ToHaveAttributeAsync("data-state", "home");

        var secondPage = await OpenAsync(second);
        await secondPage.GotoAsync(link);

        await AssertSignedOutAsync(secondPage, "This phone link was already used");
        // The replay signed the device out, so the browser that opened the link first is signed out as well.
        await firstPage.ReloadAsync();
        await AssertSignedOutAsync(firstPage, "no longer valid");
        AssertNoScriptErrors();
    }

    [Fact]
    public async Task A_phone_signed_out_from_another_device_says_so_on_its_next_action_and_on_a_code_it_opens()
    {
        var api = new ApiClient(Node.Http);
        var phoneUser = await api.NewPhoneAsync();
        var other = await api.SendAsync(HttpMethod.Post, $"/v1/admin/users/{phoneUser.UserId}/devices",
            new { name = "Second phone", kind = "phone" }, apiKey: GatewayNode.AdminKey);
        other.EnsureStatus(201);
        var otherAccess = other.Body.GetProperty("accessToken").GetString()!;
        var otherId = other.Body.GetProperty("device").GetProperty("id").GetString()!;
        await using var context = await fixture.NewContextAsync(Node, phone: true);
        var page = await OpenAsync(context);
        await page.GotoAsync("/phone#refresh=" + Uri.EscapeDataString(phoneUser.RefreshToken));
        await Expect(page.Locator("#devices li")).ToHaveCountAsync(2);
        // Loaded to the end (the activity list comes after the devices): a load still in flight would see the
        // sign-out below by itself, before this page's own next action.
        await Expect(page.Locator("main#phone")).ToHaveAttributeAsync("data-state", "home");

        // The second phone signs this one out while its page is open; then this page tries to sign the second out.
        (await api.SendAsync(HttpMethod.Delete, "/v1/devices/" + phoneUser.DeviceId, null, otherAccess)).EnsureStatus(204);
        await page.Locator($"#devices li[data-device-id=\"{otherId}\"]").GetByRole(AriaRole.Button, new() { Name = "Sign out" }).ClickAsync();

        await AssertSignedOutAsync(page, "no longer valid");
        // The second phone was not signed out by the refused attempt.
        (await api.SendAsync(HttpMethod.Get, "/v1/me", null, otherAccess)).EnsureStatus(200);

        // A code opened from this browser now (the camera opens /l/…) says the same, not "Something went wrong".
        await using var freshContext = await fixture.NewContextAsync(Node, phone: true);
        var fresh = await OpenAsync(freshContext);
        var second = await api.NewPhoneAsync();
        await fresh.GotoAsync("/phone#refresh=" + Uri.EscapeDataString(second.RefreshToken));
        await Expect(fresh.Locator("main#phone")).ToHaveAttributeAsync("data-state", "home");
        (await api.SendAsync(HttpMethod.Delete, "/v1/devices/" + second.DeviceId, null, second.AccessToken)).EnsureStatus(204);
        var session = await api.CreateSessionAsync();
        await fresh.Locator("#scan-input").FillAsync(session.QrUrl);
        await fresh.GetByRole(AriaRole.Button, new() { Name = "Continue" }).ClickAsync();

        var link = fresh.Locator("main#link");
        await Expect(link).ToHaveAttributeAsync("data-state", "signed-out");
        await Expect(fresh.Locator("#view-signed-out")).ToBeVisibleAsync();
        await Expect(fresh.Locator("#view-signed-out h1")).ToHaveTextAsync("Not signed in");
        await Expect(fresh.Locator("#signed-out-reason")).ToContainTextAsync("no longer valid");
        await Expect(fresh.Locator("#view-signed-out")).ToContainTextAsync(Guidance);
        AssertNoScriptErrors();
    }

    [Fact]
    public async Task Every_page_has_the_favicon_and_a_mobile_viewport_and_the_phone_card_keeps_off_the_edges()
    {
        foreach (var (path, type) in new[] { ("/favicon.ico", "image/x-icon"), ("/favicon.svg", "image/svg+xml") })
        {
            using var response = await Node.Http.GetAsync(path);
            Assert.Equal(200, (int)response.StatusCode);
            Assert.Equal(type, response.Content.Headers.ContentType?.MediaType);
            Assert.True((await response.Content.ReadAsByteArrayAsync()).Length > 100, path + " is empty");
        }

        await using var context = await NarrowContextAsync();
        var page = await OpenAsync(context);
        foreach (var path in new[] { "/", "/phone", "/l/#none.none", "/dashboard" })
        {
            await page.GotoAsync(path);
            await Expect(page.Locator("head link[rel=icon][href=\"/favicon.svg\"]")).ToHaveCountAsync(1);
            await Expect(page.Locator("head meta[name=viewport]")).ToHaveAttributeAsync("content", "width=device-width, initial-scale=1");
            await Expect(page.Locator("head link[rel=stylesheet][href=\"/app.css\"]")).ToHaveCountAsync(1);
        }

        var phoneUser = await new ApiClient(Node.Http).NewPhoneAsync();
        await page.GotoAsync("/phone#refresh=" + Uri.EscapeDataString(phoneUser.RefreshToken));
        await Expect(page.Locator("main#phone")).ToHaveAttributeAsync("data-state", "home");
        await Expect(page.Locator("#activity li")).ToHaveTextAsync("Nothing yet."); // a new account: not an empty list
        var card = (await page.Locator("main#phone").BoundingBoxAsync())!;
        Assert.True(card.X >= 8, $"the card starts {card.X} px from the left edge");
        Assert.True(390 - (card.X + card.Width) >= 8, $"the card ends {390 - (card.X + card.Width)} px from the right edge");
        Assert.Equal(390, await page.EvaluateAsync<int>("() => document.documentElement.scrollWidth"));

        var h1 = await FontSizeAsync(page, "#view-home h1");
        var h2 = await FontSizeAsync(page, "#view-home h2");
        Assert.True(h2 < h1, $"h2 is {h2} px, h1 {h1} px");
        AssertNoScriptErrors();
    }

    private static async Task AssertSignedOutAsync(IPage page, string reason)
    {
        await Expect(page.Locator("main#phone")).ToHaveAttributeAsync("data-state", "signed-out");
        var view = page.Locator("#view-signed-out");
        await Expect(view).ToBeVisibleAsync();
        await Expect(page.Locator("#view-home")).ToBeHiddenAsync();
        await Expect(view.Locator("h1")).ToHaveTextAsync("Not signed in");
        await Expect(page.Locator("#signed-out-reason")).ToContainTextAsync(reason);
        await Expect(view).ToContainTextAsync(Guidance);
        await Expect(view).ToContainTextAsync("prints a new “Demo phone” link every time it starts");
    }

    private async Task<IBrowserContext> NarrowContextAsync()
    {
        var context = await fixture.Chromium.Browser.NewContextAsync(new BrowserNewContextOptions
        {
            BaseURL = Node.BaseAddress.ToString(),
            ViewportSize = new ViewportSize { Width = 390, Height = 844 },
        });
        context.SetDefaultTimeout(BrowserFixture.TimeoutMs);
        return context;
    }

    private async Task<IPage> OpenAsync(IBrowserContext context)
    {
        var page = await context.NewPageAsync();
        page.PageError += (_, e) => _scriptErrors.Add(e);
        return page;
    }

    private void AssertNoScriptErrors() => Assert.True(_scriptErrors.Count == 0, "Script errors: " + string.Join("\n", _scriptErrors));

    private static async Task<double> FontSizeAsync(IPage page, string selector) =>
        await page.Locator(selector).First.EvaluateAsync<double>("e => parseFloat(getComputedStyle(e).fontSize)");
}
