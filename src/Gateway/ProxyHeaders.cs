using System.Net;
using ForwardedHeaders = Microsoft.AspNetCore.HttpOverrides.ForwardedHeaders;

namespace QrOrleans.Gateway;

/// <summary>
/// The client's address and scheme behind a reverse proxy: <c>X-Forwarded-For</c> and <c>X-Forwarded-Proto</c> are
/// honoured only on a request whose peer is one of <c>QrOrleans:ForwardedHeaders:KnownProxies</c> (IP addresses) or
/// <c>:KnownNetworks</c> (CIDR). Everything that shows or limits by client address (the requester IP on the phone,
/// the same-network hint, the audit trail, the per-IP rate limits) reads <c>Connection.RemoteIpAddress</c>, which
/// the middleware rewrites only then.
/// </summary>
public static class ProxyHeaders
{
    public static WebApplication UseQrForwardedHeaders(this WebApplication app)
    {
        var section = app.Configuration.GetSection("QrOrleans:ForwardedHeaders");
        var proxies = section.GetSection("KnownProxies").Get<string[]>() ?? [];
        var networks = section.GetSection("KnownNetworks").Get<string[]>() ?? [];
        if (proxies.Length == 0 && networks.Length == 0)
        {
            // The middleware with both lists empty trusts every peer: with no proxy configured, it must not run.
            return app;
        }

        var options = new ForwardedHeadersOptions { ForwardedHeaders = ForwardedHeaders.XForwardedFor | ForwardedHeaders.XForwardedProto };
        // ASP.NET Core trusts loopback by default: only what the operator lists is a proxy.
        options.KnownProxies.Clear();
        options.KnownIPNetworks.Clear();
        foreach (var proxy in proxies)
        {
            options.KnownProxies.Add(IPAddress.TryParse(proxy, out var ip)
                ? ip
                : throw new InvalidOperationException($"QrOrleans:ForwardedHeaders:KnownProxies: '{proxy}' is not an IP address."));
        }
        foreach (var network in networks)
        {
            options.KnownIPNetworks.Add(IPNetwork.TryParse(network, out var cidr)
                ? cidr
                : throw new InvalidOperationException($"QrOrleans:ForwardedHeaders:KnownNetworks: '{network}' is not a CIDR range (e.g. 10.0.0.0/8)."));
        }
        app.UseForwardedHeaders(options);
        return app;
    }

    /// <summary>The client's address as the audit trail and the phone show it (IPv4 without its IPv6 mapping).</summary>
    public static string ClientIp(this HttpContext context)
    {
        var ip = context.Connection.RemoteIpAddress;
        if (ip is null)
        {
            return "unknown";
        }
        return (ip.IsIPv4MappedToIPv6 ? ip.MapToIPv4() : ip).ToString();
    }
}
