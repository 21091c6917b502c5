using System.Net.Http.Headers;
using System.Text.Json;
using QrOrleans.Tests.Infrastructure;
using Xunit;

namespace QrOrleans.Tests.QrImages;

/// <summary>One gateway with default settings for the image tests that do not need a fast-rotating QR.</summary>
public sealed class QrImageNodeFixture : IAsyncLifetime
{
    public GatewayNode Node { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Node = await GatewayNode.StartAsync();

    public async ValueTask DisposeAsync() => await Node.DisposeAsync();
}

/// <summary>
/// The QR images the desktop shows (qr.png, qr.svg) are what a phone's camera reads: decoded by an outside
/// scanner (zbarimg) they must give exactly the session's current QR URL, follow its rotation, and never be
/// handed out without the desktop token.
/// </summary>
public sealed class QrImageTests(QrImageNodeFixture fixture)
    : IClassFixture<QrImageNodeFixture>
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Png_decodes_to_exactly_the_snapshot_qr_url()
    {
        var node = fixture.Node;
        var api = new ApiClient(node.Http);
        var session = await api.CreateSessionAsync();

        var (url, image) = await ReadStableImageAsync(node.Http, session, "png");

        Assert.Equal("image/png", image.ContentType);
        Assert.Contains("no-store", image.CacheControl);
        Assert.Equal(url, await QrDecoder.DecodePngAsync(image.Bytes));
        // The code opens this very server's approve page for this session.
        Assert.StartsWith($"{node.BaseAddress}l/#{session.SessionId}.", url);
        Assert.Equal(session.QrUrl, url);
    }

    [Fact]
    public async Task Svg_decodes_to_exactly_the_snapshot_qr_url()
    {
        var node = fixture.Node;
        var api = new ApiClient(node.Http);
        var session = await api.CreateSessionAsync();

        var (url, image) = await ReadStableImageAsync(node.Http, session, "svg");

        Assert.Equal("image/svg+xml", image.ContentType);
        Assert.Contains("no-store", image.CacheControl);
        var png = await QrDecoder.SvgToPngAsync(System.Text.Encoding.UTF8.GetString(image.Bytes));
        Assert.Equal(url, await QrDecoder.DecodePngAsync(png));
        Assert.StartsWith($"{node.BaseAddress}l/#{session.SessionId}.", url);
    }

    [Fact]
    public async Task After_the_qr_rotates_the_images_decode_to_the_new_url_and_the_old_code_is_dead()
    {
        await using var node = await GatewayNode.StartAsync(new Dictionary<string, string?> { ["QrOrleans:QrSession:QrTtl"] = "00:00:02" });
        var api = new ApiClient(node.Http);
        var phone = await api.NewPhoneAsync();
        var session = await api.CreateSessionAsync();
        var (firstUrl, firstImage) = await ReadStableImageAsync(node.Http, session, "png");
        Assert.Equal(firstUrl, await QrDecoder.DecodePngAsync(firstImage.Bytes));

        await WaitForRotationAsync(api, session, 2);

        var (pngUrl, png) = await ReadStableImageAsync(node.Http, session, "png");
        var pngText = await QrDecoder.DecodePngAsync(png.Bytes);
        var (svgUrl, svg) = await ReadStableImageAsync(node.Http, session, "svg");
        var svgText = await QrDecoder.DecodePngAsync(await QrDecoder.SvgToPngAsync(System.Text.Encoding.UTF8.GetString(svg.Bytes)));

        Assert.Equal(pngUrl, pngText);
        Assert.Equal(svgUrl, svgText);
        Assert.NotEqual(firstUrl, pngText);
        Assert.NotEqual(firstUrl, svgText);
        Assert.StartsWith($"{node.BaseAddress}l/#{session.SessionId}.", pngText);

        // A phone that photographed the first image is too late now.
        var stale = await api.ScanAsync(phone.AccessToken, firstUrl);
        Assert.Equal(410, stale.Status);
        Assert.Equal("qr_expired", stale.Code);
    }

