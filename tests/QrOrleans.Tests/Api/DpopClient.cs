using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.IdentityModel.Tokens;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Api;

/// <summary>
/// A desktop's EC P-256 key and the DPoP proofs (RFC 9449) it signs, written out by hand so that a test can break any
/// one rule of a proof and nothing else. The thumbprint is computed here from RFC 7638's canonical JSON, not by the
/// server's library.
/// </summary>
public sealed class DpopKey : IDisposable
{
    public ECDsa Ecdsa { get; } = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    private ECParameters Public => Ecdsa.ExportParameters(false);

    public string X => Base64UrlEncoder.Encode(Public.Q.X);

    public string Y => Base64UrlEncoder.Encode(Public.Q.Y);

    /// <summary>The public JWK, as a desktop sends it at create and in every proof's header.</summary>
    public Dictionary<string, object?> Jwk => new() { ["kty"] = "EC", ["crv"] = "P-256", ["x"] = X, ["y"] = Y };

    public string Thumbprint =>
        Base64UrlEncoder.Encode(SHA256.HashData(Encoding.UTF8.GetBytes($"{{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"{X}\",\"y\":\"{Y}\"}}")));

    /// <summary>
    /// A proof for <paramref name="method"/> <paramref name="url"/>; <paramref name="header"/> and
    /// <paramref name="claims"/> change it before it is signed (by <paramref name="signer"/>, this key by default).
    /// </summary>
    public string Proof(string method, string url, string? accessToken = null, Action<Dictionary<string, object?>>? header = null,
        Action<Dictionary<string, object?>>? claims = null, DpopKey? signer = null, DateTimeOffset? iat = null)
    {
        var h = new Dictionary<string, object?> { ["typ"] = "dpop+jwt", ["alg"] = "ES256", ["jwk"] = Jwk };
        var c = new Dictionary<string, object?>
        {
            ["jti"] = Guid.NewGuid().ToString("N"),
            ["htm"] = method,
            ["htu"] = url,
            ["iat"] = (iat ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds(),
        };
        if (accessToken is not null)
        {
            c["ath"] = Base64UrlEncoder.Encode(SHA256.HashData(Encoding.ASCII.GetBytes(accessToken)));
        }
        header?.Invoke(h);
        claims?.Invoke(c);
        var input = Part(h) + "." + Part(c);
        var signature = h["alg"] switch
        {
            "none" => "",
            "HS256" => Base64UrlEncoder.Encode(HMACSHA256.HashData(RandomNumberGenerator.GetBytes(32), Encoding.ASCII.GetBytes(input))),
            _ => Base64UrlEncoder.Encode((signer ?? this).Ecdsa.SignData(Encoding.ASCII.GetBytes(input), HashAlgorithmName.SHA256,
                DSASignatureFormat.IeeeP1363FixedFieldConcatenation)),
        };
        return input + "." + signature;
    }

    private static string Part(Dictionary<string, object?> json) => Base64UrlEncoder.Encode(JsonSerializer.SerializeToUtf8Bytes(json));

    public void Dispose() => Ecdsa.Dispose();
}

/// <summary>HTTP calls with an Authorization scheme of choice and any number of DPoP headers.</summary>
public static class DpopCalls
{
    public static async Task<Reply> SendAsync(this ApiClient api, HttpMethod method, string path, object? body, string? scheme, string? token,
        params string[] proofs)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body, options: ApiClient.Json);
        }
        if (scheme is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue(scheme, token);
        }
        foreach (var proof in proofs)
        {
            request.Headers.TryAddWithoutValidation("DPoP", proof);
        }
        using var response = await api.Http.SendAsync(request);
        return await Reply.ReadAsync(response);
    }

    public static string Url(this ApiClient api, string path) => new Uri(api.Http.BaseAddress!, path).ToString();

    /// <summary>A session created with <paramref name="key"/>, scanned and approved by <paramref name="phoneToken"/>'s user.</summary>
    public static async Task<NewSession> ApprovedKeyedSessionAsync(this ApiClient api, string phoneToken, DpopKey? key)
    {
        var session = await api.CreateSessionAsync(key is null
            ? new { client = new { name = "Unkeyed desktop", kind = "cli" } }
            : new { client = new { name = "Keyed desktop", kind = "cli" }, key = key.Jwk });
        await api.ScanAndApproveAsync(phoneToken, session);
        return session;
    }

    public static string ClaimPath(NewSession s) => $"/v1/qr/sessions/{s.SessionId}/claim";

    /// <summary>The claim, with a fresh proof of <paramref name="key"/> (none without a key).</summary>
    public static Task<Reply> ClaimWithProofAsync(this ApiClient api, NewSession s, DpopKey? key) =>
        key is null
            ? api.ClaimAsync(s)
            : api.SendAsync(HttpMethod.Post, ClaimPath(s), null, "Bearer", s.DesktopToken, key.Proof("POST", api.Url(ClaimPath(s))));

    /// <summary>A bound access token on a GET, with a fresh proof for it.</summary>
    public static Task<Reply> GetBoundAsync(this ApiClient api, string path, string accessToken, DpopKey key) =>
        api.SendAsync(HttpMethod.Get, path, null, "DPoP", accessToken, key.Proof("GET", api.Url(path), accessToken));

    public static Task<Reply> RefreshAsync(this ApiClient api, string refreshToken, params string[] proofs) =>
        api.SendAsync(HttpMethod.Post, "/v1/auth/refresh", new { refreshToken }, null, null, proofs);
}
