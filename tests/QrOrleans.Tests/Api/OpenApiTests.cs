using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.Playwright;
using QrOrleans.Tests.Browser;
using QrOrleans.Tests.Infrastructure;
using static Microsoft.Playwright.Assertions;

namespace QrOrleans.Tests.Api;

/// <summary>
/// The OpenAPI document and the Scalar reference page of a real gateway: every call of API.md is described with its
/// problem codes, the codes agree with what the gateway really answers, and the page renders with no network beyond
/// the gateway.
/// </summary>
public sealed partial class OpenApiTests(BrowserFixture fixture) : IClassFixture<BrowserFixture>
{
    /// <summary>The calls of API.md (desktop, phone and operator sides), as method and OpenAPI path.</summary>
    private static readonly (string Method, string Path)[] Contract =
    [
        ("post", "/v1/qr/sessions"), ("get", "/v1/qr/sessions/{id}"), ("get", "/v1/qr/sessions/{id}/events"),
        ("get", "/v1/qr/sessions/{id}/qr.svg"), ("get", "/v1/qr/sessions/{id}/qr.png"), ("post", "/v1/qr/sessions/{id}/cancel"),
        ("post", "/v1/qr/sessions/{id}/claim"),
        ("post", "/v1/qr/scan"), ("post", "/v1/qr/sessions/{id}/approve"), ("post", "/v1/qr/sessions/{id}/reject"),
        ("get", "/v1/me"), ("get", "/v1/devices"), ("delete", "/v1/devices/{id}"), ("post", "/v1/auth/refresh"),
        ("post", "/v1/admin/users"), ("post", "/v1/admin/users/{id}/devices"),
        ("put", "/v1/accounts/{accountId}"), ("get", "/v1/accounts"), ("get", "/v1/accounts/{accountId}"),
        ("post", "/v1/accounts/{accountId}/pair"), ("post", "/v1/accounts/{accountId}/messages"),
        ("post", "/v1/accounts/{accountId}/export"), ("post", "/v1/accounts/{accountId}/import"), ("delete", "/v1/accounts/{accountId}"),
        ("get", "/v1/cluster"),
    ];

    private GatewayNode Node => fixture.Node;

    [Fact]
    public async Task Every_call_of_the_contract_is_in_the_document_with_a_summary_and_its_problem_codes()
    {
        var paths = (await DocumentAsync()).GetProperty("paths");

        var missing = Contract.Where(c => !(paths.TryGetProperty(c.Path, out var item) && item.TryGetProperty(c.Method, out _))).ToList();
        Assert.Empty(missing);
        foreach (var (path, item) in paths.EnumerateObject().Select(p => (p.Name, p.Value)))
        {
            foreach (var operation in item.EnumerateObject())
            {
                var name = $"{operation.Name.ToUpperInvariant()} {path}";
                Assert.True(operation.Value.TryGetProperty("summary", out var summary) && summary.GetString() is { Length: > 0 }, $"{name} has no summary");
                Assert.True(operation.Value.TryGetProperty("description", out _), $"{name} has no description");
                var codes = Codes(operation.Value);
                Assert.True(codes.Count > 0, $"{name} lists no problem codes");
                foreach (var (code, status) in codes)
                {
                    // Each code sits under its status as a problem+json response whose description names it.
                    var response = operation.Value.GetProperty("responses").GetProperty(status.ToString(System.Globalization.CultureInfo.InvariantCulture));
                    Assert.Contains($"`{code}`", response.GetProperty("description").GetString(), StringComparison.Ordinal);
                    Assert.True(response.GetProperty("content").TryGetProperty("application/problem+json", out _), $"{name} {status} is not problem+json");
                }
            }
        }
    }

    [Fact]
    public async Task The_documented_codes_are_those_of_api_md()
    {
        var paths = (await DocumentAsync()).GetProperty("paths");
        Dictionary<string, int> Of(string method, string path) => Codes(paths.GetProperty(path).GetProperty(method)).ToDictionary(c => c.Code, c => c.Status);

        var claim = Of("post", "/v1/qr/sessions/{id}/claim");
        Assert.Equal((409, 410, 401), (claim["not_approved"], claim["already_claimed"], claim["unauthenticated"]));
        var scan = Of("post", "/v1/qr/scan");
        Assert.Equal((404, 410, 409, 409), (scan["qr_invalid"], scan["qr_expired"], scan["qr_already_scanned"], scan["qr_already_used"]));
        Assert.Equal(429, scan["rate_limited"]); // the scan endpoint is rate limited per IP
        var approve = Of("post", "/v1/qr/sessions/{id}/approve");
        Assert.Equal((403, 422, 409), (approve["not_scanner"], approve["number_mismatch"], approve["invalid_state"]));
        Assert.Equal(401, Of("post", "/v1/auth/refresh")["refresh_token_reused"]);
        var send = Of("post", "/v1/accounts/{accountId}/messages");
        Assert.Equal((429, 409, 409), (send["rate_budget_exhausted"], send["not_connected"], send["cooling_down"]));
        Assert.Equal(400, send["invalid_json"]); // it takes a JSON body
        Assert.DoesNotContain("invalid_json", Of("get", "/v1/cluster").Keys); // it takes none
    }

