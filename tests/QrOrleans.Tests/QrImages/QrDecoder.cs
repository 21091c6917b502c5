using System.Diagnostics;
using QrOrleans.Tests.Browser;

namespace QrOrleans.Tests.QrImages;

/// <summary>
/// Reads QR codes the way an outside scanner would: the image goes to a file and <c>zbarimg</c> (zbar-tools)
/// decodes it. Nothing here knows how the server drew the code.
/// </summary>
public static class QrDecoder
{
    private static readonly TimeSpan ToolTimeout = TimeSpan.FromSeconds(15);

    /// <summary>The text of the one QR code in a PNG (throws if there is none or more than one).</summary>
    public static async Task<string> DecodePngAsync(byte[] png)
    {
        var file = TempFile(".png");
        try
        {
            await File.WriteAllBytesAsync(file, png);
            return await DecodeFileAsync(file);
        }
        finally
        {
            File.Delete(file);
        }
    }

    public static async Task<string> DecodeFileAsync(string path)
    {
        var (exit, stdout, stderr) = await RunAsync("zbarimg", "--raw", "-q", path);
        if (exit != 0)
        {
            throw new Xunit.Sdk.XunitException($"zbarimg found no QR code in {path} (exit {exit}): {stderr}");
        }
        var symbols = stdout.TrimEnd('\r', '\n').Split('\n');
        if (symbols.Length != 1)
        {
            throw new Xunit.Sdk.XunitException($"Expected exactly one QR code in {path}, zbarimg read {symbols.Length}: {stdout}");
        }
        return symbols[0];
    }

    /// <summary>
    /// Rasterises an SVG on a white background: with <c>rsvg-convert</c> (librsvg2-bin) when it is installed,
    /// otherwise by drawing it in headless Chromium and taking a screenshot. <c>QRO_SVG_RENDERER=chromium</c>
    /// forces the browser.
    /// </summary>
    public static async Task<byte[]> SvgToPngAsync(string svg)
    {
        var forceBrowser = Environment.GetEnvironmentVariable("QRO_SVG_RENDERER") == "chromium";
        var rsvg = forceBrowser ? null : FindOnPath("rsvg-convert");
        if (rsvg is null)
        {
            return await RenderSvgInBrowserAsync(svg);
        }
        var input = TempFile(".svg");
        var output = TempFile(".png");
        try
        {
            await File.WriteAllTextAsync(input, svg);
            var (exit, _, stderr) = await RunAsync(rsvg, "--background-color", "white", "--output", output, input);
            if (exit != 0)
            {
                throw new Xunit.Sdk.XunitException($"rsvg-convert failed (exit {exit}): {stderr}");
            }
            return await File.ReadAllBytesAsync(output);
        }
        finally
        {
            File.Delete(input);
            File.Delete(output);
        }
    }

    private static async Task<byte[]> RenderSvgInBrowserAsync(string svg)
    {
        await using var chromium = await Chromium.LaunchAsync();
        var page = await chromium.Browser.NewPageAsync();
        await page.SetContentAsync($"<!doctype html><html><body style=\"margin:0;background:#fff\"><div id=\"box\" style=\"display:inline-block;padding:16px;background:#fff\">{svg}</div></body></html>");
        return await page.Locator("#box").ScreenshotAsync();
    }

    public static string TempFile(string extension) => Path.Combine(Path.GetTempPath(), "qro-" + Guid.NewGuid().ToString("N") + extension);

    private static string? FindOnPath(string tool) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, tool))
            .FirstOrDefault(File.Exists);

    private static async Task<(int Exit, string Stdout, string Stderr)> RunAsync(string tool, params string[] args)
    {
        var start = new ProcessStartInfo(tool)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in args)
        {
            start.ArgumentList.Add(a);
        }
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {tool}.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(ToolTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new Xunit.Sdk.XunitException($"{tool} did not finish within {ToolTimeout.TotalSeconds} s.");
        }
        return (process.ExitCode, await stdout, await stderr);
    }
}
