using System.Net;
using System.Text.Json;
using QrOrleans.Accounts;

namespace QrOrleans.Grains.Connectors.ILink;

/// <summary>Where iLink calls go: the configured base URL, the hosts a login may be redirected to, the account's API host.</summary>
public static class ILinkUrls
{
    /// <summary>The account's <c>connector.baseUrl</c>, or the public iLink host.</summary>
    public static Uri ConfiguredBase(ConnectorContext context)
    {
        if (context.Settings.ValueKind != JsonValueKind.Object
            || !context.Settings.TryGetProperty("baseUrl", out var value)
            || value.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined)
        {
            return ILinkOptions.DefaultBaseUrl;
        }
        if (value.ValueKind == JsonValueKind.String
            && Uri.TryCreate(value.GetString(), UriKind.Absolute, out var uri)
            && uri.Scheme is "https" or "http" && string.IsNullOrEmpty(uri.Query) && string.IsNullOrEmpty(uri.Fragment))
        {
            return WithTrailingSlash(uri);
        }
        throw new PlatformException(ErrorClass.Auth, "invalid_settings",
            "The account's iLink connector baseUrl is not an absolute http(s) URL; fix the connector settings.");
    }

    public static Uri WithTrailingSlash(Uri uri) =>
        uri.AbsolutePath.EndsWith('/') ? uri : new UriBuilder(uri) { Path = uri.AbsolutePath + "/" }.Uri;

    /// <summary>
    /// The host a <c>scaned_but_redirect</c> names, if it may be trusted with the rest of the login (whose
    /// confirmation carries the bot token): the configured host itself on another port, or a sibling under the
    /// configured host's parent domain (ilinkai.weixin.qq.com → *.weixin.qq.com). The scheme never changes.
    /// </summary>
    public static Uri? TrustedRedirect(Uri configured, string? redirectHost)
    {
        if (string.IsNullOrWhiteSpace(redirectHost)
            || !Uri.TryCreate($"{configured.Scheme}://{redirectHost.Trim()}/", UriKind.Absolute, out var target)
            || target.AbsolutePath != "/" || !string.IsNullOrEmpty(target.UserInfo)
            || !string.IsNullOrEmpty(target.Query) || !string.IsNullOrEmpty(target.Fragment))
        {
            return null;
        }
        var host = target.IdnHost.ToLowerInvariant();
        var home = configured.IdnHost.ToLowerInvariant();
        if (host == home)
        {
            return target;
        }
        if (IPAddress.TryParse(home, out _) || IPAddress.TryParse(host, out _))
        {
            return null;
        }
        var labels = home.Split('.');
        if (labels.Length < 3)
        {
            return null; // "example.com": no parent narrower than a public suffix to share
        }
        var parent = string.Join('.', labels[1..]);
        return host.EndsWith("." + parent, StringComparison.Ordinal) ? target : null;
    }

    /// <summary>The account's API host from a confirmation's <c>baseurl</c>: an absolute URL that keeps the scheme's strength.</summary>
    public static Uri AccountBase(Uri pollBase, string? baseurl)
    {
        if (!string.IsNullOrWhiteSpace(baseurl)
            && Uri.TryCreate(baseurl.Trim(), UriKind.Absolute, out var uri)
            && (uri.Scheme == "https" || (uri.Scheme == "http" && pollBase.Scheme == "http"))
            && string.IsNullOrEmpty(uri.UserInfo) && string.IsNullOrEmpty(uri.Query))
        {
            return WithTrailingSlash(uri);
        }
        return pollBase;
    }
}
