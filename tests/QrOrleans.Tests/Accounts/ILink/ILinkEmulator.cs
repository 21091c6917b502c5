using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace QrOrleans.Tests.Accounts.ILink;

/// <summary>One HTTP request the emulator received, exactly as it arrived.</summary>
public sealed record RecordedRequest(
    string Method, string Path, IReadOnlyDictionary<string, string> Query, IReadOnlyDictionary<string, string> Headers, string Body)
{
    /// <summary>The endpoint below <c>/ilink/bot/</c>, e.g. <c>getupdates</c> or <c>msg/notifystop</c>.</summary>
    public string Endpoint => Path.StartsWith(ILinkEmulator.Prefix, StringComparison.Ordinal) ? Path[ILinkEmulator.Prefix.Length..] : Path;

    public JsonObject Json => JsonNode.Parse(Body) as JsonObject ?? throw new InvalidOperationException("the body is not a JSON object");

    public string? Header(string name) => Headers.TryGetValue(name, out var value) ? value : null;
}

/// <summary>
/// A local stand-in for the iLink bot endpoints, on a free loopback port, whose answers a test scripts.
/// What it imitates (shapes from public iLink clients, not from a spec): <c>get_bot_qrcode</c>, the
/// <c>get_qrcode_status</c> long-poll (scripted statuses, else <c>wait</c> after <see cref="StatusHold"/>),
/// <c>getupdates</c> (a cursor that counts delivered messages, held <see cref="UpdatesHold"/> when there is
/// nothing new), <c>sendmessage</c>, <c>msg/notifystop</c>, the <c>ret</c>/<c>errcode</c>/<c>errmsg</c> envelope.
/// What it invents: a wrong or missing bot token gets HTTP 401 (what the real service answers is not public;
/// it may well be errcode -14), and the ids and tokens it hands out.
/// </summary>
public sealed class ILinkEmulator : IAsyncDisposable
{
    public const string Prefix = "/ilink/bot/";

    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(10);

    private readonly WebApplication _app;
    private readonly Lock _gate = new();
    private readonly Queue<JsonObject> _statuses = new();
    private readonly List<JsonObject> _updates = [];
    private readonly List<(string? Endpoint, Func<HttpContext, Task<bool>> Apply)> _failures = [];
    private readonly List<RecordedRequest> _requests = [];
    private readonly List<string> _issuedCursors = [];

    private ILinkEmulator(WebApplication app, Uri baseUrl)
    {
        _app = app;
        BaseUrl = baseUrl;
    }

    /// <summary>E.g. <c>http://127.0.0.1:40123/</c>.</summary>
    public Uri BaseUrl { get; }

    /// <summary>What a <c>scaned_but_redirect</c> pointing here carries as <c>redirect_host</c>.</summary>
    public string HostAndPort => $"{BaseUrl.Host}:{BaseUrl.Port}";

    /// <summary>The token <c>confirmed</c> issues and authenticated endpoints accept.</summary>
    public string BotToken { get; set; } = "emu-token-" + Guid.NewGuid().ToString("N");

    public string BotId { get; set; } = "e0f1a2b3c4d5@im.bot";

    /// <summary><c>ilink_user_id</c> of a confirmation: the WeChat user who scanned.</summary>
    public string OwnerId { get; set; } = "o9x8y7w6@im.wechat";

    /// <summary><c>baseurl</c> of a confirmation; this emulator's own URL unless set.</summary>
    public string? ConfirmBaseUrl { get; set; }

    /// <summary>How long <c>get_qrcode_status</c> holds a poll when no status is scripted, then answers <c>wait</c>.</summary>
    public TimeSpan StatusHold { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>How long <c>getupdates</c> holds a poll when there is nothing new, then answers an empty batch.</summary>
    public TimeSpan UpdatesHold { get; set; } = TimeSpan.FromMilliseconds(200);

    public IReadOnlyList<RecordedRequest> Requests
    {
        get
        {
            lock (_gate)
            {
                return [.. _requests];
            }
        }
    }

    /// <summary>Every <c>get_updates_buf</c> handed out, oldest first.</summary>
    public IReadOnlyList<string> IssuedCursors
    {
        get
        {
            lock (_gate)
            {
                return [.. _issuedCursors];
            }
        }
    }

    public static async Task<ILinkEmulator> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Logging.ClearProviders();
        var app = builder.Build();
        ILinkEmulator? emulator = null;
        app.Run(context => emulator!.HandleAsync(context));
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        emulator = new ILinkEmulator(app, new Uri(address.TrimEnd('/') + "/"));
        return emulator;
    }

