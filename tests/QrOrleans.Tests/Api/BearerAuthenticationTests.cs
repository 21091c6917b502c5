using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using QrOrleans.Gateway;
using QrOrleans.Tests.Infrastructure;
using QrOrleans.Tests.Observability;
using QrOrleans.Users;

namespace QrOrleans.Tests.Api;

/// <summary>
/// Phone calls over real HTTP with access tokens that each break one rule: every one of them gets the very same
/// 401 problem, while a token signed with the key /.well-known/jwks.json publishes is honoured until its device is
/// signed out.
/// </summary>
public sealed class BearerAuthenticationTests(NodeFixture fixture) : IClassFixture<NodeFixture>
{
    private const string Refused = "The access token is invalid, expired or its device was signed out.";

    private ApiClient Api => fixture.Api;

    [Fact]
    public async Task Every_broken_rule_gets_the_same_401_problem_and_a_bare_bearer_challenge()
    {
        var phone = await Api.NewPhoneAsync();
        var key = await GrainKeyAsync(fixture.Node.Services);
        using var otherCurve = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var otherKey = new ECDsaSecurityKey(otherCurve) { KeyId = key.KeyId }; // same kid: only the signature is wrong
        var valid = Mint(key, phone.UserId, phone.DeviceId);
        (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, valid)).EnsureStatus(200); // each variant below breaks one thing

