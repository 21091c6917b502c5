using System.Security.Cryptography;
using System.Text;

namespace QrOrleans.Grains;

/// <summary>Server-generated identifiers and secrets, and the hashes that are stored instead of them.</summary>
public static class Secrets
{
    /// <summary>A URL-safe random string of <paramref name="bytes"/> bytes from the CSPRNG.</summary>
    public static string NewToken(int bytes) => Base64Url(RandomNumberGenerator.GetBytes(bytes));

    /// <summary>Lower-case hex of <paramref name="bytes"/> random bytes (ids that must not contain '-' or '.').</summary>
    public static string NewHexId(int bytes) => Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(bytes));

    public static string Hash(string secret) => Base64Url(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));

    public static bool MatchesHash(string secret, string storedHash) =>
        CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Hash(secret)), Encoding.ASCII.GetBytes(storedHash));

    public static bool FixedTimeEquals(string a, string b) =>
        CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(a), Encoding.UTF8.GetBytes(b));

    public static string Base64Url(ReadOnlySpan<byte> bytes) =>
        Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
