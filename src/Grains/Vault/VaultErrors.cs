namespace QrOrleans.Grains.Vault;

/// <summary>
/// The refusals of the vault. Every integrity or passphrase failure is 422 (the request was well-formed, its
/// content does not verify); a string that is not a sealed value at all is 400. 401 is kept for the caller's own
/// authentication, so a wrong export passphrase never looks like an expired sign-in to a client.
/// </summary>
public static class VaultErrors
{
    public static GrainException InvalidSealed(string detail) =>
        new("invalid_sealed", 400, "Not a sealed credential", detail);

    public static GrainException CredentialsTampered() =>
        new("credentials_tampered", 422, "Credentials do not verify",
            "The sealed credentials were altered, or belong to another account.");

    public static GrainException UnknownKeyVersion(int version, IEnumerable<int> configured) =>
        new("unknown_key_version", 422, "Unknown key version",
            version < 0
                ? "The credentials were sealed under the ephemeral key of an earlier run, which is gone; re-pair the account, and configure QrOrleans:Vault:Keys so that this does not happen again."
                : $"The credentials were sealed under key version {version}, which is not configured (configured: {string.Join(", ", configured)}). Restore that key under QrOrleans:Vault:Keys or re-pair the account.");

    public static GrainException WrongPassphrase() =>
        new("wrong_passphrase", 422, "Wrong passphrase", "The passphrase does not open this exported credential.");

    public static GrainException WrongAccount() =>
        new("wrong_account", 422, "Exported from another account",
            "This exported credential belongs to another account; import it into the account it was exported from.");
}
