using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using QrOrleans.Cli.Hosting;
using QrOrleans.Grains.Accounts;
using QrOrleans.Tests.Accounts;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Cli;

/// <summary><c>qrorleans webhooks listen</c> as the README's fleet walk uses it: the owner endpoint of a real gateway's account.</summary>
public sealed partial class WebhooksListenTests
{
    private const string Secret = "listen-test-webhook-secret";

    [Fact]
    public async Task A_real_fleet_delivers_to_the_listener_which_prints_each_verified_event_once_and_refuses_forgeries()
    {
        await using var node = await GatewayNode.StartAsync(Fleet.Settings());
        var fleet = new Fleet(node);
        using var stop = new CancellationTokenSource();
        var run = CliRun.Start(["webhooks", "listen", "--port", "0", "--secret", Secret], new CliEnvironment(), stop.Token);
        var url = (await run.Output.WaitForAsync(ListeningOn())).Groups[1].Value;
        Assert.DoesNotContain(Secret, run.Output.Text, StringComparison.Ordinal); // a given secret is never echoed

        var id = Fleet.NewId("listen");
        (await fleet.PutAsync(id, new
        {
            platform = "sandbox", displayName = id, connector = new { autoConfirm = true },
            owner = new { webhookUrl = url, webhookSecret = Secret },
        })).EnsureStatus(201);
        (await fleet.PairAsync(id)).EnsureStatus(202);
        await run.Output.WaitForAsync(new Regex($@"account\.connected  {id}  "));

        // One line per delivery, each answered 2xx at the first attempt (a refused one would be printed and sent again).
        var lines = run.Output.Text.Split('\n').Where(l => l.Contains($"  {id}  ", StringComparison.Ordinal)).ToArray();
        Assert.Equal(["pairing.qr", "pairing.scanned", "pairing.withdrawn", "account.connected"], lines.Select(l => l.Split("  ")[1]));
        Assert.All(lines, l => Assert.Matches(@"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  ", l));
        var qr = JsonDocument.Parse(lines[0].Split("  ", 4)[3]).RootElement;
        Assert.Equal((id, 1), (qr.GetProperty("accountId").GetString(), qr.GetProperty("cycle").GetInt32()));
        Assert.Matches(@"^iVBORw0KGgo.*…\(\d+ characters\)$", qr.GetProperty("qrPngBase64").GetString()); // the PNG, shortened
        Assert.DoesNotContain("refused", run.Output.Text, StringComparison.Ordinal);

        using var forger = new HttpClient();
        var body = $$"""{"event":"account.connected","accountId":"{{id}}"}""";
        Assert.Equal(401, await PostAsync(forger, url, body, WebhookSender.Signature("another-secret-of-16+", body)));
        Assert.Equal(401, await PostAsync(forger, url, body, null));
        Assert.Equal(401, await PostAsync(forger, url, body + " ", WebhookSender.Signature(Secret, body))); // the body was changed after signing
        Assert.Equal(204, await PostAsync(forger, url, body, WebhookSender.Signature(Secret, body)));

        var refused = run.Output.Text.Split('\n').Where(l => l.Contains("  refused  ", StringComparison.Ordinal)).ToArray();
        Assert.Equal(3, refused.Length);
        Assert.Contains("the signature does not match the body under this secret (answered 401)", refused[0], StringComparison.Ordinal);
        Assert.Contains("no X-QrOrleans-Signature (answered 401)", refused[1], StringComparison.Ordinal);
        Assert.All(refused, l => Assert.DoesNotContain(id, l, StringComparison.Ordinal)); // a refused body is not shown
        Assert.Equal(2, run.Output.Text.Split('\n').Count(l => l.Contains($"account.connected  {id}  ", StringComparison.Ordinal)));

        await stop.CancelAsync();
        Assert.Equal(ExitCodes.Interrupted, await run.Completion);
        Assert.Equal("", run.Error.Text);
    }

    [Fact]
    public async Task Without_a_secret_one_is_made_and_printed_and_a_taken_port_or_short_secret_is_refused()
    {
        using var stop = new CancellationTokenSource();
        var run = CliRun.Start(["webhooks", "listen", "--port", "0"], new CliEnvironment(), stop.Token);
        var url = (await run.Output.WaitForAsync(ListeningOn())).Groups[1].Value;
        var secret = (await run.Output.WaitForAsync(PrintedSecret())).Groups[1].Value;
        using var client = new HttpClient();
        Assert.Equal(204, await PostAsync(client, url, "{}", WebhookSender.Signature(secret, "{}")));

        var port = new Uri(url).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var taken = await CliRun.RunAsync(["webhooks", "listen", "--port", port, "--secret", Secret], new CliEnvironment());
        Assert.Equal(1, taken.ExitCode);
        Assert.StartsWith($"error: Cannot listen on 127.0.0.1:{port}", taken.Error, StringComparison.Ordinal);

        var variables = new Dictionary<string, string?> { ["QRORLEANS_WEBHOOK_SECRET"] = "too-short" };
        var shortSecret = await CliRun.RunAsync(["webhooks", "listen", "--port", "0"], new CliEnvironment { Variables = name => variables.GetValueOrDefault(name) });
        Assert.Equal(2, shortSecret.ExitCode);
        Assert.Contains("16 to 256 characters", shortSecret.Error, StringComparison.Ordinal);

        await stop.CancelAsync();
        Assert.Equal(ExitCodes.Interrupted, await run.Completion);
    }

    private static async Task<int> PostAsync(HttpClient client, string url, string body, string? signature)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Add("X-QrOrleans-Event", "account.connected");
        if (signature is not null)
        {
            request.Headers.Add("X-QrOrleans-Signature", signature);
        }
        using var response = await client.SendAsync(request);
        return (int)response.StatusCode;
    }

    [GeneratedRegex(@"on (http://127\.0\.0\.1:\d+/) ")]
    private static partial Regex ListeningOn();

    [GeneratedRegex(@"Secret \(give it as owner\.webhookSecret\): (\S+)")]
    private static partial Regex PrintedSecret();
}
