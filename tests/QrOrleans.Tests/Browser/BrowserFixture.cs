using Microsoft.Playwright;
using QrOrleans.Tests.Infrastructure;
using Xunit;

namespace QrOrleans.Tests.Browser;

/// <summary>One headless Chromium and one gateway (default settings) shared by the tests of a class.</summary>
public sealed class BrowserFixture : IAsyncLifetime
{
    /// <summary>Every wait in the browser tests gives up after this long.</summary>
    public const int TimeoutMs = 15_000;

    public Chromium Chromium { get; private set; } = null!;

    public GatewayNode Node { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        Assertions.SetDefaultExpectTimeout(TimeoutMs);
        var chromium = Chromium.LaunchAsync();
        var node = GatewayNode.StartAsync();
        await Task.WhenAll(chromium, node);
        Chromium = await chromium;
        Node = await node;
    }

    /// <summary>A fresh browser profile (its own cookies, localStorage, sessionStorage): one person's device.</summary>
    public async Task<IBrowserContext> NewContextAsync(GatewayNode node, bool phone = false)
    {
        var context = await Chromium.Browser.NewContextAsync(new BrowserNewContextOptions
        {
            BaseURL = node.BaseAddress.ToString(),
            ViewportSize = phone ? new ViewportSize { Width = 412, Height = 860 } : new ViewportSize { Width = 1000, Height = 760 },
        });
        context.SetDefaultTimeout(TimeoutMs);
        context.SetDefaultNavigationTimeout(TimeoutMs);
        return context;
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
