using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Api;

public sealed class NodeFixture : IAsyncLifetime
{
    public GatewayNode Node { get; private set; } = null!;

    public ApiClient Api => new(Node.Http);

    public async ValueTask InitializeAsync() => Node = await GatewayNode.StartAsync();

    public ValueTask DisposeAsync() => Node.DisposeAsync();
}

/// <summary>The ceremony over real HTTP on loopback, as a desktop, a phone and a curl user see it.</summary>
public sealed class CeremonyApiTests(NodeFixture fixture) : IClassFixture<NodeFixture>
{
    private ApiClient Api => fixture.Api;

    [Fact]
    public async Task The_full_ceremony_links_the_desktop_as_a_new_device_of_the_phone_user()
    {
        var phone = await Api.NewPhoneAsync();
        var session = await Api.CreateSessionAsync(new { client = new { name = "Build agent 7", kind = "agent" } });
        Assert.Equal("pending", session.Created.GetProperty("state").GetString());
        Assert.StartsWith(fixture.Node.BaseAddress.ToString().TrimEnd('/') + "/l/#" + session.SessionId + ".", session.QrUrl, StringComparison.Ordinal);

        var scan = (await Api.ScanAsync(phone.AccessToken, session.QrUrl)).EnsureStatus(200);
        Assert.Equal("Build agent 7", scan.Body.GetProperty("requester").GetProperty("clientName").GetString());
        Assert.Equal("agent", scan.Body.GetProperty("requester").GetProperty("clientKind").GetString());
        Assert.Equal("127.0.0.1", scan.Body.GetProperty("requester").GetProperty("ip").GetString());
        Assert.True(scan.Body.GetProperty("requester").GetProperty("sameNetwork").GetBoolean());
        Assert.Equal(3, scan.Body.GetProperty("numberChoices").GetArrayLength());

        var snapshot = (await Api.SnapshotAsync(session)).EnsureStatus(200);
        Assert.Equal("scanned", snapshot.Body.GetProperty("state").GetString());
        var number = snapshot.Body.GetProperty("numberMatch").GetString()!;
        Assert.Contains(number, scan.Body.GetProperty("numberChoices").EnumerateArray().Select(e => e.GetString()));

        (await Api.ClaimAsync(session)).EnsureStatus(409);
        var approve = (await Api.ApproveAsync(phone.AccessToken, session.SessionId, number)).EnsureStatus(200);
        Assert.Equal("approved", approve.Body.GetProperty("state").GetString());

        var claim = (await Api.ClaimAsync(session)).EnsureStatus(200);
        Assert.Equal("Bearer", claim.Body.GetProperty("tokenType").GetString());
        Assert.Equal(phone.UserId, claim.Body.GetProperty("user").GetProperty("id").GetString());
        var desktopAccess = claim.Body.GetProperty("accessToken").GetString()!;
        var desktopDevice = claim.Body.GetProperty("device").GetProperty("id").GetString()!;
        Assert.Equal("Build agent 7", claim.Body.GetProperty("device").GetProperty("name").GetString());
        Assert.True(claim.Body.GetProperty("expiresIn").GetInt32() > 0);

        var again = await Api.ClaimAsync(session);
        Assert.Equal((410, "already_claimed"), (again.Status, again.Code));

        // The desktop is now a device of the user, with its own tokens.
        var me = (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, desktopAccess)).EnsureStatus(200);
        Assert.Equal(phone.UserId, me.Body.GetProperty("id").GetString());
        var devices = (await Api.SendAsync(HttpMethod.Get, "/v1/devices", null, desktopAccess)).EnsureStatus(200);
        var linked = devices.Body.EnumerateArray().Single(d => d.GetProperty("id").GetString() == desktopDevice);
        Assert.True(linked.GetProperty("current").GetBoolean());
        Assert.Equal("agent", linked.GetProperty("kind").GetString());
        Assert.Equal(2, devices.Body.GetArrayLength());
    }

    [Fact]
    public async Task The_snapshot_never_reveals_who_scanned()
    {
        var phone = await Api.NewPhoneAsync("secretive-user");
        var session = await Api.CreateSessionAsync();
        await Api.ScanAsync(phone.AccessToken, session.QrUrl);
        var scanned = (await Api.SnapshotAsync(session)).Text;
        await Api.ApproveAsync(phone.AccessToken, session.SessionId, JsonDocument.Parse(scanned).RootElement.GetProperty("numberMatch").GetString()!);
        var approved = (await Api.SnapshotAsync(session)).Text;
        foreach (var text in new[] { scanned, approved })
        {
            Assert.DoesNotContain(phone.UserId, text, StringComparison.Ordinal);
            Assert.DoesNotContain("secretive-user", text, StringComparison.Ordinal);
            Assert.DoesNotContain(phone.DeviceId, text, StringComparison.Ordinal);
        }
        Assert.Equal(["expiresAt", "numberMatch", "sessionId", "state", "version"],
            JsonDocument.Parse(scanned).RootElement.EnumerateObject().Select(p => p.Name).Order());
    }

    [Fact]
    public async Task Every_desktop_call_answers_401_to_a_wrong_or_missing_token_whatever_the_session()
    {
        var session = await Api.CreateSessionAsync();
        var impostor = session with { DesktopToken = "not-the-token" };
        var unknown = session with { SessionId = "AAAAAAAAAAAAAAAAAAAAAA" };
        var malformed = session with { SessionId = "x" };
        var bodies = new HashSet<string>();
        foreach (var s in new[] { impostor, unknown, malformed })
        {
            foreach (var (method, path) in new[]
                     {
                         (HttpMethod.Get, ""), (HttpMethod.Get, "?waitForVersion=1&timeout=1"), (HttpMethod.Get, "/events"),
                         (HttpMethod.Get, "/qr.svg"), (HttpMethod.Get, "/qr.png"), (HttpMethod.Post, "/cancel"), (HttpMethod.Post, "/claim"),
                     })
            {
                var r = await Api.SendAsync(method, $"/v1/qr/sessions/{s.SessionId}{path}", null, s.DesktopToken);
                Assert.Equal((401, "unauthenticated"), (r.Status, r.Code));
                Assert.Equal("application/problem+json", r.ContentType);
                bodies.Add(r.Text);
            }
        }
        var none = await Api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}", null);
        Assert.Equal(401, none.Status);
        Assert.Single(bodies); // an unknown session and a known one with a wrong token look the same
        (await Api.SnapshotAsync(session)).EnsureStatus(200);
    }

    [Fact]
    public async Task Phone_side_error_codes()
    {
        var alice = await Api.NewPhoneAsync();
        var bob = await Api.NewPhoneAsync();

        Assert.Equal((404, "qr_invalid"), Of(await Api.ScanAsync(alice.AccessToken, "https://elsewhere/l/AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA")));
        Assert.Equal((404, "qr_invalid"), Of(await Api.ScanAsync(alice.AccessToken, "not a code")));
        var session = await Api.CreateSessionAsync();
        var sid = session.SessionId;
        Assert.Equal((404, "qr_invalid"), Of(await Api.ScanAsync(alice.AccessToken, session.QrUrl[..^3] + "xyz")));
        Assert.Equal((409, "invalid_state"), Of(await Api.ApproveAsync(alice.AccessToken, sid, "42")));
        Assert.Equal((401, "unauthenticated"), Of(await Api.ScanAsync("garbage", session.QrUrl)));
        Assert.Equal((401, "unauthenticated"), Of(await Api.SendAsync(HttpMethod.Post, "/v1/qr/scan", new { url = session.QrUrl })));

        var scan = (await Api.ScanAsync(alice.AccessToken, session.QrUrl)).EnsureStatus(200);
        Assert.Equal((409, "qr_already_scanned"), Of(await Api.ScanAsync(bob.AccessToken, session.QrUrl)));
        Assert.Equal((403, "not_scanner"), Of(await Api.ApproveAsync(bob.AccessToken, sid, "42")));
        Assert.Equal((403, "not_scanner"), Of(await Api.RejectAsync(bob.AccessToken, sid)));
        Assert.Equal((400, "validation_failed"), Of(await Api.SendAsync(HttpMethod.Post, $"/v1/qr/sessions/{sid}/approve", new { }, alice.AccessToken)));
        var right = (await Api.SnapshotAsync(session)).Body.GetProperty("numberMatch").GetString();
        var wrong = scan.Body.GetProperty("numberChoices").EnumerateArray().Select(e => e.GetString()!).First(n => n != right);
        Assert.Equal((422, "number_mismatch"), Of(await Api.ApproveAsync(alice.AccessToken, sid, wrong)));
        Assert.Equal("rejected", (await Api.SnapshotAsync(session)).Body.GetProperty("state").GetString());
        Assert.Equal((409, "qr_already_used"), Of(await Api.ApproveAsync(alice.AccessToken, sid, right!)));
        Assert.Equal((409, "qr_already_used"), Of(await Api.ScanAsync(alice.AccessToken, session.QrUrl)));

        var cancelled = await Api.CreateSessionAsync();
        (await Api.CancelAsync(cancelled)).EnsureStatus(200);
        Assert.Equal((409, "qr_already_used"), Of(await Api.ScanAsync(alice.AccessToken, cancelled.QrUrl)));
        Assert.Equal((409, "invalid_state"), Of(await Api.ClaimAsync(cancelled)));

        var rejected = await Api.CreateSessionAsync();
        await Api.ScanAsync(alice.AccessToken, rejected.QrUrl);
        Assert.Equal("rejected", (await Api.RejectAsync(alice.AccessToken, rejected.SessionId)).EnsureStatus(200).Body.GetProperty("state").GetString());
    }

    [Fact]
    public async Task Scanning_accepts_the_bare_token_too()
    {
        var alice = await Api.NewPhoneAsync();
        var session = await Api.CreateSessionAsync();
        var token = session.QrUrl[(session.QrUrl.LastIndexOf('#') + 1)..];
        (await Api.SendAsync(HttpMethod.Post, "/v1/qr/scan", new { token }, alice.AccessToken)).EnsureStatus(200);
    }

    [Fact]
    public async Task Revoking_a_device_stops_its_access_token_at_once()
    {
        var phone = await Api.NewPhoneAsync();
        var session = await Api.CreateSessionAsync();
        await Api.ScanAndApproveAsync(phone.AccessToken, session);
        var claim = (await Api.ClaimAsync(session)).EnsureStatus(200);
        var desktopAccess = claim.Body.GetProperty("accessToken").GetString()!;
        var desktopDevice = claim.Body.GetProperty("device").GetProperty("id").GetString()!;
        (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, desktopAccess)).EnsureStatus(200);

        (await Api.SendAsync(HttpMethod.Delete, "/v1/devices/" + desktopDevice, null, phone.AccessToken)).EnsureStatus(204);

        Assert.Equal((401, "unauthenticated"), Of(await Api.SendAsync(HttpMethod.Get, "/v1/me", null, desktopAccess)));
        var refresh = await Api.SendAsync(HttpMethod.Post, "/v1/auth/refresh", new { refreshToken = claim.Body.GetProperty("refreshToken").GetString() });
        Assert.Equal(401, refresh.Status);
        var devices = (await Api.SendAsync(HttpMethod.Get, "/v1/devices", null, phone.AccessToken)).EnsureStatus(200);
        Assert.True(devices.Body.EnumerateArray().Single(d => d.GetProperty("id").GetString() == desktopDevice).GetProperty("revoked").GetBoolean());
        // someone else's device is not found, not revoked
        var other = await Api.NewPhoneAsync();
        Assert.Equal((404, "not_found"), Of(await Api.SendAsync(HttpMethod.Delete, "/v1/devices/" + other.DeviceId, null, phone.AccessToken)));
        (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, other.AccessToken)).EnsureStatus(200);
    }

    [Fact]
    public async Task Refresh_rotates_and_a_replayed_refresh_token_revokes_the_device()
    {
        var phone = await Api.NewPhoneAsync();
        var first = (await Api.SendAsync(HttpMethod.Post, "/v1/auth/refresh", new { refreshToken = phone.RefreshToken })).EnsureStatus(200);
        var rotated = first.Body.GetProperty("refreshToken").GetString()!;
        Assert.NotEqual(phone.RefreshToken, rotated);
        var access = first.Body.GetProperty("accessToken").GetString()!;
        (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, access)).EnsureStatus(200);

        var replay = await Api.SendAsync(HttpMethod.Post, "/v1/auth/refresh", new { refreshToken = phone.RefreshToken });
        Assert.Equal((401, "refresh_token_reused"), Of(replay));

        // the thief's replay signed the device out: the legitimate rotated token and access token die too
        Assert.Equal(401, (await Api.SendAsync(HttpMethod.Post, "/v1/auth/refresh", new { refreshToken = rotated })).Status);
        Assert.Equal(401, (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, access)).Status);
        Assert.Equal((401, "invalid_refresh_token"), Of(await Api.SendAsync(HttpMethod.Post, "/v1/auth/refresh", new { refreshToken = "nonsense" })));
    }

    [Fact]
    public async Task Access_tokens_verify_against_the_published_jwks()
    {
        var phone = await Api.NewPhoneAsync();
        var jwks = (await Api.SendAsync(HttpMethod.Get, "/.well-known/jwks.json", null)).EnsureStatus(200);
        var key = new JsonWebKeySet(jwks.Text).Keys.Single();
        Assert.Equal("ES256", key.Alg);
        Assert.False(jwks.Text.Contains("\"d\"", StringComparison.Ordinal)); // the private part never leaves
        var result = await new JsonWebTokenHandler().ValidateTokenAsync(phone.AccessToken, new TokenValidationParameters
        {
            IssuerSigningKey = key, ValidateAudience = false, ValidIssuer = "qrorleans",
        });
        Assert.True(result.IsValid, result.Exception?.Message);
        Assert.Equal(phone.UserId, result.Claims["sub"]);
        var forged = phone.AccessToken[..^4] + (phone.AccessToken.EndsWith("AAAA", StringComparison.Ordinal) ? "BBBB" : "AAAA");
        Assert.Equal(401, (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, forged)).Status);
    }

    [Fact]
    public async Task Long_poll_answers_as_soon_as_the_version_moves_or_after_the_timeout()
    {
        var phone = await Api.NewPhoneAsync();
        var session = await Api.CreateSessionAsync();
        var poll = Api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}?waitForVersion=1&timeout=20", null, session.DesktopToken);
        await Task.Delay(200);
        Assert.False(poll.IsCompleted);
        (await Api.ScanAsync(phone.AccessToken, session.QrUrl)).EnsureStatus(200);
        var answered = (await poll.WaitAsync(TimeSpan.FromSeconds(5))).EnsureStatus(200);
        Assert.Equal("scanned", answered.Body.GetProperty("state").GetString());
        Assert.Equal(2, answered.Body.GetProperty("version").GetInt64());

        var started = DateTime.UtcNow;
        var idle = (await Api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}?waitForVersion=2&timeout=1", null, session.DesktopToken)).EnsureStatus(200);
        Assert.Equal(2, idle.Body.GetProperty("version").GetInt64());
        Assert.InRange(DateTime.UtcNow - started, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(10));
        var behind = (await Api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}?waitForVersion=0", null, session.DesktopToken)).EnsureStatus(200);
        Assert.Equal(2, behind.Body.GetProperty("version").GetInt64());
    }

    [Fact]
    public async Task Server_sent_events_send_the_snapshot_first_then_every_change_and_honour_last_event_id()
    {
        var phone = await Api.NewPhoneAsync();
        var session = await Api.CreateSessionAsync();
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}/events");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", session.DesktopToken);
        using var response = await fixture.Node.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());

        var pending = await ReadEventAsync(reader);
        Assert.Equal(("state", "1"), (pending.Event, pending.Id));
        Assert.Equal("pending", JsonDocument.Parse(pending.Data).RootElement.GetProperty("state").GetString());

        await Api.ScanAndApproveAsync(phone.AccessToken, session);
        var states = new List<string>();
        while (!states.Contains("approved"))
        {
            var e = await ReadEventAsync(reader);
            states.Add(JsonDocument.Parse(e.Data).RootElement.GetProperty("state").GetString()!);
        }
        Assert.Equal(["scanned", "approved"], states);

        using var resume = new HttpRequestMessage(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}/events");
        resume.Headers.Authorization = new AuthenticationHeaderValue("Bearer", session.DesktopToken);
        resume.Headers.Add("Last-Event-ID", "3");
        using var resumed = await fixture.Node.Http.SendAsync(resume, HttpCompletionOption.ResponseHeadersRead);
        using var resumedReader = new StreamReader(await resumed.Content.ReadAsStreamAsync());
        Assert.StartsWith(":", await resumedReader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(5)), StringComparison.Ordinal); // nothing newer than 3 yet
        (await Api.ClaimAsync(session)).EnsureStatus(200);
        var completed = await ReadEventAsync(resumedReader);
        Assert.Equal("4", completed.Id);
        Assert.Equal("completed", JsonDocument.Parse(completed.Data).RootElement.GetProperty("state").GetString());
    }

    private static async Task<(string Event, string Id, string Data)> ReadEventAsync(StreamReader reader)
    {
        string? name = null, id = null, data = null;
        while (true)
        {
            var line = await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(10)) ?? throw new EndOfStreamException();
            if (line.Length == 0 && data is not null)
            {
                return (name!, id!, data);
            }
            if (line.StartsWith("event: ", StringComparison.Ordinal)) { name = line[7..]; }
            else if (line.StartsWith("id: ", StringComparison.Ordinal)) { id = line[4..]; }
            else if (line.StartsWith("data: ", StringComparison.Ordinal)) { data = line[6..]; }
        }
    }

    [Fact]
    public async Task Bad_input_gets_a_clear_4xx_problem()
    {
        var phone = await Api.NewPhoneAsync();
        async Task<Reply> Raw(HttpMethod method, string path, string? body, string contentType = "application/json", string? bearer = null)
        {
            using var request = new HttpRequestMessage(method, path);
            if (body is not null)
            {
                request.Content = new StringContent(body, Encoding.UTF8, contentType);
            }
            if (bearer is not null)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
            }
            using var response = await fixture.Node.Http.SendAsync(request);
            return await Reply.ReadAsync(response);
        }

        Assert.Equal((400, "invalid_json"), Of(await Raw(HttpMethod.Post, "/v1/qr/scan", "{\"url\": ", bearer: phone.AccessToken)));
        Assert.Equal((400, "invalid_json"), Of(await Raw(HttpMethod.Post, "/v1/qr/scan", "{\"url\": 42}", bearer: phone.AccessToken)));
        Assert.Equal((400, "invalid_json"), Of(await Raw(HttpMethod.Post, "/v1/qr/sessions", "[1,2]")));
        Assert.Equal((400, "validation_failed"), Of(await Raw(HttpMethod.Post, "/v1/qr/sessions", "{\"client\":{\"kind\":\"toaster\"}}")));
        Assert.Equal((400, "validation_failed"), Of(await Raw(HttpMethod.Post, "/v1/qr/sessions", "{\"client\":{\"name\":\"" + new string('x', 81) + "\"}}")));
        Assert.Equal((413, "payload_too_large"), Of(await Raw(HttpMethod.Post, "/v1/qr/scan", "{\"url\":\"" + new string('a', 100_000) + "\"}", bearer: phone.AccessToken)));
        Assert.Equal((415, "unsupported_media_type"), Of(await Raw(HttpMethod.Post, "/v1/qr/scan", "url=x", "application/x-www-form-urlencoded", phone.AccessToken)));
        Assert.Equal((404, "not_found"), Of(await Raw(HttpMethod.Get, "/v1/no/such/thing", null)));
        Assert.Equal((405, "method_not_allowed"), Of(await Raw(HttpMethod.Put, "/v1/qr/scan", "{}")));
        Assert.Equal((400, "validation_failed"), Of(await Raw(HttpMethod.Post, "/v1/qr/scan", "{}", bearer: phone.AccessToken)));
        Assert.Equal((401, "unauthenticated"), Of(await Raw(HttpMethod.Post, "/v1/admin/users", "{\"username\":\"mallory\"}")));
        Assert.Equal((400, "validation_failed"), Of(await Api.SendAsync(HttpMethod.Post, "/v1/admin/users", new { username = "No Spaces!" }, apiKey: GatewayNode.AdminKey)));
        var name = "dup" + Guid.NewGuid().ToString("N")[..8];
        (await Api.SendAsync(HttpMethod.Post, "/v1/admin/users", new { username = name }, apiKey: GatewayNode.AdminKey)).EnsureStatus(201);
        Assert.Equal((409, "username_taken"), Of(await Api.SendAsync(HttpMethod.Post, "/v1/admin/users", new { username = name }, apiKey: GatewayNode.AdminKey)));
        Assert.Equal((404, "not_found"), Of(await Api.SendAsync(HttpMethod.Post, "/v1/admin/users/0123456789abcdef0123456789abcdef/devices", new { name = "x" }, apiKey: GatewayNode.AdminKey)));
        Assert.Equal((404, "qr_invalid"), Of(await Api.ApproveAsync(phone.AccessToken, "nope", "42")));
    }

    [Fact]
    public async Task Health_readiness_and_the_openapi_document_are_served()
    {
        Assert.Equal("ok", (await Api.SendAsync(HttpMethod.Get, "/healthz", null)).EnsureStatus(200).Text);
        var ready = (await Api.SendAsync(HttpMethod.Get, "/readyz", null)).EnsureStatus(200).Body;
        Assert.Equal("ready", ready.GetProperty("status").GetString());
        var check = Assert.Single(ready.GetProperty("checks").EnumerateArray()); // Localhost mode: no Redis to check
        Assert.Equal(("silo", "Healthy", true), (check.GetProperty("name").GetString(), check.GetProperty("status").GetString(), check.GetProperty("healthy").GetBoolean()));
        Assert.Equal("this silo is Active", check.GetProperty("detail").GetString());
        var openapi = (await Api.SendAsync(HttpMethod.Get, "/openapi/v1.json", null)).EnsureStatus(200);
        var paths = openapi.Body.GetProperty("paths").EnumerateObject().Select(p => p.Name).ToList();
        Assert.Contains("/v1/qr/sessions", paths);
        Assert.Contains("/v1/qr/scan", paths);
        Assert.Contains("/v1/qr/sessions/{id}/claim", paths);
        Assert.DoesNotContain("/healthz", paths);
        Assert.DoesNotContain("/readyz", paths);
    }

    private static (int, string?) Of(Reply r) => (r.Status, r.Code);
}