    public IReadOnlyList<RecordedRequest> RequestsTo(string endpoint) => [.. Requests.Where(r => r.Endpoint == endpoint)];

    /// <summary>The next polls of <c>get_qrcode_status</c> answer these statuses, one each, in order.</summary>
    public void ScriptStatuses(params string[] statuses)
    {
        foreach (var status in statuses)
        {
            ScriptStatus(new JsonObject { ["status"] = status });
        }
    }

    /// <summary>A whole answer for a coming poll (e.g. with <c>redirect_host</c>); <c>confirmed</c> gets the token and ids filled in.</summary>
    public void ScriptStatus(JsonObject answer)
    {
        lock (_gate)
        {
            _statuses.Enqueue(answer);
        }
    }

    /// <summary>A message from <paramref name="from"/> that the next <c>getupdates</c> delivers.</summary>
    public void QueueUpdate(string from, string text, string contextToken)
    {
        lock (_gate)
        {
            _updates.Add(new JsonObject
            {
                ["seq"] = _updates.Count + 1,
                ["message_id"] = 7_000_000_000_000_000_000UL + (ulong)_updates.Count,
                ["from_user_id"] = from,
                ["to_user_id"] = BotId,
                ["message_type"] = 1,
                ["message_state"] = 2,
                ["context_token"] = contextToken,
                ["item_list"] = new JsonArray(new JsonObject { ["type"] = 1, ["text_item"] = new JsonObject { ["text"] = text } }),
            });
        }
    }

    /// <summary>The next call (to <paramref name="endpoint"/>, or any) answers HTTP 200 with <c>errcode -14</c>.</summary>
    public void ExpireSessionOnNextCall(string? endpoint = null) =>
        FailNext(endpoint, context => Json(context, new JsonObject { ["ret"] = -14, ["errcode"] = -14, ["errmsg"] = "session timeout" }));

    public void AnswerErrcodeOnNextCall(int errcode, string errmsg, string? endpoint = null) =>
        FailNext(endpoint, context => Json(context, new JsonObject { ["ret"] = errcode, ["errcode"] = errcode, ["errmsg"] = errmsg }));

    /// <summary>The next call answers <paramref name="status"/>, with a Retry-After header if given (seconds or an HTTP date).</summary>
    public void AnswerHttpOnNextCall(int status, string? retryAfter = null, string? endpoint = null) =>
        FailNext(endpoint, context =>
        {
            context.Response.StatusCode = status;
            if (retryAfter is not null)
            {
                context.Response.Headers.RetryAfter = retryAfter;
            }
            return context.Response.WriteAsync($"{{\"errmsg\":\"emulated {status}\"}}");
        });

