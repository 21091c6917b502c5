using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using QrOrleans.Cli.Hosting;

namespace QrOrleans.Cli.Webhooks;

/// <summary>
/// <c>qrorleans webhooks listen</c>: an account owner's webhook endpoint on 127.0.0.1, so that the agent fleet can be
/// tried on one machine without an outside receiver. It checks each delivery's signature as API.md defines it
/// (<c>X-QrOrleans-Signature: sha256=&lt;hex HMAC-SHA256 of the raw body with webhookSecret&gt;</c>) and prints it.
/// </summary>
public static class WebhooksCommands
{
    public const int DefaultPort = 5099;
    public const string SecretVariable = "QRORLEANS_WEBHOOK_SECRET";

    /// <summary>Longer string values (the QR code's PNG) are shortened when printed, unless <c>--full</c>.</summary>
    private const int LongString = 120;

    /// <summary>A delivery is a small JSON document; anything far bigger is not one of ours.</summary>
    private const int MaxBodyBytes = 1 << 20;

    private static readonly TimeSpan ReadTimeout = TimeSpan.FromSeconds(10);

    public static Command Build(CliEnvironment environment, TextWriter output, TextWriter error)
    {
        var port = new Option<int>("--port")
        {
            Description = $"The port on 127.0.0.1 to listen on (0: any free port, printed)",
            DefaultValueFactory = _ => DefaultPort,
        };
        var secret = new Option<string?>("--secret")
        {
            Description = $"The account's owner.webhookSecret, 16 to 256 characters (default: ${SecretVariable}, else a random one, printed)",
        };
        var full = new Option<bool>("--full") { Description = $"Print string values longer than {LongString} characters whole (the QR code's PNG)" };
        var listen = new Command("listen",
            "Receive owner webhooks on http://127.0.0.1:<port>/: print each delivery signed with the secret (answered 204), refuse any other (401).")
        {
            port, secret, full,
        };
        listen.SetAction(async (parsed, ct) =>
        {
            try
            {
                var given = parsed.GetValue(secret) is { Length: > 0 } s ? s : environment.Variables(SecretVariable);
                return await ListenAsync(parsed.GetValue(port), given, parsed.GetValue(full), output, ct);
            }
            catch (CliFailure e)
            {
                await error.WriteLineAsync($"error: {e.Message}");
                return e.ExitCode;
            }
        });
        return new Command("webhooks", "Owner webhooks of the agent fleet.") { listen };
    }

