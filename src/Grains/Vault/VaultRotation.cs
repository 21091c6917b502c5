using System.Runtime.CompilerServices;
using QrOrleans.Accounts;

namespace QrOrleans.Grains.Vault;

/// <summary>One stored credential: the account it belongs to and its sealed value.</summary>
public sealed record SealedCredential(string AccountId, string Sealed);

public enum ResealOutcome
{
    /// <summary>Was under an older key; <see cref="ResealResult.Sealed"/> is the new value to store.</summary>
    Resealed,

    /// <summary>Already under the current key (or a newer one); nothing to store.</summary>
    Unchanged,

    /// <summary>Could not be opened; <see cref="ResealResult.Sealed"/> is the original value, <see cref="ResealResult.ErrorCode"/> says why.</summary>
    Failed,
}

/// <param name="ErrorCode">On <see cref="ResealOutcome.Failed"/>: <c>credentials_tampered</c>, <c>unknown_key_version</c> or <c>invalid_sealed</c>.</param>
public sealed record ResealResult(string AccountId, string Sealed, ResealOutcome Outcome, string? ErrorCode = null);

/// <summary>
/// Key rotation: move every stored credential to the current key, so that an old key can leave the ring.
/// Steps for an operator: add <c>Keys:&lt;n+1&gt;</c> everywhere, then set <c>CurrentVersion=&lt;n+1&gt;</c>, run this over
/// every account and store the <see cref="ResealOutcome.Resealed"/> values, and remove <c>Keys:&lt;n&gt;</c> only when a run
/// reports nothing but <see cref="ResealOutcome.Unchanged"/>. A value that cannot be opened is reported and left as it
/// was; it never stops the others. Pure: it reads and returns values, the caller stores them.
/// </summary>
public static class VaultRotation
{
    public static IEnumerable<ResealResult> Reseal(ICredentialVault vault, IEnumerable<SealedCredential> credentials)
    {
        ArgumentNullException.ThrowIfNull(vault);
        ArgumentNullException.ThrowIfNull(credentials);
        foreach (var credential in credentials)
        {
            yield return Reseal(vault, credential);
        }
    }

    public static async IAsyncEnumerable<ResealResult> ResealAsync(
        ICredentialVault vault, IAsyncEnumerable<SealedCredential> credentials, [EnumeratorCancellation] CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(vault);
        ArgumentNullException.ThrowIfNull(credentials);
        await foreach (var credential in credentials.WithCancellation(ct).ConfigureAwait(false))
        {
            yield return Reseal(vault, credential);
        }
    }

    public static ResealResult Reseal(ICredentialVault vault, SealedCredential credential)
    {
        ArgumentNullException.ThrowIfNull(vault);
        ArgumentNullException.ThrowIfNull(credential);
        try
        {
            return vault.NeedsResealing(credential.Sealed)
                ? new ResealResult(credential.AccountId, vault.Seal(credential.AccountId, vault.Unseal(credential.AccountId, credential.Sealed)), ResealOutcome.Resealed)
                : new ResealResult(credential.AccountId, credential.Sealed, ResealOutcome.Unchanged);
        }
        catch (GrainException e)
        {
            return new ResealResult(credential.AccountId, credential.Sealed, ResealOutcome.Failed, e.Code);
        }
    }
}
