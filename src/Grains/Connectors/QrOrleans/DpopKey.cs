using System.Security.Cryptography;
using System.Text;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace QrOrleans.KeyBinding;

/// <summary>
/// The P-256 key a client's device is bound to (RFC 9449 DPoP, API.md "Key binding"): its public JWK goes to the
/// server with the sign-in session, and the claim and every later use of the device's tokens carry a proof signed
/// with it, so the tokens are worthless without it. Never logged. The agent connector keeps it as PKCS#8 in
/// base64url inside its pairing handle and (sealed) credentials; the CLI as a PEM file beside its credentials.
/// (Compiled into both: the CLI and the grains share only the Orleans contract assembly, which is no place for a JWT
/// signer, so the CLI links this file.)
/// </summary>
public sealed class DpopKey : IDisposable
{
    // The proof's iat is set by hand below; the handler's default exp/nbf have no place in a DPoP proof.
    private static readonly JsonWebTokenHandler Handler = new() { SetDefaultTimesOnTokenCreation = false };

    private readonly ECDsa _key;
    private readonly SigningCredentials _signing;

    private DpopKey(ECDsa key)
    {
        _key = key;
        _signing = new SigningCredentials(new ECDsaSecurityKey(key), SecurityAlgorithms.EcdsaSha256)
        {
            // The shared cache keys signers by the key's public value, so a key loaded again would be signed with
            // by an earlier instance's, already disposed, ECDsa.
            CryptoProviderFactory = new CryptoProviderFactory { CacheSignatureProviders = false },
        };
        var point = key.ExportParameters(includePrivateParameters: false).Q;
        PublicJwk = new Dictionary<string, object>
        {
            ["kty"] = "EC",
            ["crv"] = "P-256",
            ["x"] = Base64UrlEncoder.Encode(point.X),
            ["y"] = Base64UrlEncoder.Encode(point.Y),
        };
    }

    /// <summary>The public key as the JWK of API.md: kty, crv, x, y and nothing else.</summary>
    public IReadOnlyDictionary<string, object> PublicJwk { get; }

    public static DpopKey Create() => new(ECDsa.Create(ECCurve.NamedCurves.nistP256));

    /// <summary>A key from <see cref="Export"/>; null if the text is not a P-256 private key.</summary>
    public static DpopKey? TryImport(string? exported)
    {
        if (string.IsNullOrEmpty(exported))
        {
            return null;
        }
        var key = ECDsa.Create();
        try
        {
            key.ImportPkcs8PrivateKey(Base64UrlEncoder.DecodeBytes(exported), out _);
            if (key.ExportParameters(includePrivateParameters: false).Curve.Oid.Value == ECCurve.NamedCurves.nistP256.Oid.Value)
            {
                return new DpopKey(key);
            }
        }
        catch (Exception e) when (e is FormatException or ArgumentException or CryptographicException)
        {
            // fall through: not a key we can use
        }
        key.Dispose();
        return null;
    }

    public string Export() => Base64UrlEncoder.Encode(_key.ExportPkcs8PrivateKey());

    /// <summary>A key saved by <see cref="ExportPem"/>; anything else (another curve, not a key) is null.</summary>
    public static DpopKey? FromPem(string pem)
    {
        var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(pem);
            if (key.ExportParameters(includePrivateParameters: false).Curve.Oid.Value == ECCurve.NamedCurves.nistP256.Oid.Value)
            {
                return new DpopKey(key);
            }
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            // fall through: not a key we can use
        }
        key.Dispose();
        return null;
    }

    public string ExportPem() => _key.ExportPkcs8PrivateKeyPem();

    /// <summary>
    /// A proof for one request: <c>htm</c> and <c>htu</c> (the URL without query or fragment, RFC 9449 §4.2), a fresh
    /// <c>jti</c>, <c>iat</c> now by the wall clock (the server judges it by its own, so never a test's fake clock), and
    /// <c>ath</c> when a key-bound access token goes with it.
    /// </summary>
    public string Proof(HttpMethod method, Uri target, string? boundAccessToken = null)
    {
        var claims = new Dictionary<string, object>
        {
            ["htm"] = method.Method,
            ["htu"] = target.GetLeftPart(UriPartial.Path),
            ["iat"] = DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            ["jti"] = Base64UrlEncoder.Encode(RandomNumberGenerator.GetBytes(16)),
        };
        if (boundAccessToken is not null)
        {
            claims["ath"] = Base64UrlEncoder.Encode(SHA256.HashData(Encoding.ASCII.GetBytes(boundAccessToken)));
        }
        return Handler.CreateToken(new SecurityTokenDescriptor
        {
            TokenType = "dpop+jwt",
            AdditionalHeaderClaims = new Dictionary<string, object> { ["jwk"] = PublicJwk },
            Claims = claims,
            SigningCredentials = _signing,
        });
    }

    public void Dispose() => _key.Dispose();

    public override string ToString() => "DpopKey { P-256, private key = *** }";
}