    /// <summary>Runs until <paramref name="ct"/> is cancelled (Ctrl+C), then exits 130 like every interrupted command.</summary>
    public static async Task<int> ListenAsync(int port, string? secret, bool full, TextWriter output, CancellationToken ct)
    {
        if (port is < 0 or > 65535)
        {
            throw new UsageFailure("--port must be 0 to 65535.");
        }
        var generated = string.IsNullOrEmpty(secret);
        secret = generated ? RandomNumberGenerator.GetString("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 32) : secret!;
        if (secret.Length is < 16 or > 256)
        {
            throw new UsageFailure("The webhook secret must be 16 to 256 characters, as the server requires of owner.webhookSecret.");
        }
        using var listener = Start(port);
        var url = listener.Prefixes.First(p => p.StartsWith("http://127.0.0.1:", StringComparison.Ordinal));
        await output.WriteLineAsync($"Listening for QrOrleans owner webhooks on {url} (give it as owner.webhookUrl); Ctrl+C stops.");
        if (generated)
        {
            await output.WriteLineAsync($"Secret (give it as owner.webhookSecret): {secret}");
        }
        var key = Encoding.UTF8.GetBytes(secret);
        try
        {
            while (true)
            {
                var context = await listener.GetContextAsync().WaitAsync(ct);
                await AnswerAsync(context, key, full, output, ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            await output.WriteLineAsync("Stopped.");
            return ExitCodes.Interrupted;
        }
    }

    private static HttpListener Start(int port)
    {
        // HttpListener cannot bind port 0 itself: ask the system for a free port, and try again if another process takes it first.
        for (var attempt = 0; ; attempt++)
        {
            var chosen = port == 0 ? FreePort() : port;
            var listener = new HttpListener();
            // Both names of loopback: HttpListener answers 404 to a Host it was not given, and a reader may write either.
            listener.Prefixes.Add($"http://127.0.0.1:{chosen}/");
            listener.Prefixes.Add($"http://localhost:{chosen}/");
            try
            {
                listener.Start();
                return listener;
            }
            catch (HttpListenerException e)
            {
                listener.Close();
                if (port == 0 && attempt < 5)
                {
                    continue;
                }
                throw new CliFailure($"Cannot listen on 127.0.0.1:{chosen}: {e.Message} (choose another --port).");
            }
        }
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    private static async Task AnswerAsync(HttpListenerContext context, byte[] key, bool full, TextWriter output, CancellationToken ct)
    {
        // Close(), not Dispose(): HttpListener's Dispose forces the connection shut, and the server's next delivery on it would fail.
        if (await DecideAsync(context.Request, key, full, output, ct) is { } status)
        {
            context.Response.StatusCode = status;
            context.Response.KeepAlive = status != 413; // the rest of an oversized body is still on the connection
            context.Response.Close();
        }
        else
        {
            context.Response.Abort();
        }
    }

    /// <summary>The status to answer (null: drop the connection), with the delivery's line printed.</summary>
    private static async Task<int?> DecideAsync(HttpListenerRequest request, byte[] key, bool full, TextWriter output, CancellationToken ct)
    {
        var @event = request.Headers["X-QrOrleans-Event"] is { Length: > 0 } e ? e : "-";
        if (request.HttpMethod != "POST")
        {
            await output.WriteLineAsync($"{Now()}  refused  {request.HttpMethod} {request.Url?.AbsolutePath}: only POST deliveries (answered 405)");
            return 405;
        }
        byte[]? body;
        try
        {
            body = await ReadBodyAsync(request, ct);
        }
        catch (Exception ex) when (ex is IOException or HttpListenerException or OperationCanceledException && !ct.IsCancellationRequested)
        {
            await output.WriteLineAsync($"{Now()}  refused  {@event}: the body did not arrive ({ex.GetType().Name})");
            return null;
        }
        if (body is null)
        {
            await output.WriteLineAsync($"{Now()}  refused  {@event}: body over {MaxBodyBytes} bytes (answered 413)");
            return 413;
        }
        if (Refusal(request.Headers["X-QrOrleans-Signature"], key, body) is { } reason)
        {
            await output.WriteLineAsync($"{Now()}  refused  {@event}: {reason} (answered 401)");
            return 401;
        }
        var (account, printed) = Describe(body, full);
        await output.WriteLineAsync($"{Now()}  {@event}  {account}  {printed}");
        return 204;
    }

    private static async Task<byte[]?> ReadBodyAsync(HttpListenerRequest request, CancellationToken ct)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(ReadTimeout);
        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.InputStream.ReadAsync(chunk, timeout.Token)) > 0)
        {
            if (buffer.Length + read > MaxBodyBytes)
            {
                return null;
            }
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    /// <summary>Why a delivery is not the server's (null: it is): the HMAC of the raw body bytes, compared in constant time.</summary>
    private static string? Refusal(string? header, byte[] key, byte[] body)
    {
        if (string.IsNullOrEmpty(header))
        {
            return "no X-QrOrleans-Signature";
        }
        const string scheme = "sha256=";
        if (!header.StartsWith(scheme, StringComparison.Ordinal) || header.Length != scheme.Length + 64)
        {
            return "X-QrOrleans-Signature is not sha256=<64 hex digits>";
        }
        byte[] sent;
        try
        {
            sent = Convert.FromHexString(header.AsSpan(scheme.Length));
        }
        catch (FormatException)
        {
            return "X-QrOrleans-Signature is not sha256=<64 hex digits>";
        }
        return CryptographicOperations.FixedTimeEquals(sent, HMACSHA256.HashData(key, body))
            ? null
            : "the signature does not match the body under this secret";
    }

    /// <summary>The account the delivery is about and the body on one line.</summary>
    private static (string Account, string Body) Describe(byte[] body, bool full)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var account = document.RootElement.ValueKind == JsonValueKind.Object
                && document.RootElement.TryGetProperty("accountId", out var id) && id.ValueKind == JsonValueKind.String
                ? id.GetString()! : "-";
            using var buffer = new MemoryStream();
            // Relaxed escaping: this is read on a terminal, where "+00:00" and "—" should look as they do, not as \u002B.
            using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            {
                Write(writer, document.RootElement, full);
            }
            return (account, Encoding.UTF8.GetString(buffer.ToArray()));
        }
        catch (JsonException)
        {
            return ("-", Encoding.UTF8.GetString(body).ReplaceLineEndings(" "));
        }
    }

    private static void Write(Utf8JsonWriter writer, JsonElement element, bool full)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                writer.WriteStartObject();
                foreach (var property in element.EnumerateObject())
                {
                    writer.WritePropertyName(property.Name);
                    Write(writer, property.Value, full);
                }
                writer.WriteEndObject();
                break;
            case JsonValueKind.Array:
                writer.WriteStartArray();
                foreach (var item in element.EnumerateArray())
                {
                    Write(writer, item, full);
                }
                writer.WriteEndArray();
                break;
            case JsonValueKind.String when !full && element.GetString() is { Length: > LongString } text:
                writer.WriteStringValue($"{text[..40]}…({text.Length} characters)");
                break;
            default:
                element.WriteTo(writer);
                break;
        }
    }

    private static string Now() => DateTimeOffset.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture);
}
