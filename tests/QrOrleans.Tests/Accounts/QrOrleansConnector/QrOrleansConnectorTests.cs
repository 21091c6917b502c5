using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using QrOrleans.Accounts;
using QrOrleans.Grains.Connectors.QrOrleansServer;
using QrOrleans.Tests.Infrastructure;
using Connector = QrOrleans.Grains.Connectors.QrOrleansServer.QrOrleansConnector;

namespace QrOrleans.Tests.Accounts.QrOrleansConnector;

public sealed class ConnectorNodeFixture : IAsyncLifetime
{
    public GatewayNode Node { get; private set; } = null!;

    public ApiClient Api => new(Node.Http);

    public async ValueTask InitializeAsync() => Node = await GatewayNode.StartAsync();

    public ValueTask DisposeAsync() => Node.DisposeAsync();
}

/// <summary>An agent links itself as a device of a user of a real QrOrleans server, the owner approving from a phone.</summary>
public sealed class QrOrleansConnectorTests(ConnectorNodeFixture fixture) : IClassFixture<ConnectorNodeFixture>, IDisposable
{
    private static readonly JsonElement NoSettings = default;

    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(90) };

    private ApiClient Api => fixture.Api;

    private Connector NewConnector(Uri? defaultServer = null) => new(_http, defaultServer ?? fixture.Node.BaseAddress);

    private static ConnectorContext Context(string displayName = "Build agent", JsonElement settings = default) =>
        new("acct-" + Guid.NewGuid().ToString("N")[..8], displayName, settings);

    public void Dispose() => _http.Dispose();

    [Fact]
    public async Task Pairing_shows_the_servers_sign_in_qr_and_a_phone_approval_yields_the_devices_credentials()
    {
        var connector = NewConnector();
        var context = Context("Support bot");
        var phone = await Api.NewPhoneAsync();

        var code = await connector.BeginPairingAsync(context, CancellationToken.None);
        Assert.StartsWith(fixture.Node.BaseAddress.ToString().TrimEnd('/') + "/l/#", code.QrContent, StringComparison.Ordinal);
        Assert.InRange(code.ExpiresAt, DateTimeOffset.UtcNow, DateTimeOffset.UtcNow.AddMinutes(5));

        var scan = (await Api.ScanAsync(phone.AccessToken, code.QrContent)).EnsureStatus(200);
        Assert.Equal("Support bot (agent)", scan.Body.GetProperty("requester").GetProperty("clientName").GetString());
        Assert.Equal("agent", scan.Body.GetProperty("requester").GetProperty("clientKind").GetString());

        var scanned = await connector.PollPairingAsync(context, code, TimeSpan.FromSeconds(10), CancellationToken.None);
        Assert.Equal(PairingProgress.Scanned, scanned.Progress);
        Assert.Contains(scanned.NumberMatch, scan.Body.GetProperty("numberChoices").EnumerateArray().Select(e => e.GetString()));
        Assert.Null(scanned.Credentials);

        var sessionId = scan.Body.GetProperty("sessionId").GetString()!;
        (await Api.ApproveAsync(phone.AccessToken, sessionId, scanned.NumberMatch!)).EnsureStatus(200);
        var confirmed = await connector.PollPairingAsync(context, code, TimeSpan.FromSeconds(10), CancellationToken.None);
        Assert.Equal(PairingProgress.Confirmed, confirmed.Progress);

        var credentials = QrOrleansCredentials.Parse(confirmed.Credentials);
        Assert.Equal(fixture.Node.BaseAddress.ToString(), credentials.ServerUrl);
        Assert.Equal(phone.UserId, credentials.UserId);
        Assert.StartsWith(credentials.DeviceId + ".", credentials.RefreshToken, StringComparison.Ordinal);
        Assert.DoesNotContain(credentials.RefreshToken, credentials.ToString(), StringComparison.Ordinal);

        // The agent is now one of the owner's devices, named after the account.
        var devices = (await Api.SendAsync(HttpMethod.Get, "/v1/devices", null, phone.AccessToken)).EnsureStatus(200);
        var agent = devices.Body.EnumerateArray().Single(d => d.GetProperty("id").GetString() == credentials.DeviceId);
        Assert.Equal("agent", agent.GetProperty("kind").GetString());
        Assert.Equal("Support bot (agent)", agent.GetProperty("name").GetString());
        Assert.False(agent.GetProperty("revoked").GetBoolean());
    }

    [Fact]
    public async Task Health_rotates_the_refresh_token_and_replaying_the_old_one_revokes_the_device()
    {
        var connector = NewConnector();
        var context = Context();
        var (phone, first) = await PairAsync(connector, context);

        var health = await connector.CheckHealthAsync(context, first, CancellationToken.None);
        var rotated = QrOrleansCredentials.Parse(health.Credentials);
        Assert.NotEqual(QrOrleansCredentials.Parse(first).RefreshToken, rotated.RefreshToken);
        Assert.Equal(QrOrleansCredentials.Parse(first).DeviceId, rotated.DeviceId);

        // Stored properly, the rotated credentials keep working, and rotate again.
        var again = await connector.CheckHealthAsync(context, health.Credentials!, CancellationToken.None);
        Assert.NotEqual(rotated.RefreshToken, QrOrleansCredentials.Parse(again.Credentials).RefreshToken);

        // A host that kept the old credentials replays a rotated token: the server signs the device out.
        var replay = await Assert.ThrowsAsync<PlatformException>(() => connector.CheckHealthAsync(context, first, CancellationToken.None));
        Assert.Equal((ErrorClass.Auth, "refresh_token_reused"), (replay.Class, replay.Code));
        Assert.DoesNotContain(QrOrleansCredentials.Parse(first).RefreshToken, replay.Message, StringComparison.Ordinal);

        var after = await Assert.ThrowsAsync<PlatformException>(() => connector.CheckHealthAsync(context, again.Credentials!, CancellationToken.None));
        Assert.Equal(ErrorClass.Auth, after.Class);
        Assert.True(await IsRevokedAsync(phone.AccessToken, rotated.DeviceId));
    }

    [Fact]
    public async Task A_device_the_owner_revokes_from_the_phone_fails_its_next_health_check_as_auth()
    {
        var connector = NewConnector();
        var context = Context();
        var (phone, credentials) = await PairAsync(connector, context);
        credentials = (await connector.CheckHealthAsync(context, credentials, CancellationToken.None)).Credentials!;

        var deviceId = QrOrleansCredentials.Parse(credentials).DeviceId;
        (await Api.SendAsync(HttpMethod.Delete, "/v1/devices/" + deviceId, null, phone.AccessToken)).EnsureStatus(204);

        var e = await Assert.ThrowsAsync<PlatformException>(() => connector.CheckHealthAsync(context, credentials, CancellationToken.None));
        Assert.Equal(ErrorClass.Auth, e.Class);
    }

    [Fact]
    public async Task Logout_revokes_the_device_on_its_server_and_a_second_logout_is_harmless()
    {
        var connector = NewConnector();
        var context = Context();
        var (phone, credentials) = await PairAsync(connector, context);

        await connector.LogoutAsync(context, credentials, CancellationToken.None);

        Assert.True(await IsRevokedAsync(phone.AccessToken, QrOrleansCredentials.Parse(credentials).DeviceId));
        await connector.LogoutAsync(context, credentials, CancellationToken.None);
        var e = await Assert.ThrowsAsync<PlatformException>(() => connector.CheckHealthAsync(context, credentials, CancellationToken.None));
        Assert.Equal(ErrorClass.Auth, e.Class);
    }

    [Fact]
    public async Task The_device_is_bound_to_a_key_kept_in_its_credentials_and_its_refresh_token_is_refused_without_it()
    {
        var connector = NewConnector();
        var context = Context();
        var phone = await Api.NewPhoneAsync();
        // What the connector sends, to check the key it created the session with.
        var created = new List<JsonElement>();
        using var watched = new HttpClient(new Recording(created)) { Timeout = TimeSpan.FromSeconds(90) };
        var recording = new Connector(watched, fixture.Node.BaseAddress);

        var code = await recording.BeginPairingAsync(context, CancellationToken.None);
        var scan = (await Api.ScanAsync(phone.AccessToken, code.QrContent)).EnsureStatus(200);
        var scanned = await recording.PollPairingAsync(context, code, TimeSpan.FromSeconds(10), CancellationToken.None);
        (await Api.ApproveAsync(phone.AccessToken, scan.Body.GetProperty("sessionId").GetString()!, scanned.NumberMatch!)).EnsureStatus(200);
        var confirmed = await recording.PollPairingAsync(context, code, TimeSpan.FromSeconds(10), CancellationToken.None);
        Assert.Equal(PairingProgress.Confirmed, confirmed.Progress);

        // The session was keyed: the public JWK alone went to the server, and the private key is in the credentials,
        // which the vault seals as one string.
        var jwk = created.Single().GetProperty("key");
        Assert.Equal(["crv", "kty", "x", "y"], jwk.EnumerateObject().Select(p => p.Name).Order(StringComparer.Ordinal));
        var credentials = QrOrleansCredentials.Parse(confirmed.Credentials);
        Assert.NotNull(credentials.Key);
        Assert.Contains(credentials.Key!, confirmed.Credentials!, StringComparison.Ordinal);
        Assert.DoesNotContain(credentials.Key!, credentials.ToString(), StringComparison.Ordinal);

        // Health refreshes with a proof of that key, and the rotated credentials keep it.
        var health = await connector.CheckHealthAsync(context, confirmed.Credentials!, CancellationToken.None);
        var rotated = QrOrleansCredentials.Parse(health.Credentials);
        Assert.Equal(credentials.Key, rotated.Key);
        Assert.NotEqual(credentials.RefreshToken, rotated.RefreshToken);

        // The refresh token without its key is refused, and the device (still holding its key) keeps working.
        var alone = await Api.SendAsync(HttpMethod.Post, "/v1/auth/refresh", new { refreshToken = rotated.RefreshToken });
        Assert.Equal(401, alone.Status);
        var again = await connector.CheckHealthAsync(context, health.Credentials!, CancellationToken.None);
        Assert.Equal(credentials.Key, QrOrleansCredentials.Parse(again.Credentials).Key);

        // A logout revokes the device with its bound access token.
        await connector.LogoutAsync(context, again.Credentials!, CancellationToken.None);
        Assert.True(await IsRevokedAsync(phone.AccessToken, credentials.DeviceId));
    }

    [Fact]
    public async Task A_poll_without_news_waits_then_repeats_the_current_status_instead_of_spinning()
    {
        var connector = NewConnector();
        var context = Context();
        var phone = await Api.NewPhoneAsync();
        var code = await connector.BeginPairingAsync(context, CancellationToken.None);

        var clock = Stopwatch.StartNew();
        Assert.Equal(PairingProgress.Waiting, (await connector.PollPairingAsync(context, code, TimeSpan.FromSeconds(1), CancellationToken.None)).Progress);
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(10));

        (await Api.ScanAsync(phone.AccessToken, code.QrContent)).EnsureStatus(200);
        clock.Restart();
        var news = await connector.PollPairingAsync(context, code, TimeSpan.FromSeconds(20), CancellationToken.None);
        Assert.Equal(PairingProgress.Scanned, news.Progress);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), "news is answered at once");

        clock.Restart();
        var same = await connector.PollPairingAsync(context, code, TimeSpan.FromSeconds(1), CancellationToken.None);
        Assert.Equal((PairingProgress.Scanned, news.NumberMatch), (same.Progress, same.NumberMatch));
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(10));
    }

    [Fact]
    public async Task A_rejection_on_the_phone_ends_the_ceremony_as_auth()
    {
        var connector = NewConnector();
        var context = Context();
        var phone = await Api.NewPhoneAsync();
        var code = await connector.BeginPairingAsync(context, CancellationToken.None);
        var scan = (await Api.ScanAsync(phone.AccessToken, code.QrContent)).EnsureStatus(200);
        (await Api.RejectAsync(phone.AccessToken, scan.Body.GetProperty("sessionId").GetString()!)).EnsureStatus(200);

        var e = await Assert.ThrowsAsync<PlatformException>(() => connector.PollPairingAsync(context, code, TimeSpan.FromSeconds(5), CancellationToken.None));
        Assert.Equal((ErrorClass.Auth, "pairing_rejected"), (e.Class, e.Code));
    }

    [Fact]
    public async Task The_serverUrl_setting_picks_the_server_and_a_bad_one_is_an_auth_problem_for_a_human()
    {
        var phone = await Api.NewPhoneAsync();
        // The default points nowhere useful; the account's settings name the real server.
        var connector = NewConnector(new Uri("http://127.0.0.1:9/"));
        var settings = JsonDocument.Parse($$"""{ "serverUrl": "{{fixture.Node.BaseAddress}}" }""").RootElement;
        var context = Context(settings: settings);
        var code = await connector.BeginPairingAsync(context, CancellationToken.None);
        Assert.StartsWith(fixture.Node.BaseAddress.ToString().TrimEnd('/') + "/l/#", code.QrContent, StringComparison.Ordinal);
        (await Api.ScanAsync(phone.AccessToken, code.QrContent)).EnsureStatus(200);

        foreach (var bad in new[] { """{ "serverUrl": "ftp://example/" }""", """{ "serverUrl": 42 }""", """{ "serverUrl": "not a url" }""" })
        {
            var e = await Assert.ThrowsAsync<PlatformException>(() =>
                connector.BeginPairingAsync(Context(settings: JsonDocument.Parse(bad).RootElement), CancellationToken.None));
            Assert.Equal((ErrorClass.Auth, "invalid_settings"), (e.Class, e.Code));
        }
        var none = await Assert.ThrowsAsync<PlatformException>(() =>
            new Connector(_http, (Uri?)null).BeginPairingAsync(Context(settings: NoSettings), CancellationToken.None));
        Assert.Equal((ErrorClass.Auth, "invalid_settings"), (none.Class, none.Code));
    }

    [Fact]
    public async Task An_unreachable_server_is_transient_and_unreadable_credentials_are_auth()
    {
        var connector = NewConnector(new Uri($"http://127.0.0.1:{ClosedPort()}/"));
        var e = await Assert.ThrowsAsync<PlatformException>(() => connector.BeginPairingAsync(Context(), CancellationToken.None));
        Assert.Equal((ErrorClass.Transient, "unreachable"), (e.Class, e.Code));

        foreach (var garbage in new[] { "", "not json", """{"v":1}""", """{"v":2,"serverUrl":"http://x/","deviceId":"d","refreshToken":"t"}""" })
        {
            var health = await Assert.ThrowsAsync<PlatformException>(() => connector.CheckHealthAsync(Context(), garbage, CancellationToken.None));
            Assert.Equal((ErrorClass.Auth, "invalid_credentials"), (health.Class, health.Code));
            var send = await Assert.ThrowsAsync<PlatformException>(() => connector.SendMessageAsync(Context(), garbage, "someone", "hi", CancellationToken.None));
            Assert.Equal(ErrorClass.Auth, send.Class);
        }
    }

    [Fact]
    public async Task Sending_is_an_acknowledged_no_op_once_credentials_are_present()
    {
        var connector = NewConnector();
        var context = Context();
        var (_, credentials) = await PairAsync(connector, context);
        await connector.SendMessageAsync(context, credentials, "owner", "hello", CancellationToken.None);
        // No call was made: the credentials are still the current ones (a refresh would have rotated them away).
        Assert.NotNull((await connector.CheckHealthAsync(context, credentials, CancellationToken.None)).Credentials);
    }

    [Fact]
    public async Task Server_errors_are_transient_and_429_is_rate_limited_with_its_retry_after()
    {
        using var unavailable = new HttpClient(new Answering(HttpStatusCode.ServiceUnavailable, null));
        var e = await Assert.ThrowsAsync<PlatformException>(() =>
            new Connector(unavailable, new Uri("http://server.test/")).BeginPairingAsync(Context(), CancellationToken.None));
        Assert.Equal(ErrorClass.Transient, e.Class);

        using var throttled = new HttpClient(new Answering(HttpStatusCode.TooManyRequests, TimeSpan.FromSeconds(17)));
        var limited = await Assert.ThrowsAsync<PlatformException>(() =>
            new Connector(throttled, new Uri("http://server.test/")).CheckHealthAsync(Context(),
                new QrOrleansCredentials("http://server.test/", "d", null, "d.secret").ToJson(), CancellationToken.None));
        Assert.Equal((ErrorClass.RateLimited, "rate_limited", TimeSpan.FromSeconds(17)), (limited.Class, limited.Code, limited.RetryAfter));
    }

    private async Task<((string UserId, string AccessToken, string RefreshToken, string DeviceId) Phone, string Credentials)> PairAsync(
        Connector connector, ConnectorContext context)
    {
        var phone = await Api.NewPhoneAsync();
        var code = await connector.BeginPairingAsync(context, CancellationToken.None);
        var scan = (await Api.ScanAsync(phone.AccessToken, code.QrContent)).EnsureStatus(200);
        var scanned = await connector.PollPairingAsync(context, code, TimeSpan.FromSeconds(10), CancellationToken.None);
        (await Api.ApproveAsync(phone.AccessToken, scan.Body.GetProperty("sessionId").GetString()!, scanned.NumberMatch!)).EnsureStatus(200);
        var confirmed = await connector.PollPairingAsync(context, code, TimeSpan.FromSeconds(10), CancellationToken.None);
        Assert.Equal(PairingProgress.Confirmed, confirmed.Progress);
        return (phone, confirmed.Credentials!);
    }

    private async Task<bool> IsRevokedAsync(string phoneAccessToken, string deviceId)
    {
        var devices = (await Api.SendAsync(HttpMethod.Get, "/v1/devices", null, phoneAccessToken)).EnsureStatus(200);
        return devices.Body.EnumerateArray().Single(d => d.GetProperty("id").GetString() == deviceId).GetProperty("revoked").GetBoolean();
    }

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Passes every call on, keeping the body of each session creation.</summary>
    private sealed class Recording(List<JsonElement> created) : DelegatingHandler(new SocketsHttpHandler())
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (request.Method == HttpMethod.Post && request.RequestUri!.AbsolutePath == "/v1/qr/sessions")
            {
                created.Add(JsonDocument.Parse(await request.Content!.ReadAsStringAsync(cancellationToken)).RootElement.Clone());
            }
            return await base.SendAsync(request, cancellationToken);
        }
    }

    private sealed class Answering(HttpStatusCode status, TimeSpan? retryAfter) : HttpMessageHandler
    {
        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            var response = new HttpResponseMessage(status)
            {
                Content = new StringContent($$"""{"status":{{(int)status}},"code":"{{(status == HttpStatusCode.TooManyRequests ? "rate_limited" : "unavailable")}}"}""",
                    System.Text.Encoding.UTF8, "application/problem+json"),
            };
            if (retryAfter is { } delta)
            {
                response.Headers.RetryAfter = new System.Net.Http.Headers.RetryConditionHeaderValue(delta);
            }
            return Task.FromResult(response);
        }
    }
}

