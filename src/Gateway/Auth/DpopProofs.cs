using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Primitives;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using QrOrleans.Grains.QrSessions;
using QrOrleans.KeyBinding;

namespace QrOrleans.Gateway.Auth;

/// <summary>An EC P-256 public key as a JWK (RFC 7518 §6.2.1), with its RFC 7638 thumbprint.</summary>
public sealed record EcPublicJwk(byte[] X, byte[] Y, string Thumbprint)
{
    private const int CoordinateBytes = 32;

    /// <summary>
    /// The key <paramref name="jwk"/> describes, or null and why not: kty EC, crv P-256, x and y base64url of 32 bytes
    /// each, a point on the curve. A private part (d) is not looked at here: see <see cref="HasPrivatePart"/>.
    /// </summary>
    public static EcPublicJwk? TryRead(JsonElement jwk, out string problem)
    {
        problem = "";
        if (jwk.ValueKind != JsonValueKind.Object)
        {
            problem = "it must be a JSON object (a JWK)";
            return null;
        }
        if (Member(jwk, "kty") != "EC")
        {
            problem = "kty must be \"EC\"";
            return null;
        }
        if (Member(jwk, "crv") != "P-256")
        {
            problem = "crv must be \"P-256\"";
            return null;
        }
        if (Coordinate(Member(jwk, "x")) is not { } x || Coordinate(Member(jwk, "y")) is not { } y)
        {
            problem = "x and y must each be the base64url (unpadded) of 32 bytes";
            return null;
        }
        try
        {
            // The platform refuses coordinates that are not a point of the curve.
            using var _ = Verifier(x, y);
        }
        catch (CryptographicException)
        {
            problem = "x, y is not a point on P-256";
            return null;
        }
        var thumbprint = new JsonWebKey { Kty = "EC", Crv = "P-256", X = Base64UrlEncoder.Encode(x), Y = Base64UrlEncoder.Encode(y) }
            .ComputeJwkThumbprint();
        return new EcPublicJwk(x, y, Base64UrlEncoder.Encode(thumbprint));
    }

    public static bool HasPrivatePart(JsonElement jwk) => jwk.ValueKind == JsonValueKind.Object && jwk.TryGetProperty("d", out _);

