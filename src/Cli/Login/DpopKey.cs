using System.Security.Cryptography;
using System.Text;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace QrOrleans.Cli.Login;

/// <summary>
/// The P-256 key this terminal's device is bound to (RFC 9449 DPoP, API.md "Key binding"): its public JWK goes to the
/// server when the sign-in session is created, and every later use of the device's tokens carries a proof signed
/// with it, so the saved tokens are worthless without this key.
/// (The agent connector has its own copy of these few lines: the CLI and the grains share only the Orleans contract
/// assembly, which is no place for a JWT signer.)
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

    /// <summary>A key saved by <see cref="ExportPem"/>; anything else (another curve, not a key) is null.</summary>
    public static DpopKey? FromPem(string pem)
    {
        var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(pem);
            if (key.KeySize == 256 && key.ExportParameters(includePrivateParameters: false).Curve.Oid.Value == ECCurve.NamedCurves.nistP256.Oid.Value)
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
    /// <c>jti</c>, <c>iat</c> now, and <c>ath</c> when a key-bound access token goes with it.
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
