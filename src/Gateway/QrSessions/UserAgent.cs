using System.Text.RegularExpressions;

namespace QrOrleans.Gateway.QrSessions;

/// <summary>
/// Names the browser (or tool) and OS of a User-Agent well enough for "Chrome on Linux" on the approve
/// screen. Order matters: Edge and Opera also say Chrome, Chrome also says Safari.
/// </summary>
public static partial class UserAgent
{
    public static (string Browser, string Os) Parse(string? ua)
    {
        if (string.IsNullOrWhiteSpace(ua))
        {
            return ("Unknown browser", "unknown OS");
        }
        return (BrowserOf(ua), OsOf(ua));
    }

    private static string BrowserOf(string ua)
    {
        foreach (var (pattern, name) in Browsers)
        {
            var m = pattern.Match(ua);
            if (m.Success)
            {
                return m.Groups.Count > 1 && m.Groups[1].Success ? $"{name} {m.Groups[1].Value}" : name;
            }
        }
        return "Unknown browser";
    }

    private static string OsOf(string ua) => ua switch
    {
        _ when ua.Contains("Windows", StringComparison.Ordinal) => "Windows",
        _ when ua.Contains("iPhone", StringComparison.Ordinal) || ua.Contains("iPad", StringComparison.Ordinal) => "iOS",
        _ when ua.Contains("Android", StringComparison.Ordinal) => "Android",
        _ when ua.Contains("CrOS", StringComparison.Ordinal) => "ChromeOS",
        _ when ua.Contains("Mac OS X", StringComparison.Ordinal) || ua.Contains("Macintosh", StringComparison.Ordinal) => "macOS",
        _ when ua.Contains("Linux", StringComparison.Ordinal) => "Linux",
        _ => "unknown OS",
    };

    private static readonly (Regex Pattern, string Name)[] Browsers =
    [
        (EdgeRegex(), "Edge"),
        (OperaRegex(), "Opera"),
        (FirefoxRegex(), "Firefox"),
        (HeadlessChromeRegex(), "Headless Chrome"),
        (ChromeRegex(), "Chrome"),
        (SafariRegex(), "Safari"),
        (CurlRegex(), "curl"),
        (QrOrleansCliRegex(), "QrOrleans CLI"),
    ];

    [GeneratedRegex(@"Edg(?:e|A|iOS)?/(\d+)")] private static partial Regex EdgeRegex();
    [GeneratedRegex(@"OPR/(\d+)")] private static partial Regex OperaRegex();
    [GeneratedRegex(@"(?:Firefox|FxiOS)/(\d+)")] private static partial Regex FirefoxRegex();
    [GeneratedRegex(@"HeadlessChrome/(\d+)")] private static partial Regex HeadlessChromeRegex();
    [GeneratedRegex(@"(?:Chrome|CriOS|Chromium)/(\d+)")] private static partial Regex ChromeRegex();
    [GeneratedRegex(@"Version/(\d+)[\d.]* .*Safari/")] private static partial Regex SafariRegex();
    [GeneratedRegex(@"^curl/([\d.]+)")] private static partial Regex CurlRegex();
    [GeneratedRegex(@"^qrorleans-cli/([\d.]+)")] private static partial Regex QrOrleansCliRegex();
}
