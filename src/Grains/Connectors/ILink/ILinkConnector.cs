using System.Collections.Concurrent;
using System.Text;
using System.Text.Json.Nodes;
using QrOrleans.Accounts;
using static QrOrleans.Grains.Connectors.ILink.ILinkTransport;

namespace QrOrleans.Grains.Connectors.ILink;

/// <summary>
/// WeChat's iLink bot protocol over HTTP + JSON (no WebSocket), against the account's <c>connector.baseUrl</c>
/// (default <see cref="ILinkOptions.DefaultBaseUrl"/>).
/// <list type="bullet">
/// <item>Pairing: <c>POST ilink/bot/get_bot_qrcode?bot_type=3</c> issues a code (<c>qrcode</c> id, <c>qrcode_img_content</c>
/// to render); <c>GET ilink/bot/get_qrcode_status?qrcode=…</c> long-polls its status. Both go without a bot token.</item>
/// <item>Session: <c>POST ilink/bot/getupdates</c> long-polls messages with an opaque cursor (<c>get_updates_buf</c>);
/// <c>POST ilink/bot/sendmessage</c> replies, echoing the <c>context_token</c> of the peer's latest message.
/// Both carry <c>AuthorizationType: ilink_bot_token</c> and <c>Authorization: Bearer &lt;bot_token&gt;</c>.</item>
/// </list>
/// Status mapping of <c>get_qrcode_status</c>:
/// <list type="table">
/// <item><term>wait</term><description><see cref="PairingProgress.Waiting"/></description></item>
/// <item><term>scaned</term><description><see cref="PairingProgress.Scanned"/></description></item>
/// <item><term>scaned_but_redirect</term><description><see cref="PairingProgress.Scanned"/>; the account lives in another
/// data centre, so later polls of this code go to <c>redirect_host</c> if it is trusted (see <see cref="ILinkUrls.TrustedRedirect"/>);
/// an untrusted host is ignored (the code then simply expires) so the bot token is never fetched from it.</description></item>
/// <item><term>need_verifycode</term><description>throws Auth <c>verify_code_required</c>: the phone shows a pair code that
/// must be typed into the client (sent back as <c>&amp;verify_code=</c>); this SPI has no way to ask the owner for it.</description></item>
/// <item><term>verify_code_blocked</term><description>throws Cooldown <c>verify_code_blocked</c>, until now + <see cref="ILinkOptions.VerifyCodeBlockedCooldown"/>.</description></item>
/// <item><term>binded_redirect</term><description>throws Auth <c>already_bound</c>: the bot is already bound to a client and no new
/// token is issued (this connector never offers local tokens, so it is someone else's binding); unbind it in WeChat, then pair again.</description></item>
/// <item><term>expired</term><description><see cref="PairingProgress.Expired"/></description></item>
/// <item><term>confirmed</term><description><see cref="PairingProgress.Confirmed"/>, credentials = <see cref="ILinkCredentials.ToJson"/>.</description></item>
/// <item><term>anything else</term><description>no news: the last known progress.</description></item>
/// </list>
/// Errors: 429 → RateLimited (Retry-After); 401/403 → Auth; 5xx, timeouts, network → Transient; errcode -14 → Cooldown
/// <c>session_expired</c> for <see cref="ILinkOptions.SessionExpiredCooldown"/>, and Auth <c>session_expired</c> if the
/// platform still says -14 once that cool-down has passed with no successful call in between (public reports show a
/// -14 token rarely recovers: binding the WeChat account elsewhere kills it). Other non-zero ret/errcode → Transient.
/// <para>
/// In memory, per process (lost when the account moves to another silo, rebuilt as messages arrive): the
/// <c>getupdates</c> cursor (a fresh one starts from an empty cursor), each peer's latest context token (a reply to a
/// peer that has not written since is sent without one, which the platform may refuse), the redirect host of a
/// running login (lost → polls go to the configured host again, which redirects again).
/// </para>
/// Credentials and QR ids are secrets: neither appears in an exception message, and nothing here logs.
/// </summary>
public sealed class ILinkConnector : IPlatformConnector
{
    private readonly ILinkTransport _transport;
    private readonly ILinkOptions _options;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<(string Account, string Handle), PairingTrack> _pairings = new();
    private readonly ConcurrentDictionary<string, ILinkAccountSession> _sessions = new(StringComparer.Ordinal);

    public ILinkConnector(HttpClient http, ILinkOptions? options = null, TimeProvider? time = null)
    {
        _options = options ?? new ILinkOptions();
        _time = time ?? TimeProvider.System;
        _transport = new ILinkTransport(http, _options, _time);
    }

    public string Platform => Platforms.ILink;

