using System.Buffers.Text;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using QrOrleans.Accounts;

namespace QrOrleans.Grains.Vault;

/// <summary>
/// AES-256-GCM over a versioned key ring, the account id bound in as associated data.
/// <para>
/// Sealed at rest: <c>v1.&lt;keyVersion&gt;.&lt;base64url(nonce[12] | ciphertext | tag[16])&gt;</c>, associated data
/// <c>UTF-8("v1.&lt;keyVersion&gt;.") ‖ UTF-8(accountId)</c>.
/// </para>
/// <para>
/// Exported: <c>x1.&lt;iterations&gt;.&lt;base64url(salt[16])&gt;.&lt;base64url(accountId)&gt;.&lt;base64url(check[16])&gt;.&lt;base64url(nonce[12] | ciphertext | tag[16])&gt;</c>.
/// PBKDF2-SHA256(NFC(passphrase), salt, iterations) gives a 32-byte master; HKDF-Expand splits it into the
/// AES key and a 16-byte check value, so a wrong passphrase (check differs) is told apart from an altered string
/// (check matches, tag fails). The associated data is the whole header, rebuilt with the importing account's id.
/// </para>
/// Strings are canonical: any other spelling of the same bytes is <c>invalid_sealed</c>, so every change to a
/// sealed string is detected. Nothing is logged here; the hosts give <see cref="EphemeralKeyWarning"/> once at start-up.
/// The instance is immutable and thread-safe.
/// </summary>
public sealed class CredentialVault : ICredentialVault
{
    public const int MinExportIterations = 600_000;

    /// <summary>Imports refuse more than this, so a crafted string cannot make the server spin for minutes.</summary>
    public const int MaxExportIterations = 10_000_000;

    public const int MinPassphraseLength = 12;

    /// <summary>What a host says at start-up when <see cref="IsEphemeral"/>: the consequence and the settings that fix it.</summary>
    public const string EphemeralKeyWarning =
        "QrOrleans:Vault has no keys: linked-account credentials are sealed under an ephemeral key generated at start " +
        "and will not survive a restart (every linked account will need re-pairing). To keep them, set " +
        "QrOrleans:Vault:Keys:1=<32 random bytes in base64, e.g. `openssl rand -base64 32`> " +
        "and QrOrleans:Vault:CurrentVersion=1 (environment: QrOrleans__Vault__Keys__1, QrOrleans__Vault__CurrentVersion).";

    private const string SealedPrefix = "v1";
    private const string ExportPrefix = "x1";
    private const int KeySize = 32;
    private const int NonceSize = 12;
    private const int TagSize = 16;
    private const int SaltSize = 16;
    private const int CheckSize = 16;
    private static readonly byte[] ExportKeyInfo = "qrorleans/vault/export/v1/key"u8.ToArray();
    private static readonly byte[] ExportCheckInfo = "qrorleans/vault/export/v1/check"u8.ToArray();
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    private readonly Dictionary<int, byte[]> _keys;
    private readonly int _exportIterations;

    /// <exception cref="InvalidOperationException">The configuration is inconsistent (the message names the setting, never a key).</exception>
    public CredentialVault(VaultOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        _exportIterations = options.ExportIterations;
        if (_exportIterations is < MinExportIterations or > MaxExportIterations)
        {
            throw new InvalidOperationException(
                $"QrOrleans:Vault:ExportIterations must be between {MinExportIterations} and {MaxExportIterations}.");
        }

        _keys = ReadKeys(options.Keys ?? []);
        if (_keys.Count == 0 && options.CurrentVersion == 0)
        {
            // A random negative version: it can never collide with a configured one, it sorts before all of them
            // (so NeedsResealing is true once real keys arrive), and values from an earlier run report
            // unknown_key_version rather than looking tampered.
            CurrentVersion = -RandomNumberGenerator.GetInt32(1, int.MaxValue);
            _keys[CurrentVersion] = RandomNumberGenerator.GetBytes(KeySize);
            IsEphemeral = true;
            return;
        }
        if (!_keys.ContainsKey(options.CurrentVersion))
        {
            throw new InvalidOperationException(
                options.CurrentVersion == 0
                    ? $"QrOrleans:Vault:CurrentVersion is required once keys are configured (configured: {string.Join(", ", _keys.Keys.Order())})."
                : _keys.Count == 0
                    ? $"QrOrleans:Vault:CurrentVersion is {options.CurrentVersion} but no key is configured under QrOrleans:Vault:Keys (is the secret mounted?)."
                    : $"QrOrleans:Vault:CurrentVersion is {options.CurrentVersion} but no key has that version (configured: {string.Join(", ", _keys.Keys.Order())}).");
        }
        CurrentVersion = options.CurrentVersion;
    }

