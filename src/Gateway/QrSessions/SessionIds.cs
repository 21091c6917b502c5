namespace QrOrleans.Gateway.QrSessions;

/// <summary>Shape checks for ids and QR tokens before anything reaches a grain.</summary>
public static class SessionIds
{
    /// <summary>Session ids and QR secrets are 16 random bytes, base64url without padding: 22 characters.</summary>
    public static bool IsWellFormed(string? value) =>
        value is { Length: 22 } && value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_');

    /// <summary>
    /// Splits "sessionId.secret" taken from a scanned URL or given as is. The URL holds it in its fragment,
    /// …/l/#&lt;token&gt; (API.md); …/l/&lt;token&gt; in the path is the earlier shape, still printed on codes made before
    /// an upgrade.
    /// </summary>
    public static bool TryParseQr(string? urlOrToken, out string sessionId, out string secret)
    {
        sessionId = secret = "";
        if (string.IsNullOrEmpty(urlOrToken) || urlOrToken.Length > 512)
        {
            return false;
        }
        var token = urlOrToken;
        var marker = urlOrToken.LastIndexOf("/l/", StringComparison.Ordinal);
        if (marker >= 0)
        {
            token = urlOrToken[(marker + 3)..];
        }
        else if (urlOrToken.Contains('/', StringComparison.Ordinal))
        {
            return false;
        }
        if (token.StartsWith('#'))
        {
            token = token[1..]; // the fragment, as location.hash gives it
        }
        var parts = token.Split('.');
        if (parts.Length != 2 || !IsWellFormed(parts[0]) || !IsWellFormed(parts[1]))
        {
            return false;
        }
        (sessionId, secret) = (parts[0], parts[1]);
        return true;
    }
}
