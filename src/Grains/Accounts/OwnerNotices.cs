using QRCoder;
using QrOrleans.Accounts;

namespace QrOrleans.Grains.Accounts;

/// <summary>How notices read to the account's owner: captions, platform names, the QR image.</summary>
public static class OwnerNotices
{
    public static string PlatformName(string platform) => platform switch
    {
        Platforms.ILink => "WeChat",
        Platforms.QrOrleans => "QrOrleans",
        Platforms.Sandbox => "Sandbox",
        _ => platform,
    };

    /// <summary>e.g. "Scan within 30 s to link support-bot to WeChat — code 2 of 3".</summary>
    public static string Caption(string displayName, string platform, int seconds, int cycle, int maxCycles) =>
        $"Scan within {seconds} s to link {displayName} to {PlatformName(platform)} — code {cycle} of {maxCycles}";

    public static string QrPngBase64(string content)
    {
        using var data = QRCodeGenerator.GenerateQrCode(content, QRCodeGenerator.ECCLevel.M);
        return Convert.ToBase64String(new PngByteQRCode(data).GetGraphic(6));
    }

    public static string RePair(string accountId) => $"re-pair with POST /v1/accounts/{accountId}/pair";
}
