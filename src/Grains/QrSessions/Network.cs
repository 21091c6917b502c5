using System.Net;
using System.Net.Sockets;

namespace QrOrleans.Grains.QrSessions;

/// <summary>Whether two client addresses look like the same network: the same IPv4 /24 or IPv6 /64.</summary>
public static class Network
{
    public static bool Same(string a, string b)
    {
        if (!IPAddress.TryParse(a, out var x) || !IPAddress.TryParse(b, out var y))
        {
            return false;
        }
        if (x.IsIPv4MappedToIPv6) { x = x.MapToIPv4(); }
        if (y.IsIPv4MappedToIPv6) { y = y.MapToIPv4(); }
        if (IPAddress.IsLoopback(x) && IPAddress.IsLoopback(y))
        {
            return true;
        }
        if (x.AddressFamily != y.AddressFamily)
        {
            return false;
        }
        var prefixBytes = x.AddressFamily == AddressFamily.InterNetwork ? 3 : 8;
        return x.GetAddressBytes().AsSpan(0, prefixBytes).SequenceEqual(y.GetAddressBytes().AsSpan(0, prefixBytes));
    }
}
