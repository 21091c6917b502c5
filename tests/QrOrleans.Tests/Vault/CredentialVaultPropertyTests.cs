using FsCheck;
using FsCheck.Fluent;
using QrOrleans.Grains.Vault;

namespace QrOrleans.Tests.Vault;

/// <summary>Any text survives sealing; no single change to a sealed value ever opens.</summary>
public sealed class CredentialVaultPropertyTests
{
    private const string Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";

    private static readonly CredentialVault Vault = CredentialVaultTests.Ring(2, (1, CredentialVault.GenerateKey()), (2, CredentialVault.GenerateKey()));

    /// <summary>Well-formed text: ASCII mostly, then any scalar value of any plane (surrogate pairs included), any length from empty.</summary>
    private static readonly Gen<string> Text =
        Gen.Frequency(
                (3, Gen.Choose(0x20, 0x7E)),
                (1, Gen.Choose(0, 0x10FFFF).Where(cp => cp is < 0xD800 or > 0xDFFF)))
            .ArrayOf()
            .Select(codePoints => string.Concat(codePoints.Select(char.ConvertFromUtf32)));

    [Fact]
    public void Any_text_round_trips()
    {
        Prop.ForAll(Arb.From(Text), plaintext => Vault.Unseal("acct-1", Vault.Seal("acct-1", plaintext)) == plaintext)
            .QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Any_single_byte_corruption_of_the_data_is_credentials_tampered()
    {
        var cases = Gen.Zip(Text, Gen.Zip(Gen.Choose(0, 1_000_000), Gen.Choose(1, 255)));
        Prop.ForAll(Arb.From(cases), c =>
            {
                var (plaintext, (index, xor)) = c;
                var corrupted = CredentialVaultTests.Corrupt(Vault.Seal("acct-1", plaintext), index, (byte)xor);
                return Code(() => Vault.Unseal("acct-1", corrupted)) == "credentials_tampered";
            })
            .QuickCheckThrowOnFailure();
    }

    [Fact]
    public void Any_single_character_change_of_the_string_is_refused()
    {
        var cases = Gen.Zip(Text, Gen.Zip(Gen.Choose(0, 1_000_000), Gen.Choose(1, Alphabet.Length - 1)));
        Prop.ForAll(Arb.From(cases), c =>
            {
                var (plaintext, (position, shift)) = c;
                var sealedValue = Vault.Seal("acct-1", plaintext);
                var i = position % sealedValue.Length;
                var replacement = Alphabet[(Alphabet.IndexOf(sealedValue[i], StringComparison.Ordinal) + shift) % Alphabet.Length];
                var changed = sealedValue[..i] + replacement + sealedValue[(i + 1)..];
                return Code(() => Vault.Unseal("acct-1", changed)) is "credentials_tampered" or "invalid_sealed" or "unknown_key_version";
            })
            .QuickCheckThrowOnFailure();
    }

    /// <summary>The code of the refusal, or null if the call returned (which no property here allows).</summary>
    private static string? Code(Action unseal)
    {
        try
        {
            unseal();
            return null;
        }
        catch (GrainException e)
        {
            return e.Code;
        }
    }
}
