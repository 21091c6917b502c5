using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;

namespace QrOrleans.Bench;

/// <summary>A session as the desktop sees it right after POST /v1/qr/sessions.</summary>
public sealed record CreatedSession(string SessionId, string DesktopToken, string QrToken);

/// <summary>A signed-in phone: its user and its access token.</summary>
public sealed record Phone(string UserId, AuthenticationHeaderValue Bearer);

/// <summary>A failed call: what was called and what came back (<see cref="Status"/>: the HTTP status, 0 if none).</summary>
public sealed class BenchException(string message, int status = 0) : Exception(message)
{
    public int Status { get; } = status;
}

/// <summary>The gateway's HTTP API over one shared pooled client; counts every request it sends.</summary>
public sealed class Api : IDisposable
{
    private static readonly MediaTypeHeaderValue Json = new("application/json");
    private static readonly ReadOnlyMemory<byte> EmptyObject = "{}"u8.ToArray();

    private readonly HttpClient _http;
    private long _requests;

    public Api(Uri target)
    {
        Target = target;
        Handler = NewHandler();
        _http = new HttpClient(Handler, disposeHandler: false) { BaseAddress = target, Timeout = TimeSpan.FromSeconds(30) };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd("QrOrleans.Bench/1.0");
    }

    public Uri Target { get; }

    public SocketsHttpHandler Handler { get; }

    /// <summary>HTTP requests sent so far (SSE streams count as one each).</summary>
    public long Requests => Interlocked.Read(ref _requests);

    public static SocketsHttpHandler NewHandler() => new()
    {
        UseProxy = false,
        UseCookies = false,
        AllowAutoRedirect = false,
        AutomaticDecompression = DecompressionMethods.None,
        MaxConnectionsPerServer = int.MaxValue,
        PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
        ConnectTimeout = TimeSpan.FromSeconds(15),
    };

    public async Task<Phone> CreatePhoneAsync(string adminKey, string username, CancellationToken ct)
    {
        using var user = await SendJsonAsync(HttpMethod.Post, "v1/admin/users", $$"""{"username":"{{username}}","displayName":"Bench {{username}}"}""",
            adminKey: adminKey, ct: ct);
        var userId = user.RootElement.GetProperty("id").GetString()!;
        using var device = await SendJsonAsync(HttpMethod.Post, $"v1/admin/users/{userId}/devices", """{"name":"Bench phone","kind":"phone"}""",
            adminKey: adminKey, ct: ct);
        var token = device.RootElement.GetProperty("accessToken").GetString()!;
        return new Phone(userId, new AuthenticationHeaderValue("Bearer", token));
    }

    public async Task<CreatedSession> CreateSessionAsync(CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/qr/sessions")
        {
            Content = new ReadOnlyMemoryContent(EmptyObject) { Headers = { ContentType = Json } },
        };
        using var doc = await SendAsync(request, HttpStatusCode.Created, ct);
        var root = doc.RootElement;
        var url = root.GetProperty("qr").GetProperty("url").GetString()!;
        // qr.url ends in "/l/<sessionId>.<secret>" (or "/l/#<sessionId>.<secret>"); the scan takes "<sessionId>.<secret>".
        var qrToken = url[(url.LastIndexOf('/') + 1)..].TrimStart('#');
        return new CreatedSession(root.GetProperty("sessionId").GetString()!, root.GetProperty("desktopToken").GetString()!, qrToken);
    }

    public async Task ScanAsync(Phone phone, string qrToken, CancellationToken ct)
    {
        using var doc = await SendJsonAsync(HttpMethod.Post, "v1/qr/scan", $$"""{"token":"{{qrToken}}"}""", bearer: phone.Bearer, expect: HttpStatusCode.OK, ct: ct);
    }