    public async Task<PairingCode> BeginPairingAsync(ConnectorContext context, CancellationToken ct)
    {
        var configured = ILinkUrls.ConfiguredBase(context);
        var body = new JsonObject { ["local_token_list"] = new JsonArray(), ["base_info"] = BaseInfo() };
        var url = new Uri(configured, $"ilink/bot/get_bot_qrcode?bot_type={Uri.EscapeDataString(_options.BotType)}");
        var answer = await _transport.SendAsync(new(HttpMethod.Post, url, "get_bot_qrcode", body, null, _options.RequestTimeout), ct);
        ThrowOnError(answer!, null, "get_bot_qrcode");

        var qrcode = Str(answer!, "qrcode");
        var content = Str(answer!, "qrcode_img_content") ?? Str(answer!, "qrcode_img_url");
        if (qrcode is null || content is null)
        {
            throw new PlatformException(ErrorClass.Transient, "bad_response", "iLink get_bot_qrcode answered without a code.");
        }
        var now = _time.GetUtcNow();
        ForgetStalePairings(now);
        _pairings[(context.AccountId, qrcode)] = new PairingTrack(configured, now);
        return new PairingCode(content, now + _options.QrLifetime, qrcode);
    }

    public async Task<PairingStatus> PollPairingAsync(ConnectorContext context, PairingCode code, TimeSpan wait, CancellationToken ct)
    {
        var configured = ILinkUrls.ConfiguredBase(context);
        var key = (context.AccountId, code.Handle);
        var track = _pairings.GetOrAdd(key, _ => new PairingTrack(configured, _time.GetUtcNow()));
        var started = _time.GetTimestamp();

        var url = new Uri(track.PollBase, "ilink/bot/get_qrcode_status?qrcode=" + Uri.EscapeDataString(code.Handle));
        var answer = await _transport.SendAsync(new(HttpMethod.Get, url, "get_qrcode_status", null, null, wait, LongPoll: true), ct);
        if (answer is null)
        {
            return new PairingStatus(track.Last); // held for the whole wait: nothing changed
        }
        ThrowOnError(answer, null, "get_qrcode_status");

        switch (Str(answer, "status"))
        {
            case "wait":
                return await ProgressAsync(track, PairingProgress.Waiting, started, wait, ct);
            case "scaned":
                return await ProgressAsync(track, PairingProgress.Scanned, started, wait, ct);
            case "scaned_but_redirect":
                if (ILinkUrls.TrustedRedirect(configured, Str(answer, "redirect_host")) is { } redirect)
                {
                    track.PollBase = redirect;
                }
                return await ProgressAsync(track, PairingProgress.Scanned, started, wait, ct);
            case "expired":
                _pairings.TryRemove(key, out _);
                return new PairingStatus(PairingProgress.Expired);
            case "confirmed":
                _pairings.TryRemove(key, out _);
                return Confirmed(context, track, answer);
            case "need_verifycode":
                _pairings.TryRemove(key, out _);
                throw new PlatformException(ErrorClass.Auth, "verify_code_required",
                    "WeChat asks for the pair code shown on the phone, which this connector cannot enter; pair again with a new code.");
            case "verify_code_blocked":
                _pairings.TryRemove(key, out _);
                throw new PlatformException(ErrorClass.Cooldown, "verify_code_blocked",
                    "WeChat blocked this code after wrong pair codes; wait before pairing again.")
                {
                    Until = _time.GetUtcNow() + _options.VerifyCodeBlockedCooldown,
                };
            case "binded_redirect":
                _pairings.TryRemove(key, out _);
                throw new PlatformException(ErrorClass.Auth, "already_bound",
                    "This WeChat bot is already bound to another client and no new token was issued; unbind it in WeChat, then pair again.");
            default:
                return await ProgressAsync(track, track.Last, started, wait, ct);
        }
    }

    public async Task<HealthResult> CheckHealthAsync(ConnectorContext context, string credentials, CancellationToken ct)
    {
        var creds = ILinkCredentials.Parse(credentials);
        var session = SessionOf(context, creds);
        session.Buffer(await PollUpdatesAsync(creds, session, _options.HealthPoll, onlyIfIdle: false, ct));
        return new HealthResult();
    }

    /// <summary>
    /// Messages received since the last call: those a health check already fetched, then one <c>getupdates</c>
    /// long-poll of up to <paramref name="wait"/> (the cursor advances with each answer). Not part of the SPI:
    /// for a host that wants the inbound side.
    /// </summary>
    public async Task<IReadOnlyList<ILinkMessage>> GetUpdatesAsync(ConnectorContext context, string credentials, TimeSpan wait, CancellationToken ct)
    {
        var creds = ILinkCredentials.Parse(credentials);
        var session = SessionOf(context, creds);
        var fresh = await PollUpdatesAsync(creds, session, wait, onlyIfIdle: false, ct);
        var received = session.DrainInbox();
        received.AddRange(fresh);
        return received;
    }