/// <summary>Settings that need a node of their own: short QR life, rate limits on.</summary>
public sealed class TimingAndLimitsApiTests
{
    [Fact]
    public async Task A_superseded_code_answers_qr_expired_and_the_new_one_works()
    {
        await using var node = await GatewayNode.StartAsync(new Dictionary<string, string?> { ["QrOrleans:QrSession:QrTtl"] = "00:00:01" });
        var api = new ApiClient(node.Http);
        var phone = await api.NewPhoneAsync();
        var session = await api.CreateSessionAsync();
        var rotated = (await api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}?waitForVersion=1&timeout=10", null, session.DesktopToken)).EnsureStatus(200);
        Assert.Equal(2, rotated.Body.GetProperty("qr").GetProperty("rotation").GetInt32());
        var scan = await api.ScanAsync(phone.AccessToken, session.QrUrl);
        Assert.Equal((410, "qr_expired"), (scan.Status, scan.Code));
        (await api.ScanAsync(phone.AccessToken, rotated.Body.GetProperty("qr").GetProperty("url").GetString()!)).EnsureStatus(200);
    }

    [Fact]
    public async Task Rate_limits_answer_429_with_retry_after()
    {
        await using var node = await GatewayNode.StartAsync(new Dictionary<string, string?>
        {
            ["QrOrleans:RateLimiting:Enabled"] = "true",
            ["QrOrleans:RateLimiting:SessionsPerMinutePerIp"] = "5",
            ["QrOrleans:RateLimiting:ApprovalsPerMinutePerUser"] = "2",
        });
        var api = new ApiClient(node.Http);
        var codes = new List<int>();
        Reply? limited = null;
        for (var i = 0; i < 7; i++)
        {
            var r = await api.SendAsync(HttpMethod.Post, "/v1/qr/sessions", new { });
            codes.Add(r.Status);
            limited = r.Status == 429 ? r : limited;
        }
        Assert.Equal([201, 201, 201, 201, 201, 429, 429], codes);
        Assert.Equal("rate_limited", limited!.Code);
        Assert.True(int.Parse(limited.Headers.RetryAfter!.ToString(), System.Globalization.CultureInfo.InvariantCulture) > 0);

        var phone = await api.NewPhoneAsync();
        var statuses = new List<int>();
        for (var i = 0; i < 3; i++)
        {
            statuses.Add((await api.ApproveAsync(phone.AccessToken, "AAAAAAAAAAAAAAAAAAAAAA", "42")).Status);
        }
        Assert.Equal(429, statuses[2]);
        Assert.NotEqual(429, statuses[0]);
    }
}
