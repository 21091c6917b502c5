using System.Net.Sockets;
using System.Text;

namespace QrOrleans.Tests.Fuzz;

/// <summary>
/// One request exactly as it goes on the wire: the request line's target is sent byte for byte (no client
/// normalises <c>%2e%2e%2f</c> or rejects a NUL), header values go out as UTF-8, the body as given.
/// </summary>
/// <param name="ServerMayRefuse">The request breaks a limit Kestrel enforces before the app runs (header size, request
/// line, non-ASCII header bytes, host): Kestrel's own bare 400/414/431 is then an acceptable answer.</param>
public sealed record FuzzRequest(
    string Method, string Target, IReadOnlyList<KeyValuePair<string, string>> Headers, byte[] Body, bool ServerMayRefuse = false)
{
    /// <summary>Method, target, headers and the start of the body, each cut short: enough to read and to rebuild the case.</summary>
    public string Describe()
    {
        var text = new StringBuilder();
        text.Append(Method).Append(' ').Append(Cut(Target, 300)).Append('\n');
        foreach (var (name, value) in Headers)
        {
            text.Append("  ").Append(name).Append(": ").Append(Cut(Escape(value), 200)).Append('\n');
        }
        text.Append("  body (").Append(Body.Length).Append(" bytes): ").Append(Cut(Escape(Encoding.UTF8.GetString(Body, 0, Math.Min(Body.Length, 400))), 300));
        return text.ToString();
    }

    private static string Cut(string value, int max) => value.Length <= max ? value : $"{value[..max]}… ({value.Length} chars)";

    private static string Escape(string value)
    {
        var text = new StringBuilder(value.Length);
        foreach (var c in value)
        {
            text.Append(c is < ' ' or '\u007f' ? $"\\x{(int)c:x2}" : c.ToString());
        }
        return text.ToString();
    }
}

/// <summary>What came back; <see cref="Streaming"/> when the headers came but the body had not ended by the deadline.</summary>
public sealed record FuzzResponse(int Status, IReadOnlyDictionary<string, string> Headers, byte[] Body, bool Streaming)
{
    public string? Header(string name) => Headers.TryGetValue(name, out var value) ? value : null;

    public string? MediaType => Header("Content-Type")?.Split(';')[0].Trim().ToLowerInvariant();

    public string BodyText => Encoding.UTF8.GetString(Body);
}

/// <summary>A minimal HTTP/1.1 client over a socket, one connection per request (Connection: close).</summary>
public static class RawHttp
{
    /// <summary>The answer, or null when no status line came within <paramref name="firstByte"/>.</summary>
    public static async Task<FuzzResponse?> SendAsync(Uri server, FuzzRequest request, TimeSpan firstByte, TimeSpan rest)
    {
        using var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync(server.Host, server.Port);
        var stream = tcp.GetStream();
        var head = new StringBuilder();
        head.Append(request.Method).Append(' ').Append(request.Target).Append(" HTTP/1.1\r\n");
        if (!request.Headers.Any(h => h.Key.Equals("Host", StringComparison.OrdinalIgnoreCase)))
        {
            head.Append("Host: ").Append(server.Authority).Append("\r\n");
        }
        foreach (var (name, value) in request.Headers)
        {
            head.Append(name).Append(": ").Append(value).Append("\r\n");
        }
        if (request.Body.Length > 0 || request.Method is "POST" or "PUT" or "PATCH")
        {
            head.Append("Content-Length: ").Append(request.Body.Length).Append("\r\n");
        }
        head.Append("Connection: close\r\n\r\n");
        try
        {
            await stream.WriteAsync(Encoding.UTF8.GetBytes(head.ToString()));
            await stream.WriteAsync(request.Body);
            await stream.FlushAsync();
        }
        catch (IOException)
        {
            // The server may answer and close before it read everything (413): read what it said.
        }

        var received = new MemoryStream();
        var buffer = new byte[16 * 1024];
        var headerEnd = -1;
        using var deadline = new CancellationTokenSource(firstByte);
        try
        {
            while (true)
            {
                var n = await stream.ReadAsync(buffer, deadline.Token);
                if (n == 0)
                {
                    break;
                }
                received.Write(buffer, 0, n);
                if (headerEnd < 0 && (headerEnd = IndexOf(received.GetBuffer(), (int)received.Length, "\r\n\r\n"u8)) >= 0)
                {
                    // The head is in: the rest of the answer gets its own, shorter allowance (a stream never ends).
                    deadline.CancelAfter(rest);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            // deadline, or a reset after the answer
        }
        if (headerEnd < 0)
        {
            headerEnd = IndexOf(received.GetBuffer(), (int)received.Length, "\r\n\r\n"u8);
            if (headerEnd < 0)
            {
                return null;
            }
        }
        var bytes = received.ToArray();
        var lines = Encoding.Latin1.GetString(bytes, 0, headerEnd).Split("\r\n");
        var status = int.Parse(lines[0].Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture);
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var line in lines.Skip(1))
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon > 0)
            {
                var name = line[..colon].Trim();
                var value = line[(colon + 1)..].Trim();
                headers[name] = headers.TryGetValue(name, out var before) ? before + ", " + value : value;
            }
        }
        var body = bytes[(headerEnd + 4)..];
        var ended = !deadline.IsCancellationRequested;
        if (headers.TryGetValue("Transfer-Encoding", out var te) && te.Contains("chunked", StringComparison.OrdinalIgnoreCase))
        {
            body = Dechunk(body, out var complete);
            ended &= complete;
        }
        else if (headers.TryGetValue("Content-Length", out var length) && int.TryParse(length, out var l))
        {
            ended = body.Length >= l;
            body = body[..Math.Min(l, body.Length)];
        }
        return new FuzzResponse(status, headers, body, Streaming: !ended);
    }

    private static byte[] Dechunk(byte[] body, out bool complete)
    {
        var output = new MemoryStream();
        var at = 0;
        complete = false;
        while (at < body.Length)
        {
            var lineEnd = body.AsSpan(at).IndexOf("\r\n"u8);
            if (lineEnd < 0)
            {
                break;
            }
            var sizeText = Encoding.ASCII.GetString(body, at, lineEnd).Split(';')[0];
            if (!int.TryParse(sizeText, System.Globalization.NumberStyles.HexNumber, null, out var size))
            {
                break;
            }
            at += lineEnd + 2;
            if (size == 0)
            {
                complete = true;
                break;
            }
            var take = Math.Min(size, body.Length - at);
            output.Write(body, at, take);
            at += size + 2;
        }
        return output.ToArray();
    }

    private static int IndexOf(byte[] data, int length, ReadOnlySpan<byte> what) => data.AsSpan(0, length).IndexOf(what);
}