    [Fact]
    public async Task Refusals_the_gateway_really_answers_are_among_the_codes_documented_for_that_call()
    {
        var paths = (await DocumentAsync()).GetProperty("paths");
        ISet<string> Of(string method, string path) => Codes(paths.GetProperty(path).GetProperty(method)).Select(c => c.Code).ToHashSet();
        var api = new ApiClient(Node.Http);
        var (first, second) = (await api.NewPhoneAsync(), await api.NewPhoneAsync());
        var session = await api.CreateSessionAsync();

        var early = await api.ClaimAsync(session);
        (await api.ScanAsync(first.AccessToken, session.QrUrl)).EnsureStatus(200);
        var taken = await api.ScanAsync(second.AccessToken, session.QrUrl);
        var stranger = await api.ApproveAsync(second.AccessToken, session.SessionId, "42");

        Assert.Equal("not_approved", early.Code);
        Assert.Contains(early.Code!, Of("post", "/v1/qr/sessions/{id}/claim"));
        Assert.Equal("qr_already_scanned", taken.Code);
        Assert.Contains(taken.Code!, Of("post", "/v1/qr/scan"));
        Assert.Equal("not_scanner", stranger.Code);
        Assert.Contains(stranger.Code!, Of("post", "/v1/qr/sessions/{id}/approve"));
    }

    [Fact]
    public async Task The_reference_page_at_openapi_is_html_over_the_document_with_its_scripts_served_here()
    {
        var page = await Node.Http.GetAsync(new Uri("/openapi", UriKind.Relative), TestContext.Current.CancellationToken);
        var html = await page.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);

        Assert.Equal((200, "text/html"), ((int)page.StatusCode, page.Content.Headers.ContentType?.MediaType));
        Assert.Equal("/openapi/", page.RequestMessage!.RequestUri!.AbsolutePath); // /openapi redirects to the page's folder
        // The document's route without its leading slash: Scalar's script resolves it against the application's root.
        Assert.Contains("\"url\":\"openapi/v1.json\"", html, StringComparison.Ordinal);
        var scripts = ScriptSource().Matches(html).Select(m => m.Groups[1].Value).ToList();
        Assert.NotEmpty(scripts);
        Assert.All(scripts, src => Assert.DoesNotMatch("^(https?:)?//", src)); // no CDN
        foreach (var src in scripts)
        {
            var script = await Node.Http.GetAsync(new Uri(page.RequestMessage.RequestUri, src), TestContext.Current.CancellationToken);
            Assert.Equal((200, "text/javascript"), ((int)script.StatusCode, script.Content.Headers.ContentType?.MediaType));
        }
    }

    [Fact]
    public async Task The_reference_page_renders_the_operations_in_a_browser_without_leaving_the_gateway()
    {
        await using var context = await fixture.NewContextAsync(Node);
        var elsewhere = new List<string>();
        // Anything not addressed to the gateway is refused and recorded: the page must work on a machine offline.
        await context.RouteAsync(url => !url.StartsWith(Node.BaseAddress.ToString(), StringComparison.Ordinal), async route =>
        {
            lock (elsewhere)
            {
                elsewhere.Add(route.Request.Url);
            }
            await route.AbortAsync();
        });
        var page = await context.NewPageAsync();

        await page.GotoAsync("/openapi");

        await Expect(page.GetByText("The cluster: silos, activations, grains by state").First).ToBeVisibleAsync();
        await page.GetByRole(AriaRole.Link, new() { Name = "QR sessions (phone)", Exact = true }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Scan a QR code" })).ToBeVisibleAsync();
        await Expect(page.GetByText("qr_already_scanned").First).ToBeAttachedAsync();
        lock (elsewhere)
        {
            Assert.Empty(elsewhere);
        }
    }

    private async Task<JsonElement> DocumentAsync() =>
        (await new ApiClient(Node.Http).SendAsync(HttpMethod.Get, "/openapi/v1.json", null)).EnsureStatus(200).Body;

    private static List<(string Code, int Status)> Codes(JsonElement operation) =>
        operation.TryGetProperty("x-problem-codes", out var codes)
            ? codes.EnumerateArray().Select(c => (c.GetProperty("code").GetString()!, c.GetProperty("status").GetInt32())).ToList()
            : [];

    [GeneratedRegex("<script[^>]*\\ssrc=\"([^\"]+)\"")]
    private static partial Regex ScriptSource();
}
