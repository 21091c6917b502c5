using System.Buffers.Text;
using System.Globalization;
using System.Text;
using QrOrleans.Grains.Vault;

namespace QrOrleans.Tests.Vault;

/// <summary>
/// Export/import: a passphrase-protected string that moves between clusters. Each key derivation costs
/// 600,000 PBKDF2 rounds, so the tests share one exported string and derive as few times as they can.
/// </summary>
public sealed class CredentialExportTests
{
    private const string Passphrase = "correct horse battery staple";
    private const string Credentials = "{\"session\":\"s3cr3t-ünïcødé\"}";

    // Both vaults have their own ring: an export opens anywhere with the passphrase alone.
    private static readonly CredentialVault Source = CredentialVaultTests.Ring(1, (1, CredentialVault.GenerateKey()));
    private static readonly CredentialVault OtherCluster = CredentialVaultTests.Ring(7, (7, CredentialVault.GenerateKey()));
    private static readonly Lazy<string> Exported = new(() => Source.Export("acct-1", Credentials, Passphrase));

    [Fact]
    public void Import_on_another_cluster_gives_back_the_credentials()
    {
        Assert.Equal(Credentials, OtherCluster.Import("acct-1", Exported.Value, Passphrase));
    }

    [Fact]
    public void The_exported_string_records_its_work_factor_and_salt_and_hides_the_credentials()
    {
        var parts = Exported.Value.Split('.');

        Assert.Equal(6, parts.Length);
        Assert.Equal("x1", parts[0]);
        Assert.True(int.Parse(parts[1], CultureInfo.InvariantCulture) >= 600_000, parts[1]);
        Assert.Equal(16, Base64Url.DecodeFromChars(parts[2]).Length);
        Assert.Equal("acct-1", Encoding.UTF8.GetString(Base64Url.DecodeFromChars(parts[3])));
        Assert.DoesNotContain("s3cr3t", Exported.Value);
        Assert.DoesNotContain(Passphrase, Exported.Value);
        Assert.All(Exported.Value, c => Assert.True(char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_', $"'{c}' is not URL-safe"));
    }

    [Fact]
    public void Exporting_twice_uses_a_fresh_salt()
    {
        var second = Source.Export("acct-1", Credentials, Passphrase);
        Assert.NotEqual(Exported.Value.Split('.')[2], second.Split('.')[2]);
    }

    [Fact]
    public void A_wrong_passphrase_is_wrong_passphrase_and_is_never_echoed()
    {
        var e = CredentialVaultTests.Refusal(() => OtherCluster.Import("acct-1", Exported.Value, "correct horse battery stapler"));

        Assert.Equal("wrong_passphrase", e.Code);
        Assert.Equal(422, e.Status);
        Assert.DoesNotContain("stapler", e.ToString());
    }

    [Fact]
    public void The_same_passphrase_typed_in_another_unicode_normalization_opens_it()
    {
        const string composed = "crème brûlée à la carte";
        var exported = Source.Export("acct-1", "secret", composed);
        Assert.Equal("secret", OtherCluster.Import("acct-1", exported, composed.Normalize(NormalizationForm.FormD)));
    }

    [Fact]
    public void Importing_into_another_account_is_wrong_account()
    {
        var e = CredentialVaultTests.Refusal(() => OtherCluster.Import("acct-2", Exported.Value, Passphrase));

        Assert.Equal("wrong_account", e.Code);
        Assert.Equal(422, e.Status);
    }

    [Fact]
    public void Relabelling_the_account_inside_the_string_is_detected()
    {
        var parts = Exported.Value.Split('.');
        parts[3] = Base64Url.EncodeToString("acct-2"u8);

        var e = CredentialVaultTests.Refusal(() => OtherCluster.Import("acct-2", string.Join('.', parts), Passphrase));

        Assert.Equal("credentials_tampered", e.Code);
    }

    [Fact]
    public void Altered_data_is_credentials_tampered()
    {
        var e = CredentialVaultTests.Refusal(() => OtherCluster.Import("acct-1", CredentialVaultTests.Corrupt(Exported.Value, 20, 0x04), Passphrase));

        Assert.Equal("credentials_tampered", e.Code);
    }

    [Theory]
    [InlineData("")]
    [InlineData("short pass")]        // 10 characters
    [InlineData("😀😀😀😀😀😀😀😀😀😀😀")] // 11 characters, 22 UTF-16 units
    public void Export_needs_a_passphrase_of_at_least_12_characters(string passphrase)
    {
        var e = CredentialVaultTests.Refusal(() => Source.Export("acct-1", "secret", passphrase));

        Assert.Equal("validation_failed", e.Code);
        Assert.Equal(400, e.Status);
    }

    [Fact]
    public void Import_without_a_passphrase_is_validation_failed()
    {
        Assert.Equal("validation_failed", CredentialVaultTests.Refusal(() => OtherCluster.Import("acct-1", Exported.Value, "")).Code);
    }

    public static TheoryData<string> NotExports() => new(
        "",
        "garbage",
        "v1.1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", // sealed at rest, not exported
        "x1.600000.AAAAAAAAAAAAAAAAAAAAAA.YQ.AAAAAAAAAAAAAAAAAAAAAA",
        "x1.600000.AAAA.YQ.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", // 3-byte salt
        "x1.1000.AAAAAAAAAAAAAAAAAAAAAA.YQ.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", // too few iterations
        "x1.2000000000.AAAAAAAAAAAAAAAAAAAAAA.YQ.AAAAAAAAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"); // a crafted work factor

    [Theory]
    [MemberData(nameof(NotExports))]
    public void A_string_that_is_not_an_export_is_invalid_sealed_before_any_key_derivation(string value)
    {
        var e = CredentialVaultTests.Refusal(() => OtherCluster.Import("a", value, Passphrase));

        Assert.Equal("invalid_sealed", e.Code);
        Assert.Equal(400, e.Status);
    }
}
