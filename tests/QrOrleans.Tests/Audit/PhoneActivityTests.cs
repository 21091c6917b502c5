using QrOrleans.Tests.Browser;
using QrOrleans.Tests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace QrOrleans.Tests.Audit;

/// <summary>The phone page's "Recent sign-ins and devices", in a real browser.</summary>
public sealed class PhoneActivityTests(BrowserFixture fixture) : IClassFixture<BrowserFixture>
{
    [Fact]
    public async Task The_phone_lists_the_sign_in_it_approved_newest_first()
    {
        var api = new ApiClient(fixture.Node.Http);
        var username = "u" + Guid.NewGuid().ToString("N")[..12];
        var user = await api.NewPhoneAsync(username);
        var session = await api.CreateSessionAsync(new { client = new { name = "Kitchen TV", kind = "device" } });
        await api.ScanAndApproveAsync(user.AccessToken, session);
        (await api.ClaimAsync(session)).EnsureStatus(200);
        await using var context = await fixture.NewContextAsync(fixture.Node, phone: true);

        var page = await PhonePage.SignInAsync(context, user.RefreshToken, "User " + username);

        var items = page.Locator("#activity li");
        await Expect(items).ToHaveCountAsync(3);
        await Expect(items.Nth(0)).ToHaveAttributeAsync("data-action", "device_linked");
        await Expect(items.Nth(0)).ToContainTextAsync("New device signed in");
        await Expect(items.Nth(0)).ToContainTextAsync("Kitchen TV (device)");
        await Expect(items.Nth(0)).ToContainTextAsync("127.0.0.1");
        await Expect(items.Nth(1)).ToHaveAttributeAsync("data-action", "qr_approved");
        await Expect(items.Nth(2)).ToHaveAttributeAsync("data-action", "qr_scanned");
    }
}
