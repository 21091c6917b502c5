using QRCoder;

namespace QrOrleans.Cli.Login;

/// <summary>
/// A QR code drawn with half blocks (two modules per character row), so a 41-module code fits in about 25 lines.
/// Light modules are drawn in the foreground colour, which suits the usual light-on-dark terminal; <c>--invert</c>
/// suits dark-on-light ones.
/// </summary>
public static class TerminalQr
{
    public static string Render(string content, bool invert)
    {
        using var data = QRCodeGenerator.GenerateQrCode(content, QRCodeGenerator.ECCLevel.L);
        return new AsciiQRCode(data).GetGraphicSmall(drawQuietZones: true, invert: invert, endOfLine: Environment.NewLine);
    }
}