/// <summary>Settings that need a node of their own: a QR that rotates every two seconds.</summary>
public sealed class QrOrleansConnectorRotationTests
{
    [Fact]
    public async Task A_rotated_qr_ends_the_cycle_as_expired_and_the_next_cycle_is_a_new_session()
    {
        await using var node = await GatewayNode.StartAsync(new Dictionary<string, string?> { ["QrOrleans:QrSession:QrTtl"] = "00:00:02" });
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(90) };
        var api = new ApiClient(node.Http);
        var connector = new Connector(http, node.BaseAddress);
        var context = new ConnectorContext("acct-rotation", "Rotating agent", default);
        var phone = await api.NewPhoneAsync();

        var first = await connector.BeginPairingAsync(context, CancellationToken.None);
        var status = await connector.PollPairingAsync(context, first, TimeSpan.FromSeconds(15), CancellationToken.None);
        Assert.Equal(PairingProgress.Expired, status.Progress);
        // the owner's code is dead, and so is its session: cancelled, so no later code of it can be scanned either
        Assert.Equal(410, (await api.ScanAsync(phone.AccessToken, first.QrContent)).Status);
        var cluster = (await api.SendAsync(HttpMethod.Get, "/v1/cluster", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200);
        Assert.Equal(1, cluster.Body.GetProperty("grains").GetProperty("qrSession").GetProperty("cancelled").GetInt32());

        var second = await connector.BeginPairingAsync(context, CancellationToken.None);
        Assert.NotEqual(SessionOf(first.QrContent), SessionOf(second.QrContent));
        (await api.ScanAsync(phone.AccessToken, second.QrContent)).EnsureStatus(200);
        Assert.Equal(PairingProgress.Scanned, (await connector.PollPairingAsync(context, second, TimeSpan.FromSeconds(5), CancellationToken.None)).Progress);
    }

    private static string SessionOf(string qrUrl) => qrUrl[(qrUrl.LastIndexOf('/') + 1)..].Split('.')[0];
}
