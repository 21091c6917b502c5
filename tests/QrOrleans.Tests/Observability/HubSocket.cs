using System.Net.WebSockets;
using System.Text;
using System.Text.Json;

namespace QrOrleans.Tests.Observability;

/// <summary>
/// A SignalR client speaking the JSON hub protocol over a plain WebSocket (the .NET SignalR client cannot be had
/// here): negotiate, handshake, invoke, and read what the server sends.
/// </summary>
public sealed class HubSocket : IAsyncDisposable
{
    private const char Separator = '\u001e';
    private readonly ClientWebSocket _socket;
    private readonly StringBuilder _pending = new();

    private HubSocket(ClientWebSocket socket) => _socket = socket;

    public static async Task<HubSocket> ConnectAsync(HttpClient http, string hubPath, string? cookie = null)
    {
        using var negotiate = new HttpRequestMessage(HttpMethod.Post, hubPath + "/negotiate?negotiateVersion=1");
        if (cookie is not null)
        {
            negotiate.Headers.Add("Cookie", cookie);
        }
        using var response = await http.SendAsync(negotiate);
        response.EnsureSuccessStatusCode();
        var token = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("connectionToken").GetString();
        var socket = new ClientWebSocket();
        if (cookie is not null)
        {
            socket.Options.SetRequestHeader("Cookie", cookie);
        }
        var ws = new UriBuilder(new Uri(http.BaseAddress!, hubPath)) { Scheme = "ws", Query = "id=" + Uri.EscapeDataString(token!) }.Uri;
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await socket.ConnectAsync(ws, timeout.Token);
        var hub = new HubSocket(socket);
        await hub.SendAsync("{\"protocol\":\"json\",\"version\":1}");
        var handshake = await hub.ReceiveAsync(TimeSpan.FromSeconds(10));
        if (handshake.TryGetProperty("error", out var error))
        {
            throw new InvalidOperationException("Hub handshake failed: " + error);
        }
        return hub;
    }

    public Task InvokeAsync(string target, params object[] arguments) =>
        SendAsync(JsonSerializer.Serialize(new { type = 1, invocationId = Guid.NewGuid().ToString("N"), target, arguments }));

    /// <summary>The arguments of the next invocation of <paramref name="target"/> whose first argument matches.</summary>
    public async Task<JsonElement> WaitForAsync(string target, Func<JsonElement, bool> match, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var left = deadline - DateTime.UtcNow;
            if (left <= TimeSpan.Zero)
            {
                throw new TimeoutException($"No '{target}' message matched in {timeout}.");
            }
            var message = await ReceiveAsync(left);
            if (message.TryGetProperty("type", out var type) && type.GetInt32() == 1
                && message.GetProperty("target").GetString() == target && match(message.GetProperty("arguments")[0]))
            {
                return message.GetProperty("arguments")[0];
            }
            if (message.TryGetProperty("type", out type) && type.GetInt32() == 3 && message.TryGetProperty("error", out var error))
            {
                throw new InvalidOperationException("Hub invocation failed: " + error);
            }
        }
    }

    private async Task SendAsync(string json) =>
        await _socket.SendAsync(Encoding.UTF8.GetBytes(json + Separator), WebSocketMessageType.Text, true, CancellationToken.None);

    private async Task<JsonElement> ReceiveAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var buffer = new byte[16 * 1024];
        while (true)
        {
            var text = _pending.ToString();
            var end = text.IndexOf(Separator, StringComparison.Ordinal);
            if (end >= 0)
            {
                _pending.Remove(0, end + 1);
                return JsonDocument.Parse(text[..end]).RootElement.Clone();
            }
            var received = await _socket.ReceiveAsync(buffer, cts.Token);
            if (received.MessageType == WebSocketMessageType.Close)
            {
                throw new InvalidOperationException("The hub closed the connection.");
            }
            _pending.Append(Encoding.UTF8.GetString(buffer, 0, received.Count));
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
            await _socket.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", timeout.Token);
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException)
        {
            // the server went first
        }
        _socket.Dispose();
    }
}