    /// <summary>The key version new values are sealed under (negative for the ephemeral key).</summary>
    public int CurrentVersion { get; }

    /// <summary>True when no keys are configured and sealed values die with the process.</summary>
    public bool IsEphemeral { get; }

    /// <summary>A fresh AES-256 key for <c>QrOrleans:Vault:Keys:&lt;version&gt;</c>, in base64.</summary>
    public static string GenerateKey() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(KeySize));

    public string Seal(string accountId, string plaintext)
    {
        ArgumentException.ThrowIfNullOrEmpty(accountId);
        var plain = Utf8Bytes(plaintext);
        try
        {
            var header = $"{SealedPrefix}.{Format(CurrentVersion)}.";
            var blob = Encrypt(_keys[CurrentVersion], plain, SealedAad(header, accountId));
            return header + Base64Url.EncodeToString(blob);
        }
        finally
        {
            CryptographicOperations.ZeroMemory(plain);
        }
    }

    public string Unseal(string accountId, string sealedValue)
    {
        ArgumentException.ThrowIfNullOrEmpty(accountId);
        var (version, header, blob) = ParseSealed(sealedValue);
        if (!_keys.TryGetValue(version, out var key))
        {
            throw VaultErrors.UnknownKeyVersion(version, _keys.Keys.Where(v => v > 0).Order());
        }
        return DecryptText(key, blob, SealedAad(header, accountId));
    }

    /// <summary>True when <paramref name="sealedValue"/> is sealed under an older version than the current one (a newer one is left alone: another node may already be rotated).</summary>
    /// <exception cref="GrainException"><c>invalid_sealed</c> if it is not a sealed value.</exception>
    public bool NeedsResealing(string sealedValue) => ParseSealed(sealedValue).Version < CurrentVersion;

    /// <summary>The same credentials sealed under the current key, or <paramref name="sealedValue"/> itself if no resealing is needed.</summary>
    public string Reseal(string accountId, string sealedValue) =>
        NeedsResealing(sealedValue) ? Seal(accountId, Unseal(accountId, sealedValue)) : sealedValue;

    public string Export(string accountId, string plaintext, string passphrase)
    {
        ArgumentException.ThrowIfNullOrEmpty(accountId);
        if (passphrase is null || passphrase.Normalize(NormalizationForm.FormC).EnumerateRunes().Count() < MinPassphraseLength)
        {
            throw Errors.Validation($"The passphrase must be at least {MinPassphraseLength} characters long.");
        }
        var plain = Utf8Bytes(plaintext);
        var salt = RandomNumberGenerator.GetBytes(SaltSize);
        var (key, check) = DeriveExportKeys(passphrase, salt, _exportIterations);
        try
        {
            var header = ExportHeader(_exportIterations, salt, accountId, check);
            return header + Base64Url.EncodeToString(Encrypt(key, plain, Encoding.UTF8.GetBytes(header)));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(plain);
            CryptographicOperations.ZeroMemory(key);
        }
    }

    public string Import(string accountId, string exported, string passphrase)
    {
        ArgumentException.ThrowIfNullOrEmpty(accountId);
        if (string.IsNullOrEmpty(passphrase))
        {
            throw Errors.Validation("A passphrase is required.");
        }
        var parsed = ParseExported(exported);
        // Cheap checks first: a string for another account costs no key derivation.
        if (!string.Equals(parsed.AccountId, accountId, StringComparison.Ordinal))
        {
            throw VaultErrors.WrongAccount();
        }
        var (key, check) = DeriveExportKeys(passphrase, parsed.Salt, parsed.Iterations);
        try
        {
            if (!CryptographicOperations.FixedTimeEquals(check, parsed.Check))
            {
                throw VaultErrors.WrongPassphrase();
            }
            // Rebuilt from the caller's account id: the associated data binds the account even if the check above changes.
            var header = ExportHeader(parsed.Iterations, parsed.Salt, accountId, parsed.Check);
            return DecryptText(key, parsed.Blob, Encoding.UTF8.GetBytes(header));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(key);
        }
    }

    /// <summary>Reads <c>Keys</c>, naming the offending setting (never its value) when one is unusable.</summary>
    private static Dictionary<int, byte[]> ReadKeys(Dictionary<string, string> configured)
    {
        var keys = new Dictionary<int, byte[]>();
        foreach (var (name, value) in configured)
        {
            if (!int.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var version) || version < 1)
            {
                throw new InvalidOperationException($"QrOrleans:Vault:Keys:{name}: key versions are positive integers.");
            }
            if (keys.ContainsKey(version))
            {
                throw new InvalidOperationException($"QrOrleans:Vault:Keys:{name}: key version {version} is configured twice.");
            }
            var key = DecodeKey(value);
            if (key?.Length != KeySize)
            {
                throw new InvalidOperationException(
                    $"QrOrleans:Vault:Keys:{name} must be {KeySize} random bytes in base64 (generate one with `openssl rand -base64 32`).");
            }
            keys[version] = key;
        }
        return keys;
    }

    private static byte[]? DecodeKey(string? value)
    {
        var text = value?.Trim();
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }
        // Keys pasted in either alphabet, padded or not, work.
        text = text.TrimEnd('=').Replace('+', '-').Replace('/', '_');
        return TryDecode(text);
    }

    /// <summary>Base64url (padding optional), or null; <see cref="Base64Url.TryDecodeFromChars(ReadOnlySpan{char}, Span{byte}, out int)"/> throws on bad input rather than returning false.</summary>
    private static byte[]? TryDecode(string text)
    {
        try
        {
            var buffer = new byte[Base64Url.GetMaxDecodedLength(text.Length)];
            return Base64Url.TryDecodeFromChars(text, buffer, out var written) ? buffer[..written] : null;
        }
        catch (FormatException)
        {
            return null;
        }
    }

    private static byte[] Utf8Bytes(string plaintext)
    {
        ArgumentNullException.ThrowIfNull(plaintext);
        try
        {
            return StrictUtf8.GetBytes(plaintext);
        }
        catch (EncoderFallbackException)
        {
            // Sealing it would silently change the text; the exception's own message would quote it.
            throw new ArgumentException("The plaintext is not valid UTF-16 text (unpaired surrogate).", nameof(plaintext));
        }
    }

    private static byte[] SealedAad(string header, string accountId) => Encoding.UTF8.GetBytes(header + accountId);

    private static string ExportHeader(int iterations, byte[] salt, string accountId, byte[] check) =>
        $"{ExportPrefix}.{Format(iterations)}.{Base64Url.EncodeToString(salt)}.{Base64Url.EncodeToString(Encoding.UTF8.GetBytes(accountId))}.{Base64Url.EncodeToString(check)}.";

    private static (byte[] Key, byte[] Check) DeriveExportKeys(string passphrase, byte[] salt, int iterations)
    {
        var secret = Encoding.UTF8.GetBytes(passphrase.Normalize(NormalizationForm.FormC));
        var master = Rfc2898DeriveBytes.Pbkdf2(secret, salt, iterations, HashAlgorithmName.SHA256, KeySize);
        try
        {
            return (HKDF.Expand(HashAlgorithmName.SHA256, master, KeySize, ExportKeyInfo),
                    HKDF.Expand(HashAlgorithmName.SHA256, master, CheckSize, ExportCheckInfo));
        }
        finally
        {
            CryptographicOperations.ZeroMemory(secret);
            CryptographicOperations.ZeroMemory(master);
        }
    }

    private static byte[] Encrypt(byte[] key, byte[] plain, byte[] aad)
    {
        var blob = new byte[NonceSize + plain.Length + TagSize];
        var nonce = blob.AsSpan(0, NonceSize);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(key, TagSize);
        aes.Encrypt(nonce, plain, blob.AsSpan(NonceSize, plain.Length), blob.AsSpan(NonceSize + plain.Length), aad);
        return blob;
    }

    private static string DecryptText(byte[] key, byte[] blob, byte[] aad)
    {
        var plain = new byte[blob.Length - NonceSize - TagSize];
        try
        {
            using var aes = new AesGcm(key, TagSize);
            aes.Decrypt(blob.AsSpan(0, NonceSize), blob.AsSpan(NonceSize, plain.Length), blob.AsSpan(NonceSize + plain.Length), plain, aad);
            return StrictUtf8.GetString(plain);
        }
        catch (AuthenticationTagMismatchException)
        {
            throw VaultErrors.CredentialsTampered();
        }
        catch (DecoderFallbackException)
        {
            // Authentic but not text: only a holder of the key could have made it.
            throw VaultErrors.CredentialsTampered();
        }
        finally
        {
            CryptographicOperations.ZeroMemory(plain);
        }
    }

    private static (int Version, string Header, byte[] Blob) ParseSealed(string sealedValue)
    {
        ArgumentNullException.ThrowIfNull(sealedValue);
        var parts = sealedValue.Split('.');
        if (parts[0] == ExportPrefix)
        {
            throw VaultErrors.InvalidSealed("This is an exported credential string; import it with its passphrase instead.");
        }
        if (parts.Length != 3 || parts[0] != SealedPrefix)
        {
            throw VaultErrors.InvalidSealed($"A sealed credential reads '{SealedPrefix}.<keyVersion>.<data>'.");
        }
        if (!TryParseCanonicalInt(parts[1], allowNegative: true, out var version) || version == 0)
        {
            throw VaultErrors.InvalidSealed("The key version of the sealed credential is not a valid number.");
        }
        var blob = DecodeCanonical(parts[2]);
        if (blob is null || blob.Length < NonceSize + TagSize)
        {
            throw VaultErrors.InvalidSealed("The data of the sealed credential is truncated or not base64url.");
        }
        return (version, $"{parts[0]}.{parts[1]}.", blob);
    }

    private sealed record ExportedParts(int Iterations, byte[] Salt, string AccountId, byte[] Check, byte[] Blob);

    private static ExportedParts ParseExported(string exported)
    {
        if (exported is null)
        {
            throw Errors.Validation("The exported credential string is required.");
        }
        var parts = exported.Trim().Split('.');
        if (parts[0] == SealedPrefix)
        {
            throw VaultErrors.InvalidSealed("This is a credential sealed at rest, not an exported one; only strings from export can be imported.");
        }
        if (parts.Length != 6 || parts[0] != ExportPrefix)
        {
            throw VaultErrors.InvalidSealed($"An exported credential reads '{ExportPrefix}.<iterations>.<salt>.<account>.<check>.<data>'.");
        }
        if (!TryParseCanonicalInt(parts[1], allowNegative: false, out var iterations))
        {
            throw VaultErrors.InvalidSealed("The iteration count of the exported credential is not a valid number.");
        }
        if (iterations is < MinExportIterations or > MaxExportIterations)
        {
            throw VaultErrors.InvalidSealed(
                $"The exported credential asks for {iterations} PBKDF2 iterations; between {MinExportIterations} and {MaxExportIterations} are accepted.");
        }
        var salt = DecodeCanonical(parts[2]);
        var account = DecodeCanonical(parts[3]);
        var check = DecodeCanonical(parts[4]);
        var blob = DecodeCanonical(parts[5]);
        string? accountId = null;
        try
        {
            accountId = account is { Length: > 0 } ? StrictUtf8.GetString(account) : null;
        }
        catch (DecoderFallbackException)
        {
        }
        if (salt?.Length != SaltSize || accountId is null || check?.Length != CheckSize || blob is null || blob.Length < NonceSize + TagSize)
        {
            throw VaultErrors.InvalidSealed("The exported credential is truncated or not base64url.");
        }
        return new ExportedParts(iterations, salt, accountId, check, blob);
    }

    /// <summary>Only the one spelling <see cref="Format"/> produces: no sign for positives, no leading zeros, no spaces.</summary>
    private static bool TryParseCanonicalInt(string text, bool allowNegative, out int value) =>
        int.TryParse(text, allowNegative ? NumberStyles.AllowLeadingSign : NumberStyles.None, CultureInfo.InvariantCulture, out value)
        && Format(value) == text;

    private static string Format(int value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>Base64url without padding, and only the spelling the encoder produces (unused trailing bits are zero).</summary>
    private static byte[]? DecodeCanonical(string text)
    {
        foreach (var c in text)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('-' or '_'))
            {
                return null;
            }
        }
        var bytes = TryDecode(text);
        return bytes is not null && Base64Url.EncodeToString(bytes) == text ? bytes : null;
    }
}