    /// <summary>ES256 (RFC 7518 §3.4): ECDSA P-256 with SHA-256 over the signing input, the signature as R || S.</summary>
    public bool Verifies(string signingInput, string encodedSignature)
    {
        byte[] signature;
        try
        {
            signature = Base64UrlEncoder.DecodeBytes(encodedSignature);
        }
        catch (FormatException)
        {
            return false;
        }
        using var ecdsa = Verifier(X, Y);
        return ecdsa.VerifyData(Encoding.ASCII.GetBytes(signingInput), signature, HashAlgorithmName.SHA256,
            DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
    }

    private static ECDsa Verifier(byte[] x, byte[] y) =>
        ECDsa.Create(new ECParameters { Curve = ECCurve.NamedCurves.nistP256, Q = new ECPoint { X = x, Y = y } });

    private static string? Member(JsonElement o, string name) =>
        o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? Text(v) : null;

    /// <summary>
    /// A JSON string, or null when it escapes a lone surrogate ("\udfff"): that is valid JSON but no .NET string, and
    /// GetString throws. Found by the fuzz suite (seed 130602518) as a 500 from a key's "x".
    /// </summary>
    internal static string? Text(JsonElement v)
    {
        try
        {
            return v.GetString();
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>The 32 bytes of a coordinate, only from its one canonical encoding (no padding, no stray characters).</summary>
    private static byte[]? Coordinate(string? encoded)
    {
        if (encoded is null)
        {
            return null;
        }
        try
        {
            var bytes = Base64UrlEncoder.DecodeBytes(encoded);
            return bytes.Length == CoordinateBytes && Base64UrlEncoder.Encode(bytes) == encoded ? bytes : null;
        }
        catch (FormatException)
        {
            return null;
        }
    }
}

/// <summary>A verified DPoP proof: the thumbprint of the key that signed it.</summary>
public sealed record DpopProof(string Thumbprint, string Jti, DateTimeOffset IssuedAt);

/// <summary>
/// Verifies DPoP proofs (RFC 9449) as a pipeline of small named checks in the order §4.3 lists them, each refusing with
/// its own precise detail: a missing proof is proof_required, a broken rule invalid_proof, a used jti proof_replayed.
/// The jti is recorded last, cluster-wide (<see cref="IProofReplayGrain"/>, keyed by the key's thumbprint), so a proof
/// refused for any other rule does not use it up. No nonce (§8): iat within ±60 s and the jti bound the replay window.
/// </summary>
public sealed class DpopProofs(QrSessionOptions qr, TimeProvider time, IGrainFactory grains)
{
    public const string Header = "DPoP";
    public const string ProofType = "dpop+jwt";
    public const string Algorithm = SecurityAlgorithms.EcdsaSha256;

    /// <summary>How far a proof's iat may be from now, either way.</summary>
    public static readonly TimeSpan Window = TimeSpan.FromSeconds(60);

    /// <summary>A jti is kept a little past its proof's window, for clocks of two nodes that disagree a little.</summary>
    private static readonly TimeSpan ClockMargin = TimeSpan.FromSeconds(10);

    private static readonly ProofCheck[] Checks =
    [
        new("one DPoP header", OneHeader),                  // §4.3 (1)
        new("a well-formed JWT", WellFormed),               // (2)
        new("the required claims", RequiredClaims),         // (3)
        new("typ dpop+jwt", TypIsDpop),                     // (4)
        new("alg ES256", AlgIsEs256),                       // (5)
        new("jwk an EC P-256 key", JwkIsP256),              // (5, 6): the key the signature is checked with
        new("the signature", SignatureVerifies),            // (6)
        new("no private key", JwkIsPublic),                 // (7)
        new("htm", HtmMatches),                             // (8)
        new("htu", HtuMatches),                             // (9)
        new("iat", IatInWindow),                            // (11)
        new("ath", AthMatches),                             // (12)
        new("the bound key", KeyIsBound),                   // (12)
    ];

    public static bool IsPresent(HttpRequest request) => request.Headers.ContainsKey(Header);

    /// <summary>
    /// The request's proof, verified; or the refusal thrown. <paramref name="accessToken"/> (with the thumbprint
    /// <paramref name="boundTo"/> it is bound to) when the proof comes with an access token to a protected resource.
    /// </summary>
    public async Task<DpopProof> VerifyAsync(HttpRequest request, string? accessToken, string? boundTo, CancellationToken ct)
    {
        var candidate = new ProofCandidate(request.Headers[Header], request.Method, ExpectedUrl(request), accessToken, boundTo, time.GetUtcNow());
        foreach (var check in Checks)
        {
            if (check.Refuse(candidate) is { } refusal)
            {
                throw refusal;
            }
        }
        var key = candidate.Key!;
        await grains.GetGrain<IProofReplayGrain>(key.Thumbprint).UseAsync(candidate.Jti!, candidate.IssuedAt + Window + ClockMargin, ct)
            .ConfigureAwait(false);
        return new DpopProof(key.Thumbprint, candidate.Jti!, candidate.IssuedAt);
    }

    /// <summary>base64url(SHA-256(token)): the ath a proof carries with an access token.</summary>
    public static string AccessTokenHash(string accessToken) => Base64UrlEncoder.Encode(SHA256.HashData(Encoding.ASCII.GetBytes(accessToken)));

    /// <summary>The public origin (what QR codes point at) and the request's path: what htu must name.</summary>
    private Uri ExpectedUrl(HttpRequest request) =>
        new(qr.PublicOrigin.TrimEnd('/') + request.PathBase.Add(request.Path).ToUriComponent(), UriKind.Absolute);

    /// <summary>A comma in the one value is two field lines combined (RFC 9110 §5.3): a JWT has none of its own.</summary>
    private static GrainException? OneHeader(ProofCandidate c) => c.Values.Count switch
    {
        0 => KeyBindingErrors.ProofRequired(),
        1 when !c.Values.ToString().Contains(',', StringComparison.Ordinal) => null,
        _ => KeyBindingErrors.InvalidProof("Send exactly one DPoP header."),
    };

    private static GrainException? WellFormed(ProofCandidate c)
    {
        var refusal = KeyBindingErrors.InvalidProof("The DPoP header is not a single well-formed JWT (a JWS in compact form).");
        try
        {
            var jwt = new JsonWebToken(c.Values.ToString());
            if (jwt.IsEncrypted)
            {
                return refusal;
            }
            c.Jwt = jwt;
            c.Header = Json(jwt.EncodedHeader);
            c.Payload = Json(jwt.EncodedPayload);
            return c.Header.ValueKind == JsonValueKind.Object && c.Payload.ValueKind == JsonValueKind.Object ? null : refusal;
        }
        catch (Exception e) when (e is ArgumentException or SecurityTokenException or JsonException or FormatException)
        {
            return refusal;
        }
    }

    private static GrainException? RequiredClaims(ProofCandidate c)
    {
        var missing = new List<string>();
        c.Typ = String(c.Header, "typ", missing);
        c.Alg = String(c.Header, "alg", missing);
        if (!c.Header.TryGetProperty("jwk", out var jwk) || jwk.ValueKind != JsonValueKind.Object)
        {
            missing.Add("jwk");
        }
        c.Jwk = jwk;
        c.Jti = String(c.Payload, "jti", missing);
        c.Htm = String(c.Payload, "htm", missing);
        c.Htu = String(c.Payload, "htu", missing);
        if (c.Payload.TryGetProperty("iat", out var iat) && iat.ValueKind == JsonValueKind.Number && iat.TryGetDouble(out var seconds)
            && Math.Abs(seconds) < 1e11)
        {
            c.IssuedAt = DateTimeOffset.UnixEpoch.AddSeconds(Math.Floor(seconds));
        }
        else
        {
            missing.Add("iat");
        }
        if (c.AccessToken is not null)
        {
            c.Ath = String(c.Payload, "ath", missing);
        }
        if (c.Jti is { Length: > 256 })
        {
            return KeyBindingErrors.InvalidProof("The DPoP proof's jti is longer than 256 characters.");
        }
        return missing.Count == 0 ? null
            : KeyBindingErrors.InvalidProof($"The DPoP proof lacks {string.Join(", ", missing)} (header: typ, alg, jwk; claims: jti, htm, htu, iat"
                + (c.AccessToken is null ? ")." : ", ath)."));
    }

    private static GrainException? TypIsDpop(ProofCandidate c) =>
        string.Equals(c.Typ, ProofType, StringComparison.OrdinalIgnoreCase) ? null
        : KeyBindingErrors.InvalidProof($"The DPoP proof's typ must be {ProofType}.");

    private static GrainException? AlgIsEs256(ProofCandidate c) =>
        c.Alg == Algorithm ? null
        : KeyBindingErrors.InvalidProof($"The DPoP proof must be signed with {Algorithm}; alg {c.Alg} is not accepted.");

    private static GrainException? JwkIsP256(ProofCandidate c)
    {
        c.Key = EcPublicJwk.TryRead(c.Jwk, out var problem);
        return c.Key is not null ? null : KeyBindingErrors.InvalidProof($"The DPoP proof's jwk is not an EC P-256 public key: {problem}.");
    }

    private static GrainException? SignatureVerifies(ProofCandidate c) =>
        c.Key!.Verifies(c.Jwt!.EncodedHeader + "." + c.Jwt.EncodedPayload, c.Jwt.EncodedSignature) ? null
        : KeyBindingErrors.InvalidProof("The DPoP proof's signature does not verify with its jwk.");

    private static GrainException? JwkIsPublic(ProofCandidate c) =>
        EcPublicJwk.HasPrivatePart(c.Jwk)
            ? KeyBindingErrors.InvalidProof("The DPoP proof's jwk contains a private key (d); a proof carries the public key only.")
            : null;

    private static GrainException? HtmMatches(ProofCandidate c) =>
        string.Equals(c.Htm, c.Method, StringComparison.Ordinal) ? null
        : KeyBindingErrors.InvalidProof($"The DPoP proof's htm must be the request's method, {c.Method}.");

    /// <summary>
    /// RFC 9449 §4.3 (9): compared after RFC 3986 syntax- and scheme-based normalisation (case of scheme and host,
    /// default port, percent-encoding), ignoring query and fragment.
    /// </summary>
    private static GrainException? HtuMatches(ProofCandidate c) =>
        Uri.TryCreate(c.Htu, UriKind.Absolute, out var htu) && htu.Scheme is "http" or "https"
        && Uri.Compare(htu, c.Url, UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.SafeUnescaped, StringComparison.Ordinal) == 0
            ? null
            : KeyBindingErrors.InvalidProof($"The DPoP proof's htu must be this request's URL, {c.Url.GetLeftPart(UriPartial.Path)}.");

    private static GrainException? IatInWindow(ProofCandidate c) =>
        (c.IssuedAt - c.Now).Duration() <= Window ? null
        : KeyBindingErrors.InvalidProof($"The DPoP proof's iat must be within {Window.TotalSeconds:F0} s of the server's time; sign a fresh proof.");

    private static GrainException? AthMatches(ProofCandidate c) =>
        c.AccessToken is null || string.Equals(c.Ath, AccessTokenHash(c.AccessToken), StringComparison.Ordinal) ? null
        : KeyBindingErrors.InvalidProof("The DPoP proof's ath must be the base64url SHA-256 of the access token it comes with.");

    private static GrainException? KeyIsBound(ProofCandidate c) =>
        c.BoundTo is null || string.Equals(c.BoundTo, c.Key!.Thumbprint, StringComparison.Ordinal) ? null : KeyBindingErrors.OtherKey();

    private static JsonElement Json(string encoded)
    {
        using var document = JsonDocument.Parse(Base64UrlEncoder.Decode(encoded));
        return document.RootElement.Clone();
    }

    private static string? String(JsonElement o, string name, List<string> missing)
    {
        if (o.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && EcPublicJwk.Text(v) is { Length: > 0 } s)
        {
            return s;
        }
        missing.Add(name);
        return null;
    }

    private sealed record ProofCheck(string Rule, Func<ProofCandidate, GrainException?> Refuse);

    /// <summary>A proof as the checks see it: what the request says, filled in by the checks as they pass.</summary>
    private sealed class ProofCandidate(StringValues values, string method, Uri url, string? accessToken, string? boundTo, DateTimeOffset now)
    {
        public StringValues Values => values;
        public string Method => method;
        public Uri Url => url;
        public string? AccessToken => accessToken;
        public string? BoundTo => boundTo;
        public DateTimeOffset Now => now;
        public JsonWebToken? Jwt { get; set; }
        public JsonElement Header { get; set; }
        public JsonElement Payload { get; set; }
        public JsonElement Jwk { get; set; }
        public string? Typ { get; set; }
        public string? Alg { get; set; }
        public string? Jti { get; set; }
        public string? Htm { get; set; }
        public string? Htu { get; set; }
        public string? Ath { get; set; }
        public DateTimeOffset IssuedAt { get; set; }
        public EcPublicJwk? Key { get; set; }
    }
}
