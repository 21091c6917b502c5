using System.Text.Json;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Api;

/// <summary>
/// Key binding over real HTTP (RFC 9449 DPoP, API.md "Key binding"): a desktop registers its public key at create,
/// proves it at claim, and its tokens then work only with a proof of that key. Every rule of a proof is broken alone
/// and refused with its own detail, and a refused proof never consumes the session or the refresh token.
/// </summary>
public sealed class DpopTests(NodeFixture fixture) : IClassFixture<NodeFixture>
{
    private ApiClient Api => fixture.Api;

    private static string Jkt(string accessToken) =>
        JsonDocument.Parse(Base64UrlEncoder.Decode(new JsonWebToken(accessToken).EncodedPayload)).RootElement
            .GetProperty("cnf").GetProperty("jkt").GetString()!;

    private static bool HasCnf(string accessToken) =>
        JsonDocument.Parse(Base64UrlEncoder.Decode(new JsonWebToken(accessToken).EncodedPayload)).RootElement.TryGetProperty("cnf", out _);

    private static void Refused(Reply r, string code, string detailHas, string what)
    {
        Assert.True(r.Status == 401 && r.Code == code, $"{what}: expected 401 {code}, got {r.Status} {r.Text}");
        Assert.Equal("application/problem+json", r.ContentType);
        var detail = r.Body.GetProperty("detail").GetString()!;
        Assert.True(detail.Contains(detailHas, StringComparison.Ordinal), $"{what}: the detail '{detail}' does not name '{detailHas}'");
    }

