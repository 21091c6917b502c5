using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using QrOrleans.Accounts;

namespace QrOrleans.Grains.Connectors.ILink;

/// <param name="What">The endpoint's name, for error messages (never a URL: login URLs carry the QR id, a bearer-like secret).</param>
/// <param name="LongPoll">When <paramref name="Timeout"/> elapses first, the call answers null (no news) instead of failing.</param>
internal sealed record ILinkCall(
    HttpMethod Method, Uri Url, string What, JsonObject? Body, string? BotToken, TimeSpan Timeout, bool LongPoll = false);

/// <summary>
/// One HTTP exchange with iLink and the classification of transport-level failures. Application-level
/// errors (<c>ret</c>/<c>errcode</c> in a 200 body) are read by <see cref="ErrorOf"/> and judged by the connector,
/// which knows the account.
/// </summary>
internal sealed class ILinkTransport(HttpClient http, ILinkOptions options, TimeProvider time)
{
    public async Task<JsonObject?> SendAsync(ILinkCall call, CancellationToken ct)
    {
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(ct);
        bounded.CancelAfter(call.Timeout > TimeSpan.Zero ? call.Timeout : TimeSpan.FromMilliseconds(1));
        using var request = Build(call);
        try
        {
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, bounded.Token);
            ThrowOnHttpStatus(response, call.What);
            var text = await response.Content.ReadAsStringAsync(bounded.Token);
            return Parse(text, call.What);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            // our bound (or HttpClient.Timeout) elapsed; the caller's own cancellation propagates as is
            if (call.LongPoll)
            {
                return null;
            }
            throw new PlatformException(ErrorClass.Transient, "timeout",
                $"iLink {call.What} did not answer within {call.Timeout.TotalSeconds:0.###} s.");
        }
        catch (HttpRequestException e)
        {
            throw new PlatformException(ErrorClass.Transient, "network", $"iLink {call.What} could not be reached: {e.Message}");
        }
    }

    /// <summary>The non-zero <c>errcode</c> (else <c>ret</c>) of an answer and its <c>errmsg</c>; (0, null) when it succeeded.</summary>
    public static (int Code, string? Message) ErrorOf(JsonObject answer)
    {
        var code = Int(answer, "errcode") is { } errcode and not 0 ? errcode : Int(answer, "ret") ?? 0;
        if (code == 0)
        {
            return (0, null);
        }
        var message = Str(answer, "errmsg");
        return (code, message is { Length: > 200 } ? message[..200] : message);
    }

    public static string? Str(JsonObject o, string name) =>
        o[name] is JsonValue v && v.TryGetValue<string>(out var s) && s.Length > 0 ? s : null;

    public static int? Int(JsonObject o, string name) => o[name] is JsonValue v ? IntOf(v) : null;

    public static int? IntOf(JsonValue v)
    {
        if (v.TryGetValue<int>(out var i))
        {
            return i;
        }
        if (v.TryGetValue<long>(out var l))
        {
            return (int)Math.Clamp(l, int.MinValue, int.MaxValue);
        }
        return v.TryGetValue<string>(out var s) && int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var p) ? p : null;
    }

    private HttpRequestMessage Build(ILinkCall call)
    {
        var request = new HttpRequestMessage(call.Method, call.Url);
        request.Headers.TryAddWithoutValidation("iLink-App-Id", options.AppId);
        request.Headers.TryAddWithoutValidation("iLink-App-ClientVersion", options.ClientVersion);
        if (call.BotToken is { } token)
        {
            request.Headers.TryAddWithoutValidation("AuthorizationType", "ilink_bot_token");
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            request.Headers.TryAddWithoutValidation("X-WECHAT-UIN", RandomUin());
        }
        if (call.Body is not null)
        {
            request.Content = new StringContent(call.Body.ToJsonString(), Encoding.UTF8, "application/json");
        }
        return request;
    }

    private void ThrowOnHttpStatus(HttpResponseMessage response, string what)
    {
        var status = (int)response.StatusCode;
        switch (response.StatusCode)
        {
            case HttpStatusCode.TooManyRequests:
                throw new PlatformException(ErrorClass.RateLimited, "rate_limited", $"iLink {what} answered 429 Too Many Requests.")
                {
                    RetryAfter = RetryAfter(response.Headers.RetryAfter),
                };
            case HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden:
                throw new PlatformException(ErrorClass.Auth, "unauthorized",
                    $"iLink {what} refused the bot token (HTTP {status}); pair the account again.");
            case >= HttpStatusCode.InternalServerError:
                throw new PlatformException(ErrorClass.Transient, "server_error", $"iLink {what} answered HTTP {status}.");
            default:
                if (!response.IsSuccessStatusCode)
                {
                    throw new PlatformException(ErrorClass.Transient, "http_error", $"iLink {what} answered HTTP {status}.");
                }
                break;
        }
    }

    private TimeSpan RetryAfter(RetryConditionHeaderValue? header)
    {
        var delay = header switch
        {
            { Delta: { } delta } => delta,
            { Date: { } date } => date - time.GetUtcNow(),
            _ => options.DefaultRetryAfter,
        };
        return delay > TimeSpan.Zero ? delay : TimeSpan.Zero;
    }

    private static JsonObject Parse(string text, string what)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return new JsonObject(); // observed: some successful answers have an empty body
        }
        try
        {
            return JsonNode.Parse(text) as JsonObject
                ?? throw new PlatformException(ErrorClass.Transient, "bad_response", $"iLink {what} answered something other than a JSON object.");
        }
        catch (JsonException)
        {
            throw new PlatformException(ErrorClass.Transient, "bad_response", $"iLink {what} answered something other than JSON.");
        }
    }

    /// <summary>A random uint32, as a decimal string, base64-encoded: what iLink clients send in X-WECHAT-UIN.</summary>
    private static string RandomUin() =>
        Convert.ToBase64String(Encoding.UTF8.GetBytes(
            BitConverter.ToUInt32(RandomNumberGenerator.GetBytes(4)).ToString(CultureInfo.InvariantCulture)));
}