    public async Task SendMessageAsync(ConnectorContext context, string credentials, string to, string text, CancellationToken ct)
    {
        var creds = ILinkCredentials.Parse(credentials);
        var session = SessionOf(context, creds);
        var contextToken = session.ContextTokenOf(to);
        if (contextToken is null)
        {
            // the peer may have written since the last poll; a poll already in flight will learn it instead
            session.Buffer(await PollUpdatesAsync(creds, session, _options.HealthPoll, onlyIfIdle: true, ct));
            contextToken = session.ContextTokenOf(to);
        }

        foreach (var chunk in Chunks(text, _options.MaxTextLength))
        {
            var msg = new JsonObject
            {
                ["from_user_id"] = "",
                ["to_user_id"] = to,
                ["client_id"] = "qrorleans-" + Secrets.NewHexId(12),
                ["message_type"] = 2, // sent by the bot
                ["message_state"] = 2, // complete (not a streaming fragment)
                ["item_list"] = new JsonArray(new JsonObject { ["type"] = 1, ["text_item"] = new JsonObject { ["text"] = chunk } }),
            };
            if (contextToken is not null)
            {
                msg["context_token"] = contextToken;
            }
            var body = new JsonObject { ["msg"] = msg, ["base_info"] = BaseInfo() };
            var answer = await _transport.SendAsync(
                new(HttpMethod.Post, new Uri(creds.ApiBase, "ilink/bot/sendmessage"), "sendmessage", body, creds.BotToken, _options.RequestTimeout), ct);
            ThrowOnError(answer!, session, "sendmessage");
        }
    }

    /// <summary>
    /// iLink has no public logout: this tells the platform the client stops (<c>msg/notifystop</c>) and forgets the
    /// account's session. The token stays valid until the owner unbinds the bot in WeChat or binds it elsewhere.
    /// </summary>
    public async Task LogoutAsync(ConnectorContext context, string credentials, CancellationToken ct)
    {
        _sessions.TryRemove(context.AccountId, out _);
        foreach (var key in _pairings.Keys.Where(k => k.Account == context.AccountId))
        {
            _pairings.TryRemove(key, out _);
        }
        var creds = ILinkCredentials.Parse(credentials);
        var body = new JsonObject { ["base_info"] = BaseInfo() };
        var answer = await _transport.SendAsync(
            new(HttpMethod.Post, new Uri(creds.ApiBase, "ilink/bot/msg/notifystop"), "notifystop", body, creds.BotToken, _options.RequestTimeout), ct);
        ThrowOnError(answer!, null, "notifystop");
    }

    private async Task<List<ILinkMessage>> PollUpdatesAsync(
        ILinkCredentials creds, ILinkAccountSession session, TimeSpan wait, bool onlyIfIdle, CancellationToken ct)
    {
        if (onlyIfIdle)
        {
            if (!await session.Updates.WaitAsync(TimeSpan.Zero, ct))
            {
                return [];
            }
        }
        else
        {
            await session.Updates.WaitAsync(ct);
        }
        try
        {
            var body = new JsonObject { ["get_updates_buf"] = session.Cursor, ["base_info"] = BaseInfo() };
            var answer = await _transport.SendAsync(
                new(HttpMethod.Post, new Uri(creds.ApiBase, "ilink/bot/getupdates"), "getupdates", body, creds.BotToken, wait, LongPoll: true), ct);
            if (answer is null)
            {
                return []; // still held when the wait ran out: nothing new, and the token was not refused
            }
            ThrowOnError(answer, session, "getupdates");
            if (Str(answer, "get_updates_buf") is { } cursor)
            {
                session.Cursor = cursor;
            }
            return Messages(answer, session);
        }
        finally
        {
            session.Updates.Release();
        }
    }

    private static List<ILinkMessage> Messages(JsonObject answer, ILinkAccountSession session)
    {
        var received = new List<ILinkMessage>();
        if (answer["msgs"] is not JsonArray msgs)
        {
            return received;
        }
        foreach (var msg in msgs.OfType<JsonObject>())
        {
            var from = Str(msg, "from_user_id");
            if (from is null || Int(msg, "message_type") == 2)
            {
                continue; // the bot's own messages echo back with message_type 2
            }
            var contextToken = Str(msg, "context_token");
            if (contextToken is not null)
            {
                session.Remember(from, contextToken);
            }
            var text = new StringBuilder();
            if (msg["item_list"] is JsonArray items)
            {
                foreach (var item in items.OfType<JsonObject>())
                {
                    if (item["text_item"] is JsonObject textItem && Str(textItem, "text") is { } part)
                    {
                        text.Append(part);
                    }
                }
            }
            var id = msg["message_id"] is JsonValue v ? (v.TryGetValue<string>(out var s) ? s : v.ToJsonString()) : null;
            received.Add(new ILinkMessage(from, text.ToString(), contextToken, id));
        }
        return received;
    }