    [Fact]
    public async Task A_keyed_claim_gets_tokens_bound_to_the_key_that_work_as_DPoP_on_me_and_devices()
    {
        using var key = new DpopKey();
        var phone = await Api.NewPhoneAsync();
        var session = await Api.ApprovedKeyedSessionAsync(phone.AccessToken, key);

        var claim = (await Api.ClaimWithProofAsync(session, key)).EnsureStatus(200);
        Assert.Equal("DPoP", claim.Body.GetProperty("tokenType").GetString());
        var access = claim.Body.GetProperty("accessToken").GetString()!;
        Assert.Equal(key.Thumbprint, Jkt(access));

        var me = (await Api.GetBoundAsync("/v1/me", access, key)).EnsureStatus(200);
        Assert.Equal(phone.UserId, me.Body.GetProperty("id").GetString());
        var devices = (await Api.GetBoundAsync("/v1/devices", access, key)).EnsureStatus(200);
        Assert.True(devices.Body.EnumerateArray().Single(d => d.GetProperty("current").GetBoolean()).GetProperty("name").GetString() == "Keyed desktop");

        // htu is compared after normalisation (scheme and host case), ignoring a query: RFC 9449 §4.3.
        var loud = Api.Url("/v1/me").Replace("http://", "HTTP://", StringComparison.Ordinal) + "?x=1";
        (await Api.SendAsync(HttpMethod.Get, "/v1/me?x=1", null, "DPoP", access, key.Proof("GET", loud, access))).EnsureStatus(200);
        // A proof made with IdentityModel's own token handler, as a .NET client would make it, is just as good.
        (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, "DPoP", access, LibraryProof(key, "GET", Api.Url("/v1/me"), access))).EnsureStatus(200);
        // The phone's own bearer token is untouched by all this.
        (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, phone.AccessToken)).EnsureStatus(200);
    }

    [Fact]
    public async Task Each_broken_rule_of_a_claim_proof_is_refused_alone_and_the_session_stays_claimable()
    {
        using var key = new DpopKey();
        using var other = new DpopKey();
        var phone = await Api.NewPhoneAsync();
        var session = await Api.ApprovedKeyedSessionAsync(phone.AccessToken, key);
        var path = DpopCalls.ClaimPath(session);
        var url = Api.Url(path);

        // Each proof is signed just before it is sent, so that only the rule it breaks decides (not the time the list took).
        var broken = new (string What, Func<string[]> Proofs, string Code, string DetailHas)[]
        {
            ("no proof", () => [], "proof_required", "DPoP header"),
            ("two DPoP headers", () => [key.Proof("POST", url), key.Proof("POST", url)], "invalid_proof", "exactly one DPoP header"),
            ("not a JWT", () => ["not-a-jwt"], "invalid_proof", "well-formed JWT"),
            ("no jti", () => [key.Proof("POST", url, claims: c => c.Remove("jti"))], "invalid_proof", "lacks jti"),
            ("no iat", () => [key.Proof("POST", url, claims: c => c.Remove("iat"))], "invalid_proof", "lacks iat"),
            ("no jwk", () => [key.Proof("POST", url, header: h => h.Remove("jwk"))], "invalid_proof", "lacks jwk"),
            ("typ JWT", () => [key.Proof("POST", url, header: h => h["typ"] = "JWT")], "invalid_proof", "typ must be dpop+jwt"),
            ("alg none", () => [key.Proof("POST", url, header: h => h["alg"] = "none")], "invalid_proof", "alg none is not accepted"),
            ("alg HS256", () => [key.Proof("POST", url, header: h => h["alg"] = "HS256")], "invalid_proof", "alg HS256 is not accepted"),
            ("an RSA jwk", () => [key.Proof("POST", url, header: h => h["jwk"] = new { kty = "RSA", n = "AQAB", e = "AQAB" })], "invalid_proof", "kty must be"),
            ("a bad signature", () => [key.Proof("POST", url, signer: other)], "invalid_proof", "signature does not verify"),
            ("a private key in jwk", () => [key.Proof("POST", url, header: h => h["jwk"] = WithPrivatePart(key))], "invalid_proof", "private key"),
            ("htm GET", () => [key.Proof("GET", url)], "invalid_proof", "htm"),
            ("htu of another path", () => [key.Proof("POST", Api.Url($"/v1/qr/sessions/{session.SessionId}/cancel"))], "invalid_proof", "htu"),
            ("htu of another origin", () => [key.Proof("POST", "https://elsewhere.example" + path)], "invalid_proof", "htu"),
            ("iat 61 s ahead", () => [key.Proof("POST", url, claims: c => c["iat"] = DateTimeOffset.UtcNow.AddSeconds(61).ToUnixTimeSeconds() + 1)], "invalid_proof", "iat"),
            ("iat 61 s ago", () => [key.Proof("POST", url, iat: DateTimeOffset.UtcNow.AddSeconds(-61))], "invalid_proof", "iat"),
            ("a valid proof of another key", () => [other.Proof("POST", url)], "invalid_proof", "another key"),
        };
        foreach (var (what, proofs, code, detailHas) in broken)
        {
            Refused(await Api.SendAsync(HttpMethod.Post, path, null, "Bearer", session.DesktopToken, proofs()), code, detailHas, what);
        }
        // None of them touched the session: still approved, and the key's holder claims it.
        Assert.Equal("approved", (await Api.SnapshotAsync(session)).EnsureStatus(200).Body.GetProperty("state").GetString());
        var fresh = key.Proof("POST", url);
        (await Api.SendAsync(HttpMethod.Post, path, null, "Bearer", session.DesktopToken, fresh)).EnsureStatus(200);
        Refused(await Api.SendAsync(HttpMethod.Post, path, null, "Bearer", session.DesktopToken, fresh), "proof_replayed", "already used", "the same proof again");
    }

    [Fact]
    public async Task A_replayed_proof_is_refused_even_when_its_first_use_was_refused_for_the_session_state()
    {
        using var key = new DpopKey();
        var phone = await Api.NewPhoneAsync();
        var session = await Api.CreateSessionAsync(new { client = new { name = "Keyed", kind = "cli" }, key = key.Jwk });
        var path = DpopCalls.ClaimPath(session);
        var proof = key.Proof("POST", Api.Url(path));

        Assert.Equal((409, "not_approved"), await StatusOf(Api.SendAsync(HttpMethod.Post, path, null, "Bearer", session.DesktopToken, proof)));
        await Api.ScanAndApproveAsync(phone.AccessToken, session);
        Refused(await Api.SendAsync(HttpMethod.Post, path, null, "Bearer", session.DesktopToken, proof), "proof_replayed", "already used", "replay");
        (await Api.ClaimWithProofAsync(session, key)).EnsureStatus(200);
    }

    [Fact]
    public async Task A_bound_token_is_refused_as_bearer_without_a_proof_with_a_wrong_ath_another_key_or_a_replayed_proof()
    {
        using var key = new DpopKey();
        using var other = new DpopKey();
        var phone = await Api.NewPhoneAsync();
        var claim = (await Api.ClaimWithProofAsync(await Api.ApprovedKeyedSessionAsync(phone.AccessToken, key), key)).EnsureStatus(200);
        var access = claim.Body.GetProperty("accessToken").GetString()!;
        var me = Api.Url("/v1/me");

        var asBearer = await Api.SendAsync(HttpMethod.Get, "/v1/me", null, access);
        Refused(asBearer, "invalid_token", "DPoP", "a bound token as Bearer");
        Assert.Equal("DPoP error=\"invalid_token\"", Assert.Single(asBearer.Headers.WwwAuthenticate).ToString());
        // Even with a valid proof next to it, Bearer is not how a bound token travels.
        Refused(await Api.SendAsync(HttpMethod.Get, "/v1/me", null, "Bearer", access, key.Proof("GET", me, access)), "invalid_token", "DPoP", "Bearer with a proof");

        var cases = new (string What, string[] Proofs, string Code, string DetailHas)[]
        {
            ("no proof", [], "proof_required", "DPoP header"),
            ("no ath", [key.Proof("GET", me)], "invalid_proof", "lacks ath"),
            ("the ath of another token", [key.Proof("GET", me, phone.AccessToken)], "invalid_proof", "ath"),
            ("a proof of another key", [other.Proof("GET", me, access)], "invalid_proof", "another key"),
            ("a proof for /v1/devices", [key.Proof("GET", Api.Url("/v1/devices"), access)], "invalid_proof", "htu"),
            ("a proof for DELETE", [key.Proof("DELETE", me, access)], "invalid_proof", "htm"),
        };
        foreach (var (what, proofs, code, detailHas) in cases)
        {
            var r = await Api.SendAsync(HttpMethod.Get, "/v1/me", null, "DPoP", access, proofs);
            Refused(r, code, detailHas, what);
            Assert.Equal("DPoP error=\"invalid_dpop_proof\"", Assert.Single(r.Headers.WwwAuthenticate).ToString());
        }
        var once = key.Proof("GET", me, access);
        (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, "DPoP", access, once)).EnsureStatus(200);
        Refused(await Api.SendAsync(HttpMethod.Get, "/v1/me", null, "DPoP", access, once), "proof_replayed", "already used", "replayed on /v1/me");

        // A forged or garbage token under the DPoP scheme gets the one refusal every bad token gets, with a DPoP challenge.
        var garbage = await Api.SendAsync(HttpMethod.Get, "/v1/me", null, "DPoP", "garbage", key.Proof("GET", me, "garbage"));
        Assert.Equal((401, "unauthenticated"), (garbage.Status, garbage.Code));
        Assert.Equal("DPoP error=\"invalid_token\"", Assert.Single(garbage.Headers.WwwAuthenticate).ToString());
        // An unbound token does not pretend to be bound.
        var unbound = await Api.SendAsync(HttpMethod.Get, "/v1/me", null, "DPoP", phone.AccessToken, key.Proof("GET", me, phone.AccessToken));
        Refused(unbound, "invalid_token", "not bound", "an unbound token as DPoP");
    }

    [Fact]
    public async Task A_bound_device_refreshes_only_with_a_proof_of_its_key_and_its_new_tokens_stay_bound()
    {
        using var key = new DpopKey();
        using var other = new DpopKey();
        var phone = await Api.NewPhoneAsync();
        var claim = (await Api.ClaimWithProofAsync(await Api.ApprovedKeyedSessionAsync(phone.AccessToken, key), key)).EnsureStatus(200);
        var refresh = claim.Body.GetProperty("refreshToken").GetString()!;
        var url = Api.Url("/v1/auth/refresh");

        Refused(await Api.RefreshAsync(refresh), "proof_required", "DPoP header", "no proof");
        Refused(await Api.RefreshAsync(refresh, other.Proof("POST", url)), "invalid_proof", "another key", "another key's proof");
        Refused(await Api.RefreshAsync(refresh, key.Proof("POST", Api.Url("/v1/me"))), "invalid_proof", "htu", "a proof for another URL");
        Refused(await Api.RefreshAsync(refresh, key.Proof("GET", url)), "invalid_proof", "htm", "a proof for GET");

        // None of those used up the refresh token (nor signed the device out).
        var rotated = (await Api.RefreshAsync(refresh, key.Proof("POST", url))).EnsureStatus(200);
        Assert.Equal("DPoP", rotated.Body.GetProperty("tokenType").GetString());
        var access = rotated.Body.GetProperty("accessToken").GetString()!;
        Assert.Equal(key.Thumbprint, Jkt(access));
        (await Api.GetBoundAsync("/v1/me", access, key)).EnsureStatus(200);
        Refused(await Api.SendAsync(HttpMethod.Get, "/v1/me", null, access), "invalid_token", "DPoP", "the refreshed token as Bearer");
        var next = rotated.Body.GetProperty("refreshToken").GetString()!;
        Refused(await Api.RefreshAsync(next), "proof_required", "DPoP header", "the rotated token without a proof");
        (await Api.RefreshAsync(next, key.Proof("POST", url))).EnsureStatus(200);

        // An operator-bootstrapped phone refreshes as before, with or without a proof next to it: its tokens stay bearer.
        var phoneRefresh = (await Api.RefreshAsync(phone.RefreshToken, key.Proof("POST", url))).EnsureStatus(200);
        Assert.Equal("Bearer", phoneRefresh.Body.GetProperty("tokenType").GetString());
        Assert.False(HasCnf(phoneRefresh.Body.GetProperty("accessToken").GetString()!));
    }

    [Fact]
    public async Task An_unkeyed_session_gives_bearer_tokens_even_when_the_claim_carries_a_proof()
    {
        using var key = new DpopKey();
        var phone = await Api.NewPhoneAsync();
        var session = await Api.ApprovedKeyedSessionAsync(phone.AccessToken, null);
        var path = DpopCalls.ClaimPath(session);

        var claim = (await Api.SendAsync(HttpMethod.Post, path, null, "Bearer", session.DesktopToken, key.Proof("POST", Api.Url(path)))).EnsureStatus(200);
        Assert.Equal("Bearer", claim.Body.GetProperty("tokenType").GetString());
        var access = claim.Body.GetProperty("accessToken").GetString()!;
        Assert.False(HasCnf(access));
        (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, access)).EnsureStatus(200);
    }

    [Fact]
    public async Task Create_accepts_only_a_public_EC_P256_key()
    {
        using var key = new DpopKey();
        var x = key.X;
        var y = key.Y;
        var bad = new (string What, object Key, string DetailHas)[]
        {
            ("a string", "not a jwk", "JSON object"),
            ("an RSA key", new { kty = "RSA", n = "AQAB", e = "AQAB" }, "kty"),
            ("an octet key", new { kty = "oct", k = "c2VjcmV0" }, "kty"),
            ("P-384", new { kty = "EC", crv = "P-384", x, y }, "crv"),
            ("no y", new { kty = "EC", crv = "P-256", x }, "x and y"),
            ("a 31-byte x", new { kty = "EC", crv = "P-256", x = Base64UrlEncoder.Encode(new byte[31]), y }, "x and y"),
            ("a padded x", new { kty = "EC", crv = "P-256", x = x + "=", y }, "x and y"),
            ("x not base64url", new { kty = "EC", crv = "P-256", x = "!!" + x[2..], y }, "x and y"),
            ("a point off the curve", new { kty = "EC", crv = "P-256", x, y = Base64UrlEncoder.Encode(Flip(Base64UrlEncoder.DecodeBytes(y))) }, "not a point on P-256"),
            ("the private key", WithPrivatePart(key), "private part (d)"),
        };
        foreach (var (what, jwk, detailHas) in bad)
        {
            var r = await Api.SendAsync(HttpMethod.Post, "/v1/qr/sessions", new { client = new { name = "d", kind = "cli" }, key = jwk });
            Assert.True((r.Status, r.Code) == (400, "validation_failed"), $"{what}: {r.Status} {r.Text}");
            Assert.Contains(detailHas, r.Body.GetProperty("detail").GetString(), StringComparison.Ordinal);
        }
        // Extra members a JWK may carry (use, kid, alg) are fine; a null key is no key.
        (await Api.SendAsync(HttpMethod.Post, "/v1/qr/sessions", new { key = new { kty = "EC", crv = "P-256", x, y, use = "sig", kid = "k1", alg = "ES256" } })).EnsureStatus(201);
        (await Api.SendAsync(HttpMethod.Post, "/v1/qr/sessions", new { key = (object?)null })).EnsureStatus(201);
    }

    [Fact]
    public async Task With_RequireKeyBinding_a_session_without_a_key_is_refused_and_one_with_a_key_links()
    {
        await using var strict = await GatewayNode.StartAsync(new Dictionary<string, string?> { ["QrOrleans:QrSession:RequireKeyBinding"] = "true" });
        var api = new ApiClient(strict.Http);
        foreach (var body in new object?[] { null, new { client = new { name = "d", kind = "cli" } }, new { key = (object?)null } })
        {
            var r = await api.SendAsync(HttpMethod.Post, "/v1/qr/sessions", body);
            Assert.Equal((400, "key_required"), (r.Status, r.Code));
        }
        using var key = new DpopKey();
        var phone = await api.NewPhoneAsync();
        var claim = (await api.ClaimWithProofAsync(await api.ApprovedKeyedSessionAsync(phone.AccessToken, key), key)).EnsureStatus(200);
        Assert.Equal("DPoP", claim.Body.GetProperty("tokenType").GetString());
        // The default (this class's node) is off: a plain create works, as in the curl tour.
        (await Api.SendAsync(HttpMethod.Post, "/v1/qr/sessions", null)).EnsureStatus(201);
    }

    private static async Task<(int, string?)> StatusOf(Task<Reply> call)
    {
        var r = await call;
        return (r.Status, r.Code);
    }

    private static Dictionary<string, object?> WithPrivatePart(DpopKey key)
    {
        var jwk = key.Jwk;
        jwk["d"] = Base64UrlEncoder.Encode(key.Ecdsa.ExportParameters(true).D);
        return jwk;
    }

    private static byte[] Flip(byte[] bytes)
    {
        bytes[^1] ^= 1;
        return bytes;
    }

    /// <summary>A proof as IdentityModel's JsonWebTokenHandler writes one (typ and jwk in the header).</summary>
    private static string LibraryProof(DpopKey key, string method, string url, string accessToken) =>
        new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(new SecurityTokenDescriptor
        {
            TokenType = "dpop+jwt",
            AdditionalHeaderClaims = new Dictionary<string, object> { ["jwk"] = key.Jwk.ToDictionary(e => e.Key, e => (object)e.Value!) },
            Claims = new Dictionary<string, object>
            {
                ["jti"] = Guid.NewGuid().ToString(),
                ["htm"] = method,
                ["htu"] = url,
                ["iat"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
                ["ath"] = Base64UrlEncoder.Encode(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.ASCII.GetBytes(accessToken))),
            },
            SigningCredentials = new SigningCredentials(new ECDsaSecurityKey(key.Ecdsa), SecurityAlgorithms.EcdsaSha256),
        });
}
