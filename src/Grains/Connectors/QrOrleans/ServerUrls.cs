using System.Text.Json;
using QrOrleans.Accounts;

namespace QrOrleans.Grains.Connectors.QrOrleansServer;

internal static class ServerUrls
{
    /// <summary>The account's <c>connector.serverUrl</c>, else the connector's default (this cluster).</summary>
    public static Uri Configured(ConnectorContext context, Uri? fallback)
    {
        if (context.Settings.ValueKind == JsonValueKind.Object
            && context.Settings.TryGetProperty("serverUrl", out var value)
            && value.ValueKind is not (JsonValueKind.Null or JsonValueKind.Undefined))
        {
            return value.ValueKind == JsonValueKind.String && TryParse(value.GetString(), out var configured)
                ? configured
                : throw new PlatformException(ErrorClass.Auth, "invalid_settings",
                    "The account's qrorleans connector serverUrl is not an absolute http(s) URL; fix the connector settings.");
        }
        return fallback is not null && TryParse(fallback.ToString(), out var server)
            ? server
            : throw new PlatformException(ErrorClass.Auth, "invalid_settings",
                "The account's qrorleans connector has no serverUrl and this cluster's own address is not known yet.");
    }

    public static bool TryParse(string? value, out Uri server)
    {
        server = null!;
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http")
            || !string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.Fragment))
        {
            return false;
        }
        server = WithTrailingSlash(uri);
        return true;
    }

    /// <summary>Relative paths ("v1/…") then resolve under a server mounted below a path prefix too.</summary>
    public static Uri WithTrailingSlash(Uri uri) =>
        uri.AbsolutePath.EndsWith('/') ? uri : new UriBuilder(uri) { Path = uri.AbsolutePath + "/" }.Uri;
}
