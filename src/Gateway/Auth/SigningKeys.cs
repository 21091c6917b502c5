using System.Security.Cryptography;
using Microsoft.IdentityModel.Protocols;
using Microsoft.IdentityModel.Protocols.OpenIdConnect;
using Microsoft.IdentityModel.Tokens;
using QrOrleans.Users;

namespace QrOrleans.Gateway.Auth;

/// <summary>The cluster's ES256 key as this node holds it: the signing half, and what JwtBearer validates with.</summary>
public sealed record SigningKey(ECDsaSecurityKey Key, ECParameters Public, OpenIdConnectConfiguration Configuration);

/// <summary>
/// The key every node signs access tokens with, read once from <see cref="ISigningKeyGrain"/>, and JwtBearer's
/// configuration (issuer and signing key) built from it. A failed read is not kept: the next request reads
/// again, so a storage outage ends when storage is back. Not IdentityModel's <c>ConfigurationManager</c>: that
/// is a <c>BaseConfigurationManager</c>, whose fetch failures the token handler swallows into "signature key not
/// found" (a 401 that blames the caller) and then backs off for a refresh interval. Here the failure leaves the
/// bearer handler as the storage exception itself, which the problem middleware answers 503 storage_unavailable.
/// </summary>
public sealed class SigningKeys(IGrainFactory grains) : IConfigurationManager<OpenIdConnectConfiguration>
{
    private Task<SigningKey>? _load;

    public Task<SigningKey> GetAsync(CancellationToken ct)
    {
        var load = _load;
        if (load is null || load.IsFaulted || load.IsCanceled)
        {
            var fresh = LoadAsync();
            load = Interlocked.CompareExchange(ref _load, fresh, load) == load ? fresh : _load!;
        }
        // One read serves every waiting request; a request that gives up does not cancel it for the others.
        return load.WaitAsync(ct);
    }

    public async Task<OpenIdConnectConfiguration> GetConfigurationAsync(CancellationToken cancel) =>
        (await GetAsync(cancel).ConfigureAwait(false)).Configuration;

    /// <summary>Nothing to refresh: the key is created once per cluster and never rotates while it runs.</summary>
    public void RequestRefresh()
    {
    }

    private async Task<SigningKey> LoadAsync()
    {
        var material = await grains.GetGrain<ISigningKeyGrain>("default").GetOrCreateAsync(CancellationToken.None).ConfigureAwait(false);
        var ecdsa = ECDsa.Create();
        ecdsa.ImportPkcs8PrivateKey(Convert.FromBase64String(material.PrivateKeyPkcs8Base64), out _);
        var key = new ECDsaSecurityKey(ecdsa) { KeyId = material.KeyId };
        var configuration = new OpenIdConnectConfiguration { Issuer = AccessTokens.Issuer };
        configuration.SigningKeys.Add(key);
        return new SigningKey(key, ecdsa.ExportParameters(false), configuration);
    }
}
