using System.Buffers.Text;
using System.Globalization;
using System.Text;
using QrOrleans.Grains.Vault;

namespace QrOrleans.Tests.Vault;

/// <summary>Sealing at rest: what a stored credential survives, and what it refuses with which code.</summary>
public sealed class CredentialVaultTests
{
    private static readonly string Key1 = CredentialVault.GenerateKey();
    private static readonly string Key2 = CredentialVault.GenerateKey();

    internal static CredentialVault Ring(int current, params (int Version, string Key)[] keys) =>
        new(new VaultOptions { Keys = keys.ToDictionary(k => k.Version.ToString(CultureInfo.InvariantCulture), k => k.Key), CurrentVersion = current });

    private static CredentialVault V1() => Ring(1, (1, Key1));

    internal static GrainException Refusal(Action action) => Assert.Throws<GrainException>(action);

    /// <summary>The sealed string with one byte of its nonce|ciphertext|tag changed.</summary>
    internal static string Corrupt(string sealedValue, int index, byte xor)
    {
        var cut = sealedValue.LastIndexOf('.') + 1;
        var blob = Base64Url.DecodeFromChars(sealedValue.AsSpan(cut));
        blob[index % blob.Length] ^= xor;
        return sealedValue[..cut] + Base64Url.EncodeToString(blob);
    }

    [Theory]
    [InlineData("")]
    [InlineData("session-token-0123456789")]
    [InlineData("{\"cookie\":\"ünïcødé 😀 字\",\"n\":1}")]
    public void Unsealing_gives_back_what_was_sealed(string plaintext)
    {
        var vault = V1();
        Assert.Equal(plaintext, vault.Unseal("acct-1", vault.Seal("acct-1", plaintext)));
    }