    /// <summary>The next call is held this long before it is answered as usual (a client with a shorter timeout gives up first).</summary>
    public void StallNextCall(TimeSpan delay, string? endpoint = null)
    {
        lock (_gate)
        {
            _failures.Add((endpoint, async context =>
            {
                await Task.Delay(delay, context.RequestAborted);
                return false;
            }));
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private void FailNext(string? endpoint, Func<HttpContext, Task> answer)
    {
        lock (_gate)
        {
            _failures.Add((endpoint, async context =>
            {
                await answer(context);
                return true;
            }));
        }
    }

    private async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        var body = await new StreamReader(request.Body, Encoding.UTF8).ReadToEndAsync(context.RequestAborted);
        var recorded = new RecordedRequest(
            request.Method,
            request.Path.Value ?? "",
            request.Query.ToDictionary(q => q.Key, q => q.Value.ToString()),
            request.Headers.ToDictionary(h => h.Key, h => h.Value.ToString(), StringComparer.OrdinalIgnoreCase),
            body);
        Func<HttpContext, Task<bool>>? failure;
        lock (_gate)
        {
            _requests.Add(recorded);
            var index = _failures.FindIndex(f => f.Endpoint is null || f.Endpoint == recorded.Endpoint);
            failure = index < 0 ? null : _failures[index].Apply;
            if (index >= 0)
            {
                _failures.RemoveAt(index);
            }
        }

        try
        {
            if (failure is not null && await failure(context))
            {
                return;
            }
            var answer = (recorded.Endpoint, request.Method) switch
            {
                ("get_bot_qrcode", "POST") => IssueCode(context),
                ("get_qrcode_status", "GET") => CodeStatus(context),
                ("getupdates", "POST") => Authenticated(context, recorded, () => Updates(context, recorded)),
                ("sendmessage", "POST") => Authenticated(context, recorded, () => Json(context, new JsonObject { ["ret"] = 0 })),
                ("msg/notifystop", "POST") => Authenticated(context, recorded, () => Json(context, new JsonObject { ["ret"] = 0 })),
                _ => NotFound(context),
            };
            await answer;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            // the client gave up on a held long-poll
        }
    }

    private Task IssueCode(HttpContext context)
    {
        var code = "emu-qr-" + Guid.NewGuid().ToString("N");
        return Json(context, new JsonObject
        {
            ["ret"] = 0,
            ["qrcode"] = code,
            ["qrcode_img_content"] = $"https://liteapp.weixin.qq.com/q/emu?qrcode={code}&bot_type=3",
        });
    }

    private async Task CodeStatus(HttpContext context)
    {
        var deadline = DateTime.UtcNow + StatusHold;
        while (true)
        {
            JsonObject? scripted = null;
            lock (_gate)
            {
                if (_statuses.Count > 0)
                {
                    scripted = _statuses.Dequeue();
                }
            }
            if (scripted is not null)
            {
                if ((string?)scripted["status"] == "confirmed")
                {
                    scripted["bot_token"] ??= BotToken;
                    scripted["ilink_bot_id"] ??= BotId;
                    scripted["ilink_user_id"] ??= OwnerId;
                    scripted["baseurl"] ??= ConfirmBaseUrl ?? BaseUrl.ToString();
                }
                scripted["ret"] ??= 0;
                await Json(context, scripted);
                return;
            }
            if (DateTime.UtcNow >= deadline)
            {
                await Json(context, new JsonObject { ["ret"] = 0, ["status"] = "wait" });
                return;
            }
            await Task.Delay(Tick, context.RequestAborted);
        }
    }

    private async Task Updates(HttpContext context, RecordedRequest request)
    {
        var cursor = (string?)request.Json["get_updates_buf"] ?? "";
        var delivered = cursor.StartsWith("buf-", StringComparison.Ordinal) && int.TryParse(cursor[4..], out var n) ? n : 0;
        var deadline = DateTime.UtcNow + UpdatesHold;
        while (true)
        {
            JsonArray? batch = null;
            string next;
            lock (_gate)
            {
                if (_updates.Count > delivered || DateTime.UtcNow >= deadline)
                {
                    batch = new JsonArray([.. _updates.Skip(delivered).Select(u => u.DeepClone())]);
                    next = $"buf-{_updates.Count}";
                    _issuedCursors.Add(next);
                }
                else
                {
                    next = cursor;
                }
            }
            if (batch is not null)
            {
                await Json(context, new JsonObject
                {
                    ["ret"] = 0,
                    ["msgs"] = batch,
                    ["get_updates_buf"] = next,
                    ["longpolling_timeout_ms"] = (int)UpdatesHold.TotalMilliseconds,
                });
                return;
            }
            await Task.Delay(Tick, context.RequestAborted);
        }
    }

    private Task Authenticated(HttpContext context, RecordedRequest request, Func<Task> answer)
    {
        if (request.Header("Authorization") != "Bearer " + BotToken || request.Header("AuthorizationType") != "ilink_bot_token")
        {
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            return Json(context, new JsonObject { ["ret"] = -1, ["errmsg"] = "unauthorized" }, setStatus: false);
        }
        return answer();
    }

    private static Task NotFound(HttpContext context)
    {
        context.Response.StatusCode = StatusCodes.Status404NotFound;
        return Task.CompletedTask;
    }

    private static Task Json(HttpContext context, JsonObject answer, bool setStatus = true)
    {
        if (setStatus)
        {
            context.Response.StatusCode = StatusCodes.Status200OK;
        }
        context.Response.ContentType = "application/json";
        return context.Response.WriteAsync(answer.ToJsonString(), context.RequestAborted);
    }
}
