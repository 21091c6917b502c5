using System.Text.RegularExpressions;
using Microsoft.Playwright;
using QrOrleans.Tests.Infrastructure;
using QrOrleans.Tests.QrImages;
using Xunit;
using static Microsoft.Playwright.Assertions;

namespace QrOrleans.Tests.Browser;

/// <summary>The desktop sign-in page (<c>/</c>) in one browser tab, with what a test needs to watch it.</summary>
public sealed partial class DesktopPage
{
    private int _navigations;

    private DesktopPage(IPage page) => Page = page;

    public IPage Page { get; }

    /// <summary>Uncaught script errors on the page.</summary>
    public List<string> ScriptErrors { get; } = [];

    public List<string> WebSocketUrls { get; } = [];

    public List<(string Url, int Status)> Responses { get; } = [];

    /// <summary>Every request the page sent, with its body (the session creation carries the page's public key).</summary>
    public List<(string Method, string Url, string? Body)> Requests { get; } = [];

    public ILocator Main => Page.Locator("main#desktop");

    public ILocator Qr => Page.Locator("#qr");

    /// <summary>Opens <c>/</c>, waits for the first QR, and marks the window so a reload would show.</summary>
    public static async Task<DesktopPage> OpenAsync(IBrowserContext context)
    {
        var page = await context.NewPageAsync();
        var desktop = new DesktopPage(page);
        page.PageError += (_, e) => desktop.ScriptErrors.Add(e);
        page.WebSocket += (_, ws) => desktop.WebSocketUrls.Add(ws.Url);
        page.Response += (_, r) => desktop.Responses.Add((r.Url, r.Status));
        page.Request += (_, r) => desktop.Requests.Add((r.Method, r.Url, r.PostData));
        page.FrameNavigated += (_, f) =>
        {
            if (f == page.MainFrame)
            {
                Interlocked.Increment(ref desktop._navigations);
            }
        };
        await page.GotoAsync("/");
        await desktop.WaitForPendingQrAsync();
        await page.EvaluateAsync("() => { window.__marker = 1; }");
        Interlocked.Exchange(ref desktop._navigations, 0);
        return desktop;
    }

    public async Task WaitForPendingQrAsync()
    {
        await Expect(Main).ToHaveAttributeAsync("data-state", "pending");
        await Expect(Page.Locator("#qr[data-url] svg")).ToBeVisibleAsync();
    }

    public async Task WaitForStateAsync(string state) => await Expect(Main).ToHaveAttributeAsync("data-state", state);

    public async Task<string> SessionIdAsync() =>
        await Main.GetAttributeAsync("data-session-id") ?? throw new Xunit.Sdk.XunitException("main#desktop has no data-session-id.");

    public async Task<string> QrUrlAsync() =>
        await Qr.GetAttributeAsync("data-url") ?? throw new Xunit.Sdk.XunitException("#qr has no data-url.");

    /// <summary>The number the page asks the user to pick on the phone (waits for the scanned view).</summary>
    public async Task<string> NumberMatchAsync()
    {
        await WaitForStateAsync("scanned");
        var number = Page.Locator("#number-match");
        await Expect(number).ToBeVisibleAsync();
        await Expect(number).ToHaveTextAsync(NumberRegex());
        return (await number.TextContentAsync())!.Trim();
    }

    /// <summary>
    /// Screenshots the QR as the user sees it and decodes it with zbarimg. The URL is read before and after the
    /// screenshot and only a pair taken while it stayed the same is returned, so a rotation in between is retried.
    /// </summary>
    public async Task<(string Url, string Decoded, byte[] Png)> DecodeQrAsync()
    {
        for (var attempt = 0; ; attempt++)
        {
            var before = await QrUrlAsync();
            var png = await Qr.ScreenshotAsync();
            var after = await QrUrlAsync();
            if (before == after || attempt == 4)
            {
                Assert.Equal(before, after);
                return (after, await QrDecoder.DecodePngAsync(png), png);
            }
        }
    }

    /// <summary>The page never reloaded or navigated since it was opened.</summary>
    public async Task AssertNotReloadedAsync()
    {
        Assert.Equal(1, await Page.EvaluateAsync<int?>("() => window.__marker ?? null"));
        Assert.Equal(0, Volatile.Read(ref _navigations));
    }

    public void AssertNoScriptErrors() => Assert.True(ScriptErrors.Count == 0, "Script errors: " + string.Join("\n", ScriptErrors));

    /// <summary>
    /// The sign-in the page keeps in IndexedDB for its next visit, as
    /// <c>{ refreshToken, deviceId, extractable, curve, usages }</c> (the last three of its private key), or null.
    /// </summary>
    public async Task<System.Text.Json.JsonElement?> StoredSignInAsync() =>
        await Page.EvaluateAsync<System.Text.Json.JsonElement?>("""
            () => new Promise((resolve, reject) => {
              const open = indexedDB.open('qrorleans', 1);
              open.onupgradeneeded = () => open.result.createObjectStore('desktop');
              open.onerror = () => reject(open.error);
              open.onsuccess = () => {
                const db = open.result, read = db.transaction('desktop').objectStore('desktop').get('sign-in');
                read.onsuccess = () => {
                  db.close();
                  const s = read.result, k = s && s.keyPair.privateKey;
                  resolve(s ? { refreshToken: s.refreshToken, deviceId: s.device.id, extractable: k.extractable, curve: k.algorithm.namedCurve, usages: k.usages } : null);
                };
              };
            })
            """);

    public async Task<string?> StoredRefreshTokenAsync() => (await StoredSignInAsync())?.GetProperty("refreshToken").GetString();

    public async Task<string?> StoredDeviceIdAsync() => (await StoredSignInAsync())?.GetProperty("deviceId").GetString();

    /// <summary>How many sign-in sessions the page has created (each one a new QR).</summary>
    public int SessionsCreated => Requests.Count(r => r.Method == "POST" && new Uri(r.Url).AbsolutePath == "/v1/qr/sessions");

    [GeneratedRegex(@"^\s*\d{1,4}\s*$")]
    private static partial Regex NumberRegex();
}

/// <summary>A phone signed in to the <c>/phone</c> page in its own browser profile.</summary>
public static class PhonePage
{
    public static async Task<IPage> SignInAsync(IBrowserContext context, string refreshToken, string displayName)
    {
        var page = await context.NewPageAsync();
        await page.GotoAsync("/phone#refresh=" + Uri.EscapeDataString(refreshToken));
        await Expect(page.Locator("main#phone")).ToHaveAttributeAsync("data-state", "home");
        await Expect(page.Locator("#display-name")).ToHaveTextAsync(displayName);
        return page;
    }
}

/// <summary>Documentation screenshots, written only when QRO_SCREENSHOTS=1 (so ordinary runs never touch the repo).</summary>
public static class DocScreenshots
{
    public static bool Enabled => Environment.GetEnvironmentVariable("QRO_SCREENSHOTS") == "1";

    public static async Task SaveAsync(IPage page, string fileName)
    {
        if (!Enabled)
        {
            return;
        }
        var path = Path.Combine(GatewayNode.RepoRoot, "docs", fileName);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = path, FullPage = true });
    }
}
