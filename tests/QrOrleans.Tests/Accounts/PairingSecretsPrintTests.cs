using QrOrleans.Accounts;

namespace QrOrleans.Tests.Accounts;

/// <summary>
/// What a connector hands the account grain during pairing is printed whenever something logs or traces it (records
/// print every member by default, Orleans prints grain answers at Trace): never its live code, handle or credentials.
/// </summary>
public sealed class PairingSecretsPrintTests
{
    [Fact]
    public void A_pairing_code_and_a_confirmed_status_print_without_their_secrets()
    {
        var code = new PairingCode("https://host/l/#session-id.qr-secret-1", DateTimeOffset.UnixEpoch, "qro1.handle-with-desktop-token-and-key");
        var status = new PairingStatus(PairingProgress.Confirmed, "42", "{\"refreshToken\":\"sealed-me\"}");

        var printed = $"{code} {status}";

        Assert.DoesNotContain("qr-secret-1", printed, StringComparison.Ordinal);
        Assert.DoesNotContain("handle-with", printed, StringComparison.Ordinal);
        Assert.DoesNotContain("sealed-me", printed, StringComparison.Ordinal);
        Assert.Contains("Confirmed", printed, StringComparison.Ordinal);
        Assert.Contains("1970-01-01T00:00:00.0000000+00:00", printed, StringComparison.Ordinal);
    }
}
