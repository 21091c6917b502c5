using QrOrleans.Accounts;

namespace QrOrleans.Grains.Accounts;

/// <summary>
/// An owner's webhook secret at rest: sealed by the credential vault like platform credentials (same key ring, same
/// rotation), bound to its own associated data, "webhook:&lt;accountId&gt;". Account ids never hold a ':', so a
/// sealed webhook secret can never stand in for the account's sealed credentials, or the other way round.
/// </summary>
public static class WebhookSecrets
{
    public static string SealedFor(string accountId) => "webhook:" + accountId;

    public static string Seal(ICredentialVault vault, string accountId, string secret) => vault.Seal(SealedFor(accountId), secret);

    /// <summary>Only the sender calls this, for the one signature it computes.</summary>
    public static string Unseal(ICredentialVault vault, string accountId, string sealedSecret) => vault.Unseal(SealedFor(accountId), sealedSecret);

    /// <summary>The secret sealed under the vault's current key (itself when it already is).</summary>
    public static string Reseal(ICredentialVault vault, string accountId, string sealedSecret) =>
        vault.NeedsResealing(sealedSecret) ? Seal(vault, accountId, Unseal(vault, accountId, sealedSecret)) : sealedSecret;

    /// <summary>The owner's channel with a plain-text secret of old stored state sealed (itself when there is none).</summary>
    public static OwnerConfig Sealed(ICredentialVault vault, string accountId, OwnerConfig owner) =>
        owner.LegacyWebhookSecret is { } plain ? new OwnerConfig(owner.WebhookUrl, Seal(vault, accountId, plain)) : owner;

    /// <summary>The target with a plain-text secret (an outbox stored before sealing, a node not yet upgraded) sealed.</summary>
    public static WebhookTarget Sealed(ICredentialVault vault, string accountId, WebhookTarget target) =>
        target.LegacySecret is { } plain ? new WebhookTarget(target.Url, Seal(vault, accountId, plain)) : target;
}