    private PairingStatus Confirmed(ConnectorContext context, PairingTrack track, JsonObject answer)
    {
        if (Str(answer, "bot_token") is not { } token)
        {
            throw new PlatformException(ErrorClass.Auth, "confirmed_without_token",
                "WeChat confirmed the login but issued no bot token; pair again.");
        }
        var credentials = new ILinkCredentials(
            token,
            ILinkUrls.AccountBase(track.PollBase, Str(answer, "baseurl")).ToString(),
            Str(answer, "ilink_bot_id"),
            Str(answer, "ilink_user_id"));
        _sessions.TryRemove(context.AccountId, out _); // a new login: the old cursor and context tokens mean nothing
        return new PairingStatus(PairingProgress.Confirmed, Credentials: credentials.ToJson());
    }

    /// <summary>An answer that brings no news takes at least <see cref="ILinkOptions.MinStatusPollInterval"/>, so loops never spin.</summary>
    private async Task<PairingStatus> ProgressAsync(PairingTrack track, PairingProgress progress, long started, TimeSpan wait, CancellationToken ct)
    {
        if (progress == track.Last)
        {
            var floor = wait < _options.MinStatusPollInterval ? wait : _options.MinStatusPollInterval;
            var rest = floor - _time.GetElapsedTime(started);
            if (rest > TimeSpan.Zero)
            {
                await Task.Delay(rest, _time, ct);
            }
        }
        track.Last = progress;
        return new PairingStatus(progress);
    }

    private void ThrowOnError(JsonObject answer, ILinkAccountSession? session, string what)
    {
        var (code, message) = ErrorOf(answer);
        if (code == 0)
        {
            session?.Succeeded();
            return;
        }
        if (code == -14)
        {
            var now = _time.GetUtcNow();
            var until = session is null ? now + _options.SessionExpiredCooldown : session.SessionExpired(now);
            if (until is null)
            {
                throw new PlatformException(ErrorClass.Auth, "session_expired",
                    "iLink still reports the session expired (errcode -14) after the cool-down; the bot token is dead. Pair the account again.");
            }
            throw new PlatformException(ErrorClass.Cooldown, "session_expired",
                $"iLink {what}: session expired (errcode -14); no calls for this account until the cool-down ends.")
            {
                Until = until,
            };
        }
        throw new PlatformException(ErrorClass.Transient, "ilink_error",
            $"iLink {what} failed with code {code}{(message is null ? "" : $": {message}")}.");
    }

    private ILinkAccountSession SessionOf(ConnectorContext context, ILinkCredentials creds)
    {
        var hash = Secrets.Hash(creds.BotToken);
        return _sessions.AddOrUpdate(
            context.AccountId,
            _ => new ILinkAccountSession(hash, _options),
            (_, existing) => existing.TokenHash == hash ? existing : new ILinkAccountSession(hash, _options));
    }

    private void ForgetStalePairings(DateTimeOffset now)
    {
        foreach (var (key, track) in _pairings)
        {
            if (now - track.Started > 2 * _options.QrLifetime)
            {
                _pairings.TryRemove(key, out _);
            }
        }
    }

    private JsonObject BaseInfo() => new() { ["channel_version"] = _options.ChannelVersion, ["bot_agent"] = "QrOrleans" };

    /// <summary>Pieces of at most <paramref name="max"/> UTF-16 units that never split a surrogate pair.</summary>
    internal static IEnumerable<string> Chunks(string text, int max)
    {
        if (text.Length <= max)
        {
            yield return text;
            yield break;
        }
        for (var start = 0; start < text.Length;)
        {
            var length = Math.Min(max, text.Length - start);
            if (length < text.Length - start && char.IsHighSurrogate(text[start + length - 1]))
            {
                length--;
            }
            yield return text.Substring(start, length);
            start += length;
        }
    }

    /// <summary>A login in progress: where its status is polled (moves on a trusted redirect) and the last progress seen.</summary>
    private sealed class PairingTrack(Uri pollBase, DateTimeOffset started)
    {
        public Uri PollBase { get; set; } = pollBase;
        public PairingProgress Last { get; set; } = PairingProgress.Waiting;
        public DateTimeOffset Started { get; } = started;
    }
}
