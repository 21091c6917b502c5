using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using QrOrleans.Accounts;
using QrOrleans.KeyBinding;

namespace QrOrleans.Grains.Connectors.QrOrleansServer;

/// <summary>One answer of a QrOrleans server: the status, the JSON body (if any) and the problem code of an error.</summary>
internal sealed record ServerReply(HttpStatusCode Status, JsonElement Body, string? Code, TimeSpan? RetryAfter)
{
    public bool IsSuccess => (int)Status is >= 200 and < 300;

    public string? String(string name) =>
        Body.ValueKind == JsonValueKind.Object && Body.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : null;
}

/// <summary>
/// What a call sends to say who it is: a bearer token (the desktop token), that plus a proof of the session's key (the
/// claim), a proof alone (a bound device's refresh), or a key-bound access token (<c>Authorization: DPoP</c>, and a
/// proof carrying <c>ath</c>).
/// </summary>
internal sealed record Caller(string? Token, DpopKey? Key, bool TokenIsBound)
{
    public static Caller Bearer(string token) => new(token, null, false);

    public static Caller BearerWithProof(string token, DpopKey? key) => new(token, key, false);

    public static Caller ProofOnly(DpopKey key) => new(null, key, false);

    /// <summary>An access token: DPoP-bound when there is a key (a device paired before key binding has none).</summary>
    public static Caller Access(string token, DpopKey? key) => new(token, key, key is not null);

    public override string ToString() => "Caller { token = *** }";
}

/// <summary>
/// The HTTP calls of the connector, with the error classification of ARCHITECTURE.md: 429 is rate limited,
/// 5xx, timeouts and network failures are transient, and the caller decides what a 4xx means. No secret (desktop
/// token, refresh or access token, private key) ever goes into an exception message.
/// </summary>
internal sealed class QrOrleansHttp(HttpClient http, QrOrleansConnectorOptions options)
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public async Task<ServerReply> SendAsync(
        HttpMethod method, Uri server, string path, object? body, Caller? caller, TimeSpan timeout, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, new Uri(server, path));
        if (body is not null)
        {
            request.Content = JsonContent.Create(body, options: Json);
        }
        if (caller?.Token is { } token)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue(caller.TokenIsBound ? "DPoP" : "Bearer", token);
        }
        if (caller?.Key is { } key)
        {
            request.Headers.Add("DPoP", key.Proof(method, request.RequestUri!, caller.TokenIsBound ? caller.Token : null));
        }
        request.Headers.Accept.ParseAdd("application/json");
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(timeout);
        try
        {
            using var response = await http.SendAsync(request, deadline.Token).ConfigureAwait(false);
            var text = await response.Content.ReadAsStringAsync(deadline.Token).ConfigureAwait(false);
            var json = Parse(text);
            var code = json.ValueKind == JsonValueKind.Object && json.TryGetProperty("code", out var c) && c.ValueKind == JsonValueKind.String
                ? c.GetString()
                : null;
            var reply = new ServerReply(response.StatusCode, json, code, RetryAfter(response.Headers.RetryAfter));
            ThrowIfRetryable(reply, server);
            return reply;
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new PlatformException(ErrorClass.Transient, "timeout", $"The QrOrleans server at {server.Authority} did not answer in time.");
        }
        catch (HttpRequestException e)
        {
            throw new PlatformException(ErrorClass.Transient, "unreachable",
                $"The QrOrleans server at {server.Authority} could not be reached ({e.HttpRequestError}).");
        }
    }

    /// <summary>A 4xx the caller did not expect: a human has to look (wrong server URL, a server that refuses us).</summary>
    public static PlatformException Unexpected(ServerReply reply, string what) =>
        new(ErrorClass.Auth, reply.Code ?? "http_" + (int)reply.Status,
            $"The QrOrleans server refused to {what}: HTTP {(int)reply.Status}{(reply.Code is null ? "" : " " + reply.Code)}.");

    public static PlatformException Malformed(string what) =>
        new(ErrorClass.Transient, "invalid_response", $"The QrOrleans server answered {what} with something that is not the QrOrleans API.");

    private void ThrowIfRetryable(ServerReply reply, Uri server)
    {
        if (reply.Status == HttpStatusCode.TooManyRequests)
        {
            throw new PlatformException(ErrorClass.RateLimited, reply.Code ?? "rate_limited",
                $"The QrOrleans server at {server.Authority} asks us to slow down.")
            {
                RetryAfter = reply.RetryAfter ?? options.DefaultRetryAfter,
            };
        }
        if ((int)reply.Status >= 500)
        {
            throw new PlatformException(ErrorClass.Transient, reply.Code ?? "http_" + (int)reply.Status,
                $"The QrOrleans server at {server.Authority} failed: HTTP {(int)reply.Status}.");
        }
    }

    private static JsonElement Parse(string text)
    {
        if (text.Length == 0)
        {
            return default;
        }
        try
        {
            using var document = JsonDocument.Parse(text);
            return document.RootElement.Clone();
        }
        catch (JsonException)
        {
            return default;
        }
    }

    private static TimeSpan? RetryAfter(RetryConditionHeaderValue? header) =>
        header switch
        {
            { Delta: { } delta } when delta > TimeSpan.Zero => delta,
            { Date: { } date } when date > DateTimeOffset.UtcNow => date - DateTimeOffset.UtcNow,
            _ => null,
        };
}