    /// <summary>Approves and returns the Stopwatch timestamp at which the 200 response had fully arrived.</summary>
    public async Task<long> ApproveAsync(Phone phone, string sessionId, string number, CancellationToken ct)
    {
        using var doc = await SendJsonAsync(HttpMethod.Post, $"v1/qr/sessions/{sessionId}/approve", $$"""{"number":"{{number}}"}""",
            bearer: phone.Bearer, expect: HttpStatusCode.OK, ct: ct);
        var at = System.Diagnostics.Stopwatch.GetTimestamp();
        if (doc.RootElement.GetProperty("state").GetString() != "approved")
        {
            throw new BenchException("approve: state is not approved");
        }
        return at;
    }

    public async Task ClaimAsync(CreatedSession session, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"v1/qr/sessions/{session.SessionId}/claim");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", session.DesktopToken);
        using var doc = await SendAsync(request, HttpStatusCode.OK, ct);
        if (!doc.RootElement.TryGetProperty("accessToken", out _))
        {
            throw new BenchException("claim: no accessToken");
        }
    }

    /// <summary>GET /healthz; true when it answered 200.</summary>
    public async Task<bool> HealthzAsync(CancellationToken ct)
    {
        using var response = await _http.GetAsync("healthz", ct);
        Interlocked.Increment(ref _requests);
        return response.StatusCode == HttpStatusCode.OK;
    }

    /// <summary>Opens GET /v1/qr/sessions/{id}/events; the caller reads and disposes the response.</summary>
    public async Task<HttpResponseMessage> OpenEventsAsync(CreatedSession session, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"v1/qr/sessions/{session.SessionId}/events");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", session.DesktopToken);
        request.Headers.Accept.ParseAdd("text/event-stream");
        Interlocked.Increment(ref _requests);
        var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            var body = await response.Content.ReadAsStringAsync(ct);
            response.Dispose();
            throw new BenchException($"events: {(int)response.StatusCode} {Short(body)}", (int)response.StatusCode);
        }
        return response;
    }

    private Task<JsonDocument> SendJsonAsync(HttpMethod method, string path, string json, string? adminKey = null,
        AuthenticationHeaderValue? bearer = null, HttpStatusCode expect = HttpStatusCode.Created, CancellationToken ct = default)
    {
        var request = new HttpRequestMessage(method, path)
        {
            Content = new ByteArrayContent(Encoding.UTF8.GetBytes(json)) { Headers = { ContentType = Json } },
        };
        if (adminKey is not null)
        {
            request.Headers.Add("X-Api-Key", adminKey);
        }
        request.Headers.Authorization = bearer;
        return SendAndDisposeAsync(request, expect, ct);
    }

    private async Task<JsonDocument> SendAndDisposeAsync(HttpRequestMessage request, HttpStatusCode expect, CancellationToken ct)
    {
        using (request)
        {
            return await SendAsync(request, expect, ct);
        }
    }

    private async Task<JsonDocument> SendAsync(HttpRequestMessage request, HttpStatusCode expect, CancellationToken ct)
    {
        Interlocked.Increment(ref _requests);
        using var response = await _http.SendAsync(request, ct);
        var bytes = await response.Content.ReadAsByteArrayAsync(ct);
        if (response.StatusCode != expect)
        {
            throw new BenchException($"{request.Method} {Route(request.RequestUri)}: {(int)response.StatusCode} {Short(Encoding.UTF8.GetString(bytes))}");
        }
        return JsonDocument.Parse(bytes);
    }

    /// <summary>The path with ids blanked, so errors group by endpoint.</summary>
    private static string Route(Uri? uri)
    {
        var path = uri?.OriginalString ?? "";
        var parts = path.Split('/');
        for (var i = 0; i < parts.Length; i++)
        {
            if (parts[i].Length >= 20)
            {
                parts[i] = "{id}";
            }
        }
        return string.Join('/', parts);
    }

    public static string Short(string body)
    {
        // problem+json: the code says enough.
        var code = body.IndexOf("\"code\":\"", StringComparison.Ordinal);
        if (code >= 0)
        {
            var end = body.IndexOf('"', code + 8);
            if (end > code)
            {
                return body[(code + 8)..end];
            }
        }
        return body.Length > 120 ? body[..120] : body;
    }

    public void Dispose()
    {
        _http.Dispose();
        Handler.Dispose();
    }
}
