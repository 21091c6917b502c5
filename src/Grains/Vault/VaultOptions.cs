namespace QrOrleans.Grains.Vault;

/// <summary>
/// The key ring of the credential vault (configuration section <c>QrOrleans:Vault</c>):
/// <code>
/// QrOrleans:Vault:Keys:1=&lt;32 random bytes, base64&gt;
/// QrOrleans:Vault:Keys:2=&lt;32 random bytes, base64&gt;
/// QrOrleans:Vault:CurrentVersion=2
/// </code>
/// New values are sealed under <see cref="CurrentVersion"/>; every configured key still opens what it sealed, so a
/// retired key stays in the ring until <see cref="VaultRotation"/> has resealed everything under the current one.
/// With no keys and no current version (the embedded default) the vault runs on an ephemeral key, and each host
/// says so once at start-up (<see cref="CredentialVault.EphemeralKeyWarning"/>).
/// </summary>
public sealed class VaultOptions
{
    /// <summary>Key version (a positive integer) → 32-byte AES-256 key in base64 (base64url accepted).</summary>
    public Dictionary<string, string> Keys { get; set; } = [];

    /// <summary>The version new values are sealed under; must name a configured key. Required once keys are configured.</summary>
    public int CurrentVersion { get; set; }

    /// <summary>PBKDF2-SHA256 iterations of exported strings; never below <see cref="CredentialVault.MinExportIterations"/>.</summary>
    public int ExportIterations { get; set; } = CredentialVault.MinExportIterations;
}