    [Theory]
    [InlineData("png")]
    [InlineData("svg")]
    public async Task The_image_is_never_served_without_this_sessions_desktop_token(string format)
    {
        var http = fixture.Node.Http;
        var api = new ApiClient(http);
        var session = await api.CreateSessionAsync();
        var other = await api.CreateSessionAsync();

        foreach (var (what, token, id) in new[]
                 {
                     ("no token", (string?)null, session.SessionId),
                     ("another session's token", other.DesktopToken, session.SessionId),
                     ("a made-up token", "not-a-real-token", session.SessionId),
                     ("no token, malformed id", null, "%20nope"),
                 })
        {
            using var response = await GetImageAsync(http, id, token, format);
            var body = await response.Content.ReadAsStringAsync(Ct);
            Assert.True((int)response.StatusCode == 401, $"{what}: expected 401, got {(int)response.StatusCode}: {body}");
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
            using var problem = JsonDocument.Parse(body);
            Assert.Equal(401, problem.RootElement.GetProperty("status").GetInt32());
            Assert.Equal("unauthenticated", problem.RootElement.GetProperty("code").GetString());
            // Nothing of the code leaks: not the URL, not its secret.
            Assert.DoesNotContain(session.QrUrl, body);
            Assert.DoesNotContain(session.QrUrl.Split('.')[^1], body);
        }

        // And with the right token it is served.
        using var ok = await GetImageAsync(http, session.SessionId, session.DesktopToken, format);
        Assert.Equal(200, (int)ok.StatusCode);
    }

    private sealed record Image(byte[] Bytes, string? ContentType, string CacheControl);

    private static async Task<HttpResponseMessage> GetImageAsync(HttpClient http, string sessionId, string? token, string format)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/v1/qr/sessions/{sessionId}/qr.{format}");
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
        return await http.SendAsync(request, Ct);
    }

    /// <summary>
    /// The image together with the QR URL that was current the whole time it was fetched: the snapshot is read
    /// before and after, and the pair is only used when both agree (a rotation in between means another try).
    /// </summary>
    private static async Task<(string Url, Image Image)> ReadStableImageAsync(HttpClient http, NewSession session, string format)
    {
        var api = new ApiClient(http);
        for (var attempt = 0; ; attempt++)
        {
            var before = await CurrentQrUrlAsync(api, session);
            using var response = await GetImageAsync(http, session.SessionId, session.DesktopToken, format);
            Assert.Equal(200, (int)response.StatusCode);
            var image = new Image(await response.Content.ReadAsByteArrayAsync(Ct), response.Content.Headers.ContentType?.MediaType,
                response.Headers.CacheControl?.ToString() ?? "");
            var after = await CurrentQrUrlAsync(api, session);
            if (before == after || attempt == 4)
            {
                Assert.Equal(before, after);
                return (after, image);
            }
        }
    }

    private static async Task<string> CurrentQrUrlAsync(ApiClient api, NewSession session)
    {
        var snapshot = (await api.SnapshotAsync(session)).EnsureStatus(200).Body;
        Assert.Equal("pending", snapshot.GetProperty("state").GetString());
        return snapshot.GetProperty("qr").GetProperty("url").GetString()!;
    }

    private static async Task WaitForRotationAsync(ApiClient api, NewSession session, int rotation)
    {
        var deadline = DateTimeOffset.UtcNow.AddSeconds(15);
        while (true)
        {
            var snapshot = (await api.SnapshotAsync(session)).EnsureStatus(200).Body;
            if (snapshot.TryGetProperty("qr", out var qr) && qr.ValueKind == JsonValueKind.Object &&
                qr.GetProperty("rotation").GetInt32() >= rotation)
            {
                return;
            }
            Assert.True(DateTimeOffset.UtcNow < deadline, $"The QR did not reach rotation {rotation}: {snapshot}");
            await Task.Delay(100, Ct);
        }
    }
}
