using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using QrOrleans.Cli.Login;
using QrOrleans.KeyBinding;

namespace QrOrleans.Cli.Hosting;

public sealed record ServerReply(int Status, JsonElement Body);

/// <summary>
/// What a call sends to say who it is: a bearer token, or a key-bound token (<c>Authorization: DPoP</c> with a proof
/// carrying <c>ath</c>), or a bearer token plus a proof of the key (a keyed sign-in's claim), or a proof alone (a
/// bound device's refresh).
/// </summary>
public sealed record Caller(string? Token, DpopKey? Key, bool TokenIsBound)
{
    public static Caller Bearer(string token) => new(token, null, false);

    public static Caller BearerWithProof(string token, DpopKey key) => new(token, key, false);

    public static Caller Bound(string accessToken, DpopKey key) => new(accessToken, key, true);

    public static Caller ProofOnly(DpopKey key) => new(null, key, false);

    public override string ToString() => "Caller { token = *** }";
}

/// <summary>
/// The CLI's calls to one QrOrleans server. Every refusal becomes a <see cref="ServerProblem"/> carrying the server's
/// problem+json; network failures and timeouts become a <see cref="ServerUnavailable"/>. The operator key is sent as a header
/// and never appears in any message.
/// </summary>
public sealed class ServerClient(HttpClient http, Uri server, string? apiKey = null)
{
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(15);

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web);

    public Uri Server => server;

    /// <summary>
    /// The server from a command line value ("localhost:5000" is taken as http://localhost:5000/), with a trailing
    /// slash so that relative API paths resolve under a path prefix.
    /// </summary>
    public static Uri ParseServer(string value)
    {
        var text = value.Trim();
        if (!text.Contains("://", StringComparison.Ordinal))
        {
            text = "http://" + text;
        }
        if (!Uri.TryCreate(text, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https")
            || !string.IsNullOrEmpty(uri.Query) || !string.IsNullOrEmpty(uri.Fragment) || !string.IsNullOrEmpty(uri.UserInfo))
        {
            throw new UsageFailure($"'{value}' is not a server address; give one like http://localhost:5000.");
        }
        return uri.AbsolutePath.EndsWith('/') ? uri : new UriBuilder(uri) { Path = uri.AbsolutePath + "/" }.Uri;
    }

    public Task<ServerReply> GetAsync(string path, CancellationToken ct, Caller? caller = null, TimeSpan? timeout = null) =>
        SendAsync(HttpMethod.Get, path, null, ct, caller, timeout);

    public Task<ServerReply> PostAsync(string path, object? body, CancellationToken ct, Caller? caller = null) =>
        SendAsync(HttpMethod.Post, path, body, ct, caller);

    public Task<ServerReply> DeleteAsync(string path, CancellationToken ct) => SendAsync(HttpMethod.Delete, path, null, ct);

    public async Task<ServerReply> SendAsync(
        HttpMethod method, string path, object? body, CancellationToken ct, Caller? caller = null, TimeSpan? timeout = null)
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
        if (apiKey is not null)
        {
            request.Headers.Add("X-Api-Key", apiKey);
        }
        request.Headers.Accept.ParseAdd("application/json");
        var limit = timeout ?? RequestTimeout;
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(ct);
        deadline.CancelAfter(limit);
        try
        {
            using var response = await http.SendAsync(request, deadline.Token);
            var text = await response.Content.ReadAsStringAsync(deadline.Token);
            var json = Parse(text);
            var status = (int)response.StatusCode;
            if (status is < 200 or >= 300)
            {
                throw new ServerProblem(status, String(json, "code"), String(json, "title"), String(json, "detail"));
            }
            return new ServerReply(status, json);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new ServerUnavailable($"{server} did not answer within {limit.TotalSeconds:0} s.");
        }
        catch (HttpRequestException e)
        {
            throw new ServerUnavailable($"Cannot reach {server}: {e.Message}");
        }
    }

    public static string? String(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : null;

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
}