    [Fact]
    public void Sealing_twice_gives_different_strings_under_the_current_version()
    {
        var vault = V1();
        var a = vault.Seal("acct-1", "same secret");
        var b = vault.Seal("acct-1", "same secret");

        Assert.NotEqual(a, b); // a fresh nonce each time
        Assert.NotEqual(a.Split('.')[2][..16], b.Split('.')[2][..16]);
        Assert.StartsWith("v1.1.", a);
        Assert.DoesNotContain("same secret", a);
        Assert.All(a, c => Assert.True(char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_', $"'{c}' is not URL-safe"));
    }

    [Theory]
    [InlineData(0)]  // nonce
    [InlineData(12)] // ciphertext
    [InlineData(-1)] // tag
    public void A_flipped_byte_is_credentials_tampered(int index)
    {
        var vault = V1();
        var sealedValue = vault.Seal("acct-1", "secret credentials");
        var blobLength = 12 + "secret credentials".Length + 16;

        var e = Refusal(() => vault.Unseal("acct-1", Corrupt(sealedValue, index < 0 ? blobLength - 1 : index, 0x01)));

        Assert.Equal("credentials_tampered", e.Code);
        Assert.Equal(422, e.Status);
        Assert.DoesNotContain("secret credentials", e.ToString());
    }

    [Fact]
    public void Credentials_moved_to_another_account_do_not_open()
    {
        var vault = V1();
        var sealedValue = vault.Seal("acct-1", "secret");

        Assert.Equal("credentials_tampered", Refusal(() => vault.Unseal("acct-2", sealedValue)).Code);
        Assert.Equal("credentials_tampered", Refusal(() => vault.Unseal("acct-1x", sealedValue)).Code);
    }

    [Fact]
    public void A_key_version_the_ring_does_not_have_is_unknown_key_version()
    {
        var sealedUnderV2 = Ring(2, (2, Key2)).Seal("acct-1", "secret");

        var e = Refusal(() => V1().Unseal("acct-1", sealedUnderV2));

        Assert.Equal("unknown_key_version", e.Code);
        Assert.Equal(422, e.Status);
        Assert.Contains("key version 2", e.Detail);
        Assert.DoesNotContain(Key1, e.ToString());
    }

    [Fact]
    public void Relabelling_the_key_version_is_detected()
    {
        var ring = Ring(2, (1, Key1), (2, Key2));
        var relabelled = "v1.1." + ring.Seal("acct-1", "secret")["v1.2.".Length..];

        Assert.Equal("credentials_tampered", Refusal(() => ring.Unseal("acct-1", relabelled)).Code);
    }

    public static TheoryData<string> Malformed()
    {
        var data = Base64Url.EncodeToString(new byte[34]); // long enough for nonce, data and tag
        var good = "v1.1." + data;
        return new TheoryData<string>(
            "",
            "garbage",
            "v1",
            "v1.1",
            "v1.1.",
            "v1.1.AAAA",                           // shorter than nonce + tag
            $"v1.1.{data[..20]}",                   // truncated
            $"v2.1.{data}",                         // unknown format version
            $"v1.x.{data}",
            $"v1.01.{data}",                        // non-canonical number
            $"v1.+1.{data}",
            $"v1.0.{data}",
            $"v1.1.{data}=",                        // padding is not part of the format
            $"v1.1.{data[..^1]}*",
            $"v1.1.{data}.extra",
            $" {good}",
            "x1.600000.AAAA.AAAA.AAAA.AAAA");       // an exported string is not a sealed one
    }

    [Theory]
    [MemberData(nameof(Malformed))]
    public void A_string_that_is_not_a_sealed_value_is_invalid_sealed(string value)
    {
        var e = Refusal(() => V1().Unseal("acct-1", value));

        Assert.Equal("invalid_sealed", e.Code);
        Assert.Equal(400, e.Status);
    }

    [Fact]
    public void A_non_canonical_spelling_of_the_same_bytes_is_refused()
    {
        // 29 bytes (nonce, "x", tag): the last base64 character carries 2 unused bits, which a lenient decoder
        // would ignore; the canonical character has them zero, the next one in the alphabet does not.
        var vault = V1();
        var sealedValue = vault.Seal("acct-1", "x");
        const string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        var sibling = sealedValue[..^1] + alphabet[alphabet.IndexOf(sealedValue[^1], StringComparison.Ordinal) + 1];

        Assert.Equal("invalid_sealed", Refusal(() => vault.Unseal("acct-1", sibling)).Code);
    }

    [Fact]
    public void A_plaintext_that_is_not_text_is_refused_without_being_quoted()
    {
        var e = Assert.Throws<ArgumentException>(() => V1().Seal("acct-1", "abc\uD800def"));
        Assert.DoesNotContain("abc", e.Message);
    }

    [Fact]
    public void Rotation_moves_credentials_to_the_new_key_so_the_old_one_can_leave()
    {
        var sealedUnderV1 = V1().Seal("acct-1", "secret");
        var both = Ring(2, (1, Key1), (2, Key2));

        Assert.True(both.NeedsResealing(sealedUnderV1));
        Assert.Equal("secret", both.Unseal("acct-1", sealedUnderV1)); // old values keep working meanwhile

        var resealed = both.Reseal("acct-1", sealedUnderV1);

        Assert.StartsWith("v1.2.", resealed);
        Assert.False(both.NeedsResealing(resealed));
        Assert.Same(resealed, both.Reseal("acct-1", resealed));
        Assert.Equal("secret", both.Unseal("acct-1", resealed));
        var onlyV2 = Ring(2, (2, Key2));
        Assert.Equal("secret", onlyV2.Unseal("acct-1", resealed));
        Assert.Equal("unknown_key_version", Refusal(() => onlyV2.Unseal("acct-1", sealedUnderV1)).Code);
    }

    [Fact]
    public void A_node_not_yet_rotated_leaves_values_under_a_newer_key_alone()
    {
        var sealedUnderV2 = Ring(2, (1, Key1), (2, Key2)).Seal("acct-1", "secret");
        var notRotated = Ring(1, (1, Key1), (2, Key2));

        Assert.False(notRotated.NeedsResealing(sealedUnderV2));
        Assert.Equal("secret", notRotated.Unseal("acct-1", sealedUnderV2));
    }

    [Fact]
    public void Reseal_reports_each_credential_and_a_bad_one_does_not_stop_the_others()
    {
        var v1 = V1();
        var both = Ring(2, (1, Key1), (2, Key2));
        var old = v1.Seal("a", "secret-a");
        var current = both.Seal("b", "secret-b");
        var tampered = Corrupt(v1.Seal("c", "secret-c"), 20, 0x80);
        var foreign = Ring(3, (3, CredentialVault.GenerateKey())).Seal("d", "secret-d");

        var results = VaultRotation.Reseal(both, [new("a", old), new("b", current), new("c", tampered), new("d", foreign), new("e", "garbage")]).ToList();

        (string, ResealOutcome, string?)[] expected =
        [
            ("a", ResealOutcome.Resealed, null), ("b", ResealOutcome.Unchanged, null), ("c", ResealOutcome.Failed, "credentials_tampered"),
            ("d", ResealOutcome.Unchanged, null), ("e", ResealOutcome.Failed, "invalid_sealed"),
        ];
        Assert.Equal(expected, results.Select(r => (r.AccountId, r.Outcome, r.ErrorCode)));
        Assert.Equal("secret-a", Ring(2, (2, Key2)).Unseal("a", results[0].Sealed));
        Assert.Same(current, results[1].Sealed);
        Assert.Same(tampered, results[2].Sealed); // a failure changes nothing
        Assert.Equal("garbage", results[4].Sealed);
    }

    [Fact]
    public async Task ResealAsync_streams_the_same_results()
    {
        var both = Ring(2, (1, Key1), (2, Key2));
        var results = new List<ResealResult>();
        await foreach (var r in VaultRotation.ResealAsync(both, Stored([new("a", V1().Seal("a", "s")), new("b", both.Seal("b", "s"))]), TestContext.Current.CancellationToken))
        {
            results.Add(r);
        }

        Assert.Equal(new[] { ResealOutcome.Resealed, ResealOutcome.Unchanged }, results.Select(r => r.Outcome));
        Assert.Equal("s", both.Unseal("a", results[0].Sealed));

        static async IAsyncEnumerable<SealedCredential> Stored(SealedCredential[] items)
        {
            foreach (var item in items)
            {
                await Task.Yield();
                yield return item;
            }
        }
    }

    [Fact]
    public void Without_keys_the_vault_is_ephemeral_and_its_values_die_with_it()
    {
        var firstRun = new CredentialVault(new VaultOptions());
        var sealedValue = firstRun.Seal("acct-1", "secret");

        Assert.True(firstRun.IsEphemeral);
        Assert.Equal("secret", firstRun.Unseal("acct-1", sealedValue));
        // What the hosts say at start-up about it (VaultStartupWarningTests): the consequence and the fix.
        Assert.Contains("will not survive a restart", CredentialVault.EphemeralKeyWarning);
        Assert.Contains("QrOrleans:Vault:Keys:1=", CredentialVault.EphemeralKeyWarning);
        Assert.Contains("QrOrleans:Vault:CurrentVersion=1", CredentialVault.EphemeralKeyWarning);

        var secondRun = new CredentialVault(new VaultOptions());
        var e = Refusal(() => secondRun.Unseal("acct-1", sealedValue));
        Assert.Equal("unknown_key_version", e.Code);
        Assert.Contains("ephemeral", e.Detail);

        var configured = V1();
        Assert.True(configured.NeedsResealing(sealedValue)); // surfaces in a rotation run as unknown_key_version
        Assert.Equal("unknown_key_version", VaultRotation.Reseal(configured, new SealedCredential("acct-1", sealedValue)).ErrorCode);
    }

    [Fact]
    public void Configured_keys_are_not_ephemeral()
    {
        var vault = new CredentialVault(new VaultOptions { Keys = { ["1"] = Key1 }, CurrentVersion = 1 });

        Assert.False(vault.IsEphemeral);
        Assert.Equal(1, vault.CurrentVersion);
    }

    [Fact]
    public void Keys_are_accepted_in_either_base64_alphabet()
    {
        var urlSafe = Key1.TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var sealedValue = V1().Seal("acct-1", "secret");

        Assert.Equal("secret", Ring(1, (1, urlSafe)).Unseal("acct-1", sealedValue));
    }

    [Fact]
    public void Generated_keys_are_fresh_32_byte_base64_keys()
    {
        var a = CredentialVault.GenerateKey();
        Assert.Equal(32, Convert.FromBase64String(a).Length);
        Assert.NotEqual(a, CredentialVault.GenerateKey());
    }

    public static TheoryData<string, int, string> Misconfigurations() => new()
    {
        { "1", 1, Convert.ToBase64String(new byte[16]) }, // AES-128 sized
        { "1", 1, "not base64 at all!" },
        { "1", 1, "" },
        { "one", 1, Key1 },
        { "0", 0, Key1 },
        { "1", 2, Key1 }, // current version not in the ring
        { "1", 0, Key1 }, // keys but no current version
    };

    [Theory]
    [MemberData(nameof(Misconfigurations))]
    public void A_misconfigured_ring_fails_at_start_without_quoting_the_key(string version, int current, string key)
    {
        var e = Assert.Throws<InvalidOperationException>(() => new CredentialVault(new VaultOptions { Keys = { [version] = key }, CurrentVersion = current }));

        Assert.Contains("QrOrleans:Vault:", e.Message);
        if (key.Length > 0)
        {
            Assert.DoesNotContain(key, e.Message);
        }
    }

    [Fact]
    public void A_current_version_without_any_key_is_a_missing_secret_not_an_ephemeral_vault()
    {
        var e = Assert.Throws<InvalidOperationException>(() => new CredentialVault(new VaultOptions { CurrentVersion = 3 }));
        Assert.Contains("no key is configured", e.Message);
    }

    [Fact]
    public void A_duplicate_key_version_is_refused()
    {
        var options = new VaultOptions { Keys = { ["1"] = Key1, ["01"] = Key2 }, CurrentVersion = 1 };
        Assert.Throws<InvalidOperationException>(() => new CredentialVault(options));
    }

    [Fact]
    public void Export_iterations_below_the_floor_are_refused()
    {
        Assert.Throws<InvalidOperationException>(() => new CredentialVault(new VaultOptions { ExportIterations = 100_000 }));
    }
}
