using System.Text.Json;
using Microsoft.AspNetCore.SignalR.Client;
using Microsoft.Extensions.Logging;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Observability;

/// <summary>
/// With the shipped log levels (appsettings.json: "Orleans": "Warning"), a node doing ceremonies writes no Orleans
/// line below Warning, and nothing at Error: what an operator's console shows is what matters, and a line per grain
/// write is both noise and a cost (8 % of the server's CPU in a profile).
/// </summary>
public sealed class ShippedLogLevelsTests
{
    private const int Ceremonies = 400;

    [Fact]
    public async Task Ceremonies_with_the_shipped_levels_write_no_orleans_debug_line_and_no_error()
    {
        // LoggedGateway lowers every level to Debug; put back what appsettings.json ships for the general rules.
        var node = await LoggedGateway.StartAsync(new Dictionary<string, string?>
        {
            ["Logging:LogLevel:Default"] = "Information",
            ["Logging:LogLevel:Microsoft"] = "Information",
            ["Logging:LogLevel:Microsoft.AspNetCore"] = "Warning",
        });
        try
        {
            var api = new ApiClient(node.Http);
            var phone = await api.NewPhoneAsync();
            await using var hub = new HubConnectionBuilder().WithUrl(new Uri(node.BaseAddress, "/hubs/qr")).Build();
            hub.On<JsonElement>("state", _ => { });
            await hub.StartAsync();
            // The race behind "Unexpected target grain": the desktop stops watching while the session's last change
            // (completed, sent one-way) is still on its way to this node. Eight desktops at once, as under load.
            await Parallel.ForAsync(0, Ceremonies, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (_, _) =>
            {
                var session = await api.CreateSessionAsync();
                await hub.InvokeAsync("Watch", session.SessionId, session.DesktopToken);
                await api.ScanAndApproveAsync(phone.AccessToken, session);
                (await api.ClaimAsync(session)).EnsureStatus(200);
                await hub.SendAsync("Unwatch", session.SessionId);
            });
            // A change still in flight to an unlisted watch lands here or nowhere; give it the time to.
            await Task.Delay(TimeSpan.FromSeconds(3));

            var lines = node.Logs.Lines.ToArray();
            var orleansBelowWarning = lines.Where(l => l.Category.StartsWith("Orleans", StringComparison.Ordinal)
                && l.Level is >= LogLevel.Trace and < LogLevel.Warning).ToArray();
            Assert.True(orleansBelowWarning.Length == 0,
                $"{orleansBelowWarning.Length} Orleans lines below Warning, e.g. {string.Join(" / ", orleansBelowWarning.Take(3).Select(l => $"{l.Level} {l.Category}: {Short(l.Text)}"))}");
            var errors = lines.Where(l => l.Level >= LogLevel.Error && l.Level != LogLevel.None).ToArray();
            Assert.True(errors.Length == 0, $"{errors.Length} lines at Error, e.g. {string.Join(" / ", errors.Take(3).Select(l => $"{l.Category}: {Short(l.Text)}"))}");
            Assert.Contains(lines, l => l.Level == LogLevel.Information); // the provider does receive the node's lines
        }
        finally
        {
            await node.DisposeAsync();
        }
    }

    private static string Short(string text) => text.Length > 300 ? text[..300] : text;
}