        var broken = new (string What, string Token)[]
        {
            ("signed by another key", Mint(otherKey, phone.UserId, phone.DeviceId)),
            ("expired beyond the clock skew", Mint(key, phone.UserId, phone.DeviceId, expires: DateTime.UtcNow.AddMinutes(-2))),
            ("another issuer", Mint(key, phone.UserId, phone.DeviceId, issuer: "someone-else")),
            ("another audience", Mint(key, phone.UserId, phone.DeviceId, audience: "another-api")),
            ("no audience", Mint(key, phone.UserId, phone.DeviceId, audience: null)),
            ("alg none", Unsigned(phone.UserId, phone.DeviceId)),
            ("truncated signature", valid[..^6]),
            ("header and payload only", valid[..valid.LastIndexOf('.')]),
            ("garbage", "garbage-" + Guid.NewGuid().ToString("N")),
            ("three garbage segments", "eyJhbGciOi.Jub25lIn0.AAAA"),
            ("a desktop token", (await Api.CreateSessionAsync()).DesktopToken),
            ("no device claim", Mint(key, phone.UserId, deviceId: null)),
            ("an unknown device", Mint(key, phone.UserId, phone.UserId + "-0123456789abcdef")),
        };
        var bodies = new HashSet<string>();
        foreach (var (what, token) in broken)
        {
            foreach (var (method, path, body) in new (HttpMethod, string, object?)[]
                     {
                         (HttpMethod.Get, "/v1/me", null), (HttpMethod.Get, "/v1/devices", null), (HttpMethod.Get, "/v1/me/audit", null),
                         (HttpMethod.Post, "/v1/qr/scan", new { url = "x" }), (HttpMethod.Delete, "/v1/devices/" + phone.DeviceId, null),
                     })
            {
                var r = await Api.SendAsync(method, path, body, token);
                Assert.True(r.Status == 401, $"{what} on {method} {path}: {r.Status} {r.Text}");
                Assert.Equal(("unauthenticated", Refused), (r.Code, r.Body.GetProperty("detail").GetString()));
                Assert.Equal("application/problem+json", r.ContentType);
                Assert.Equal("Bearer", Assert.Single(r.Headers.WwwAuthenticate).ToString());
                bodies.Add(r.Text);
            }
        }
        Assert.Single(bodies);
        (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, phone.AccessToken)).EnsureStatus(200); // the device was never revoked
    }

    [Fact]
    public async Task A_token_signed_with_the_published_key_is_honoured_within_a_small_clock_skew()
    {
        var phone = await Api.NewPhoneAsync();
        var key = await GrainKeyAsync(fixture.Node.Services);
        var published = new JsonWebKeySet((await Api.SendAsync(HttpMethod.Get, "/.well-known/jwks.json", null)).EnsureStatus(200).Text).Keys.Single();
        var parameters = key.ECDsa.ExportParameters(false);
        Assert.Equal((key.KeyId, Base64UrlEncoder.Encode(parameters.Q.X), Base64UrlEncoder.Encode(parameters.Q.Y)), (published.Kid, published.X, published.Y));

        var minted = Mint(key, phone.UserId, phone.DeviceId);
        Assert.Equal(phone.UserId, (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, minted)).EnsureStatus(200).Body.GetProperty("id").GetString());
        var justExpired = Mint(key, phone.UserId, phone.DeviceId, expires: DateTime.UtcNow.AddSeconds(-5));
        (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, justExpired)).EnsureStatus(200);

        // What the gateway issues carries the audience it checks.
        var issued = new JsonWebToken(phone.AccessToken);
        Assert.Equal(("qrorleans", "qrorleans", "ES256"), (Assert.Single(issued.Audiences), issued.Issuer, issued.Alg));
    }

    [Fact]
    public async Task A_revoked_devices_unexpired_token_is_refused_on_its_next_call_like_any_bad_token()
    {
        var phone = await Api.NewPhoneAsync();
        var tablet = (await Api.SendAsync(HttpMethod.Post, $"/v1/admin/users/{phone.UserId}/devices", new { name = "Tablet", kind = "tablet" },
            apiKey: GatewayNode.AdminKey)).EnsureStatus(201).Body;
        var tabletToken = tablet.GetProperty("accessToken").GetString()!;
        (await Api.SendAsync(HttpMethod.Get, "/v1/devices", null, tabletToken)).EnsureStatus(200);

        (await Api.SendAsync(HttpMethod.Delete, "/v1/devices/" + tablet.GetProperty("device").GetProperty("id").GetString(), null, phone.AccessToken))
            .EnsureStatus(204);

        var revoked = await Api.SendAsync(HttpMethod.Get, "/v1/devices", null, tabletToken);
        var garbage = await Api.SendAsync(HttpMethod.Get, "/v1/devices", null, "garbage");
        Assert.Equal(401, revoked.Status);
        Assert.Equal(garbage.Text, revoked.Text);
        Assert.True(new JsonWebToken(tabletToken).ValidTo > DateTime.UtcNow.AddMinutes(1)); // refused for the revocation alone
        (await Api.SendAsync(HttpMethod.Get, "/v1/devices", null, phone.AccessToken)).EnsureStatus(200);
    }

    [Fact]
    public async Task Without_a_bearer_token_the_401_says_how_to_send_one()
    {
        foreach (var header in new string?[] { null, "Basic dXNlcjpwYXNz", "Bearer " })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/v1/me");
            if (header is not null)
            {
                request.Headers.TryAddWithoutValidation("Authorization", header);
            }
            using var response = await fixture.Node.Http.SendAsync(request);
            var r = await Reply.ReadAsync(response);
            Assert.Equal((401, "unauthenticated", "Send 'Authorization: Bearer <access token>'."), (r.Status, r.Code, r.Body.GetProperty("detail").GetString()));
            Assert.Equal("Bearer", Assert.Single(r.Headers.WwwAuthenticate).ToString());
        }
    }

    /// <summary>
    /// Desktop calls, whose Authorization header holds a desktop token, never reach the bearer handler (counted where
    /// it reads a request's token); phone calls do. Every category the gateway does not cap is at Debug, and no line
    /// anywhere holds a token or either of its signed parts (the handler's own refusals are capped, whatever the
    /// configuration says).
    /// </summary>
    [Fact]
    public async Task Desktop_calls_never_reach_the_bearer_handler_and_refused_tokens_never_reach_a_log()
    {
        var handled = 0;
        var node = await LoggedGateway.StartAsync(
            new Dictionary<string, string?> { ["Logging:LogLevel:Microsoft.AspNetCore.Authentication"] = "Debug" },
            builder => builder.Services.PostConfigure<Microsoft.AspNetCore.Authentication.JwtBearer.JwtBearerOptions>(
                Microsoft.AspNetCore.Authentication.JwtBearer.JwtBearerDefaults.AuthenticationScheme,
                o => o.Events = new CountingEvents(o.Events, () => Interlocked.Increment(ref handled))));
        var tokens = new List<string>();
        int handledAfterDesktop;
        try
        {
            var api = new ApiClient(node.Http);
            var phone = await api.NewPhoneAsync();
            var session = await api.CreateSessionAsync();
            (await api.SnapshotAsync(session)).EnsureStatus(200);
            (await api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}?waitForVersion=5&timeout=1", null, session.DesktopToken)).EnsureStatus(200);
            Assert.Equal(401, (await api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}", null, "not-the-desktop-token")).Status);
            (await api.CancelAsync(session)).EnsureStatus(200);
            handledAfterDesktop = Volatile.Read(ref handled);

        var key = await GrainKeyAsync(node.Services);
            tokens.AddRange([
                phone.AccessToken,
                Mint(key, phone.UserId, phone.DeviceId, expires: DateTime.UtcNow.AddMinutes(-2)),
                Mint(key, phone.UserId, phone.DeviceId, audience: "another-api"),
                Unsigned(phone.UserId, phone.DeviceId),
                phone.AccessToken[..^6],
            ]);
            (await api.SendAsync(HttpMethod.Get, "/v1/me", null, phone.AccessToken)).EnsureStatus(200);
            foreach (var token in tokens.Skip(1))
            {
                Assert.Equal(401, (await api.SendAsync(HttpMethod.Get, "/v1/me", null, token)).Status);
            }
        }
        finally
        {
            await node.DisposeAsync();
        }

        var lines = node.Logs.Lines.ToArray();
        Assert.Equal(0, handledAfterDesktop);
        Assert.Equal(tokens.Count, Volatile.Read(ref handled)); // every phone call went through it
        Assert.DoesNotContain(lines, l => l.Category.StartsWith("Microsoft.AspNetCore.Authentication", StringComparison.Ordinal) && l.Level < LogLevel.Warning);
        var secrets = tokens.SelectMany(t => new[] { t }.Concat(t.Split('.').Skip(1).Where(part => part.Length > 8))).Distinct().ToList();
        var leaks = lines.Where(l => secrets.Any(s => l.Text.Contains(s, StringComparison.Ordinal)))
            .Select(l => $"[{l.Level} {l.Category}] {l.Text}").Take(10).ToList();
        Assert.True(leaks.Count == 0, "Tokens in logs:\n" + string.Join("\n", leaks));
    }

    /// <summary>
    /// Storage that cannot be reached while the gateway reads its signing key or asks whether a device is active:
    /// 503 storage_unavailable (try again), never a 401 that would sign the phone out; the key is read again on the
    /// next call once storage is back.
    /// </summary>
    [Fact]
    public async Task A_storage_outage_during_authentication_is_503_and_the_key_is_read_again_once_storage_is_back()
    {
        var outage = new Outage();
        await using var node = await OutageNode.StartAsync(outage);
        var api = new ApiClient(node.Http);

        outage.Failing = typeof(ISigningKeyGrain);
        var down = await api.SendAsync(HttpMethod.Get, "/v1/me", null, "eyJhbGciOiJFUzI1NiJ9.e30.AAAA");
        Assert.Equal((503, "storage_unavailable"), (down.Status, down.Code));
        Assert.NotNull(down.Headers.RetryAfter);

        outage.Failing = null;
        var phone = await api.NewPhoneAsync();
        (await api.SendAsync(HttpMethod.Get, "/v1/me", null, phone.AccessToken)).EnsureStatus(200);
        // A device this node has not asked about yet: a node keeps a device's "active" for a few seconds.
        var other = await api.NewPhoneAsync();

        outage.Failing = typeof(IDeviceGrain);
        var deviceDown = await api.SendAsync(HttpMethod.Get, "/v1/me", null, other.AccessToken);
        Assert.Equal((503, "storage_unavailable"), (deviceDown.Status, deviceDown.Code));
        outage.Failing = null;
        (await api.SendAsync(HttpMethod.Get, "/v1/me", null, other.AccessToken)).EnsureStatus(200);
    }

    private static async Task<ECDsaSecurityKey> GrainKeyAsync(IServiceProvider services)
    {
        var material = await services.GetRequiredService<IGrainFactory>().GetGrain<ISigningKeyGrain>("default").GetOrCreateAsync();
        var ecdsa = ECDsa.Create();
        ecdsa.ImportPkcs8PrivateKey(Convert.FromBase64String(material.PrivateKeyPkcs8Base64), out _);
        return new ECDsaSecurityKey(ecdsa) { KeyId = material.KeyId };
    }

    /// <summary>An access token as the gateway issues one, unless told otherwise.</summary>
    private static string Mint(SecurityKey key, string userId, string? deviceId, string issuer = "qrorleans",
        string? audience = "qrorleans", DateTime? expires = null)
    {
        var claims = new Dictionary<string, object> { ["sub"] = userId, ["jti"] = Guid.NewGuid().ToString("N") };
        if (deviceId is not null)
        {
            claims["did"] = deviceId;
        }
        var exp = expires ?? DateTime.UtcNow.AddMinutes(10);
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = audience,
            IssuedAt = exp.AddMinutes(-15),
            NotBefore = exp.AddMinutes(-15),
            Expires = exp,
            Claims = claims,
            SigningCredentials = new SigningCredentials(key, SecurityAlgorithms.EcdsaSha256),
        });
    }

    /// <summary>Valid claims under <c>alg: none</c> and an empty signature.</summary>
    private static string Unsigned(string userId, string deviceId)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        static string Part(string json) => Base64UrlEncoder.Encode(Encoding.UTF8.GetBytes(json));
        return Part("{\"alg\":\"none\",\"typ\":\"JWT\"}") + "." + Part(
            $"{{\"iss\":\"qrorleans\",\"aud\":\"qrorleans\",\"sub\":\"{userId}\",\"did\":\"{deviceId}\",\"iat\":{now},\"nbf\":{now},\"exp\":{now + 600}}}") + ".";
    }

    /// <summary>Calls from the gateway to one grain interface time out, as they do while storage is unreachable.</summary>
    private sealed class Outage : IOutgoingGrainCallFilter
    {
        public volatile Type? Failing;

        public Task Invoke(IOutgoingGrainCallContext context) =>
            context.InterfaceMethod.DeclaringType == Failing ? throw new TimeoutException("test outage: storage unreachable") : context.Invoke();
    }

    /// <summary>A gateway like <see cref="GatewayNode"/> whose grain calls pass through <see cref="Outage"/>.</summary>
    private sealed class OutageNode : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private OutageNode(WebApplication app) => (_app, Http) = (app, new HttpClient
        {
            BaseAddress = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()),
        });

        public HttpClient Http { get; }

        public static async Task<OutageNode> StartAsync(Outage outage)
        {
            var app = GatewayApp.Create(["--urls", "http://127.0.0.1:0", "--contentRoot", GatewayNode.GatewayContentRoot()], builder =>
            {
                builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
                {
                    ["QrOrleans:AdminApiKey"] = GatewayNode.AdminKey,
                    ["QrOrleans:Demo"] = "false",
                    ["QrOrleans:RateLimiting:Enabled"] = "false",
                });
                builder.Logging.ClearProviders();
                builder.Services.AddSingleton<IOutgoingGrainCallFilter>(outage);
            });
            await app.StartAsync();
            return new OutageNode(app);
        }

        public async ValueTask DisposeAsync()
        {
            Http.Dispose();
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }

    /// <summary>The gateway's own events, counting each request the handler reads a token from.</summary>
    private sealed class CountingEvents(Microsoft.AspNetCore.Authentication.JwtBearer.JwtBearerEvents inner, Action count)
        : Microsoft.AspNetCore.Authentication.JwtBearer.JwtBearerEvents
    {
        public override Task MessageReceived(Microsoft.AspNetCore.Authentication.JwtBearer.MessageReceivedContext context)
        {
            count();
            return inner.MessageReceived(context);
        }

        public override Task TokenValidated(Microsoft.AspNetCore.Authentication.JwtBearer.TokenValidatedContext context) => inner.TokenValidated(context);

        public override Task AuthenticationFailed(Microsoft.AspNetCore.Authentication.JwtBearer.AuthenticationFailedContext context) => inner.AuthenticationFailed(context);

        public override Task Challenge(Microsoft.AspNetCore.Authentication.JwtBearer.JwtBearerChallengeContext context) => inner.Challenge(context);

        public override Task Forbidden(Microsoft.AspNetCore.Authentication.JwtBearer.ForbiddenContext context) => inner.Forbidden(context);
    }
}
