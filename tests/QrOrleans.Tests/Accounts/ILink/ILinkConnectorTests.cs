using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Time.Testing;
using QrOrleans.Accounts;
using QrOrleans.Grains.Connectors.ILink;

namespace QrOrleans.Tests.Accounts.ILink;

/// <summary>The iLink connector against a local emulator of the iLink bot endpoints: pairing, session, error classes.</summary>
public sealed class ILinkConnectorTests : IAsyncLifetime
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(30) };

    // generous bounds where a slow answer would change the outcome (two shared cores, builds running alongside):
    // a health poll still held when HealthPoll ends counts as healthy
    private static readonly ILinkOptions Fast = new()
    {
        RequestTimeout = TimeSpan.FromSeconds(5),
        HealthPoll = TimeSpan.FromSeconds(1),
        MinStatusPollInterval = TimeSpan.FromMilliseconds(50),
    };

    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(2);

    private ILinkEmulator _emulator = null!;
    private ILinkConnector _connector = null!;

    public async ValueTask InitializeAsync()
    {
        _emulator = await ILinkEmulator.StartAsync();
        _connector = new ILinkConnector(Http, Fast);
    }

    public async ValueTask DisposeAsync() => await _emulator.DisposeAsync();

    private ConnectorContext Context(string account = "acct-1") =>
        new(account, "Support bot", JsonSerializer.SerializeToElement(new { baseUrl = _emulator.BaseUrl.ToString() }));

    private string Credentials(string? token = null) =>
        new ILinkCredentials(token ?? _emulator.BotToken, _emulator.BaseUrl.ToString(), _emulator.BotId, _emulator.OwnerId).ToJson();

    private async Task<PairingStatus> PollAsync(PairingCode code) => await _connector.PollPairingAsync(Context(), code, Wait, default);

    // ---- pairing ----------------------------------------------------------------------------------

    [Fact]
    public async Task A_pairing_code_comes_from_get_bot_qrcode_with_bot_type_3_and_no_token()
    {
        var before = DateTimeOffset.UtcNow;
        var code = await _connector.BeginPairingAsync(Context(), default);

        var request = Assert.Single(_emulator.Requests);
        Assert.Equal(("POST", "get_bot_qrcode", "3"), (request.Method, request.Endpoint, request.Query["bot_type"]));
        Assert.Empty(request.Json["local_token_list"]!.AsArray());
        Assert.Null(request.Header("Authorization"));
        Assert.Equal("bot", request.Header("iLink-App-Id"));
        Assert.StartsWith("https://liteapp.weixin.qq.com/q/", code.QrContent);
        Assert.StartsWith("emu-qr-", code.Handle);
        Assert.InRange(code.ExpiresAt, before + TimeSpan.FromMinutes(5), DateTimeOffset.UtcNow + TimeSpan.FromMinutes(5));
    }

    [Theory]
    [InlineData("wait", PairingProgress.Waiting)]
    [InlineData("scaned", PairingProgress.Scanned)]
    [InlineData("expired", PairingProgress.Expired)]
    public async Task A_status_maps_to_its_progress(string status, PairingProgress expected)
    {
        var code = await _connector.BeginPairingAsync(Context(), default);
        _emulator.ScriptStatuses(status);

        var polled = await PollAsync(code);

        Assert.Equal(expected, polled.Progress);
        Assert.Null(polled.Credentials);
        var poll = Assert.Single(_emulator.RequestsTo("get_qrcode_status"));
        Assert.Equal(code.Handle, poll.Query["qrcode"]);
        Assert.Null(poll.Header("Authorization"));
    }

    [Fact]
    public async Task Confirmed_yields_credentials_holding_the_bot_token_base_url_and_ids()
    {
        var code = await _connector.BeginPairingAsync(Context(), default);
        _emulator.ScriptStatuses("scaned", "confirmed");

        Assert.Equal(PairingProgress.Scanned, (await PollAsync(code)).Progress);
        var confirmed = await PollAsync(code);

        Assert.Equal(PairingProgress.Confirmed, confirmed.Progress);
        var stored = JsonNode.Parse(confirmed.Credentials!)!.AsObject();
        Assert.Equal(1, (int)stored["v"]!);
        Assert.Equal(_emulator.BotToken, (string?)stored["botToken"]);
        Assert.Equal(_emulator.BaseUrl.ToString(), (string?)stored["baseUrl"]);
        Assert.Equal(_emulator.BotId, (string?)stored["botId"]);
        Assert.Equal(_emulator.OwnerId, (string?)stored["userId"]);
        Assert.DoesNotContain(_emulator.BotToken, ILinkCredentials.Parse(confirmed.Credentials!).ToString());
    }

    [Fact]
    public async Task A_long_poll_with_no_news_is_bounded_by_the_wait_and_keeps_the_last_progress()
    {
        _emulator.StatusHold = TimeSpan.FromSeconds(30);
        var code = await _connector.BeginPairingAsync(Context(), default);
        _emulator.ScriptStatuses("scaned");
        Assert.Equal(PairingProgress.Scanned, (await PollAsync(code)).Progress);

        var clock = Stopwatch.StartNew();
        var held = await _connector.PollPairingAsync(Context(), code, TimeSpan.FromMilliseconds(300), default);

        Assert.Equal(PairingProgress.Scanned, held.Progress); // a silent server does not undo the scan
        Assert.InRange(clock.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(3));
    }

    [Fact]
    public async Task A_status_without_news_is_answered_only_after_the_minimum_poll_interval()
    {
        // On a fake clock the interval passes only when the test says so: a floor that waited on real time, or not
        // at all, would answer before the clock moved.
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var connector = new ILinkConnector(Http, Fast with { MinStatusPollInterval = TimeSpan.FromSeconds(10) }, clock);
        var code = await connector.BeginPairingAsync(Context(), default);
        _emulator.ScriptStatuses("wait");

        var poll = connector.PollPairingAsync(Context(), code, TimeSpan.FromSeconds(30), default);
        await Cluster.Diagnostics.EventuallyAsync(TimeSpan.FromSeconds(10), () => Task.FromResult(_emulator.RequestsTo("get_qrcode_status").Count == 1),
            () => "the status poll reached the emulator");
        await Task.Delay(300);
        Assert.False(poll.IsCompleted, "answered before the interval");
        clock.Advance(TimeSpan.FromSeconds(9));
        await Task.Delay(300);
        Assert.False(poll.IsCompleted, "answered a second before the interval ended");
        clock.Advance(TimeSpan.FromSeconds(1));

        Assert.Equal(PairingProgress.Waiting, (await poll.WaitAsync(TimeSpan.FromSeconds(5))).Progress);
        Assert.Single(_emulator.RequestsTo("get_qrcode_status")); // waited, not polled again
    }

    [Fact]
    public async Task Scaned_but_redirect_moves_the_following_polls_to_the_redirect_host()
    {
        await using var otherDataCentre = await ILinkEmulator.StartAsync();
        var code = await _connector.BeginPairingAsync(Context(), default);
        _emulator.ScriptStatus(new JsonObject { ["status"] = "scaned_but_redirect", ["redirect_host"] = otherDataCentre.HostAndPort });
        otherDataCentre.ScriptStatuses("confirmed");

        Assert.Equal(PairingProgress.Scanned, (await PollAsync(code)).Progress);
        var confirmed = await PollAsync(code);

        Assert.Equal(PairingProgress.Confirmed, confirmed.Progress);
        Assert.Single(_emulator.RequestsTo("get_qrcode_status"));
        Assert.Equal(code.Handle, Assert.Single(otherDataCentre.RequestsTo("get_qrcode_status")).Query["qrcode"]);
        Assert.Equal(otherDataCentre.BotToken, ILinkCredentials.Parse(confirmed.Credentials!).BotToken);
    }

    [Fact]
    public async Task A_redirect_to_an_untrusted_host_is_not_followed()
    {
        var code = await _connector.BeginPairingAsync(Context(), default);
        _emulator.ScriptStatus(new JsonObject { ["status"] = "scaned_but_redirect", ["redirect_host"] = "ilink.attacker.example" });
        _emulator.ScriptStatuses("expired");

        Assert.Equal(PairingProgress.Scanned, (await PollAsync(code)).Progress);
        Assert.Equal(PairingProgress.Expired, (await PollAsync(code)).Progress);
        Assert.Equal(2, _emulator.RequestsTo("get_qrcode_status").Count);
    }

    [Fact]
    public async Task Need_verifycode_fails_the_pairing_as_auth_verify_code_required()
    {
        var code = await _connector.BeginPairingAsync(Context(), default);
        _emulator.ScriptStatuses("scaned", "need_verifycode");
        await PollAsync(code);

        var error = await Assert.ThrowsAsync<PlatformException>(() => PollAsync(code));

        Assert.Equal((ErrorClass.Auth, "verify_code_required"), (error.Class, error.Code));
    }

    [Fact]
    public async Task Verify_code_blocked_is_a_cooldown()
    {
        var code = await _connector.BeginPairingAsync(Context(), default);
        _emulator.ScriptStatuses("verify_code_blocked");
        var before = DateTimeOffset.UtcNow;

        var error = await Assert.ThrowsAsync<PlatformException>(() => PollAsync(code));

        Assert.Equal((ErrorClass.Cooldown, "verify_code_blocked"), (error.Class, error.Code));
        Assert.InRange(error.Until!.Value, before + TimeSpan.FromMinutes(10), DateTimeOffset.UtcNow + TimeSpan.FromMinutes(10));
    }

    [Fact]
    public async Task Binded_redirect_fails_the_pairing_as_auth_already_bound()
    {
        var code = await _connector.BeginPairingAsync(Context(), default);
        _emulator.ScriptStatuses("binded_redirect");

        var error = await Assert.ThrowsAsync<PlatformException>(() => PollAsync(code));

        Assert.Equal((ErrorClass.Auth, "already_bound"), (error.Class, error.Code));
    }

    // ---- session: updates and sending ------------------------------------------------------------

    [Fact]
    public async Task Getupdates_sends_back_the_cursor_the_previous_answer_returned()
    {
        _emulator.QueueUpdate("alice@im.wechat", "hello", "ctx-a1");
        var first = await _connector.GetUpdatesAsync(Context(), Credentials(), Wait, default);
        _emulator.QueueUpdate("alice@im.wechat", "again", "ctx-a2");
        var second = await _connector.GetUpdatesAsync(Context(), Credentials(), Wait, default);

        Assert.Equal(("alice@im.wechat", "hello", "ctx-a1"), (first.Single().From, first.Single().Text, first.Single().ContextToken));
        Assert.Equal("again", Assert.Single(second).Text); // nothing delivered twice
        var polls = _emulator.RequestsTo("getupdates");
        Assert.Equal("", (string?)polls[0].Json["get_updates_buf"]);
        Assert.Equal(_emulator.IssuedCursors[0], (string?)polls[1].Json["get_updates_buf"]);
        Assert.All(polls, p => Assert.Equal("Bearer " + _emulator.BotToken, p.Header("Authorization")));
    }

    [Fact]
    public async Task Sendmessage_echoes_the_context_token_of_the_peers_latest_message_and_carries_the_bot_token()
    {
        _emulator.QueueUpdate("alice@im.wechat", "hi", "ctx-old");
        _emulator.QueueUpdate("alice@im.wechat", "are you there?", "ctx-latest");
        _emulator.QueueUpdate("bob@im.wechat", "yo", "ctx-bob");
        await _connector.CheckHealthAsync(Context(), Credentials(), default);

        await _connector.SendMessageAsync(Context(), Credentials(), "alice@im.wechat", "yes, here", default);

        var send = Assert.Single(_emulator.RequestsTo("sendmessage"));
        var msg = send.Json["msg"]!.AsObject();
        Assert.Equal("ctx-latest", (string?)msg["context_token"]);
        Assert.Equal("alice@im.wechat", (string?)msg["to_user_id"]);
        Assert.Equal(2, (int)msg["message_type"]!);
        Assert.Equal("yes, here", (string?)msg["item_list"]![0]!["text_item"]!["text"]);
        Assert.Equal("Bearer " + _emulator.BotToken, send.Header("Authorization"));
        Assert.Equal("ilink_bot_token", send.Header("AuthorizationType"));
        Assert.False(string.IsNullOrEmpty(send.Header("X-WECHAT-UIN")));
    }

    [Fact]
    public async Task Sending_to_a_peer_with_no_known_context_token_first_learns_it_from_getupdates()
    {
        _emulator.QueueUpdate("carol@im.wechat", "ping", "ctx-carol");

        await _connector.SendMessageAsync(Context(), Credentials(), "carol@im.wechat", "pong", default);

        Assert.Equal(["getupdates", "sendmessage"], _emulator.Requests.Select(r => r.Endpoint));
        Assert.Equal("ctx-carol", (string?)_emulator.RequestsTo("sendmessage")[0].Json["msg"]!["context_token"]);
        // the health-check style poll kept the message for whoever reads updates
        Assert.Equal("ping", Assert.Single(await _connector.GetUpdatesAsync(Context(), Credentials(), TimeSpan.FromMilliseconds(300), default)).Text);
    }

    [Fact]
    public async Task A_text_longer_than_the_limit_goes_out_as_several_messages()
    {
        _emulator.QueueUpdate("alice@im.wechat", "tell me everything", "ctx-a");
        var text = new string('x', 4000) + "tail";

        await _connector.SendMessageAsync(Context(), Credentials(), "alice@im.wechat", text, default);

        var parts = _emulator.RequestsTo("sendmessage").Select(r => (string)r.Json["msg"]!["item_list"]![0]!["text_item"]!["text"]!).ToList();
        Assert.Equal([4000, 4], parts.Select(p => p.Length));
        Assert.Equal(text, string.Concat(parts));
    }

    [Fact]
    public async Task A_health_check_that_the_server_holds_is_healthy_and_bounded()
    {
        _emulator.UpdatesHold = TimeSpan.FromSeconds(30);
        var clock = Stopwatch.StartNew();

        var health = await _connector.CheckHealthAsync(Context(), Credentials(), default);

        Assert.Null(health.Credentials);
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(4));
    }

    // ---- error classes ---------------------------------------------------------------------------

    [Fact]
    public async Task Errcode_minus_14_cools_the_account_down_for_an_hour()
    {
        _emulator.ExpireSessionOnNextCall();
        var before = DateTimeOffset.UtcNow;

        var error = await Assert.ThrowsAsync<PlatformException>(() => _connector.CheckHealthAsync(Context(), Credentials(), default));

        Assert.Equal((ErrorClass.Cooldown, "session_expired"), (error.Class, error.Code));
        Assert.InRange(error.Until!.Value, before + TimeSpan.FromHours(1), DateTimeOffset.UtcNow + TimeSpan.FromHours(1));
    }

    [Fact]
    public async Task Errcode_minus_14_again_after_the_cooldown_means_the_token_is_dead()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var connector = new ILinkConnector(Http, Fast, clock);
        _emulator.ExpireSessionOnNextCall();
        var first = await Assert.ThrowsAsync<PlatformException>(() => connector.CheckHealthAsync(Context(), Credentials(), default));

        clock.SetUtcNow(first.Until!.Value);
        _emulator.ExpireSessionOnNextCall();
        var second = await Assert.ThrowsAsync<PlatformException>(() => connector.CheckHealthAsync(Context(), Credentials(), default));

        Assert.Equal(ErrorClass.Cooldown, first.Class);
        Assert.Equal((ErrorClass.Auth, "session_expired"), (second.Class, second.Code));
    }

    [Fact]
    public async Task A_successful_call_between_two_minus_14s_starts_a_fresh_cooldown()
    {
        var clock = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var connector = new ILinkConnector(Http, Fast, clock);
        _emulator.ExpireSessionOnNextCall();
        await Assert.ThrowsAsync<PlatformException>(() => connector.CheckHealthAsync(Context(), Credentials(), default));
        clock.Advance(TimeSpan.FromHours(1));
        await connector.CheckHealthAsync(Context(), Credentials(), default);

        _emulator.ExpireSessionOnNextCall();
        var again = await Assert.ThrowsAsync<PlatformException>(() => connector.CheckHealthAsync(Context(), Credentials(), default));

        Assert.Equal(ErrorClass.Cooldown, again.Class);
        Assert.Equal(clock.GetUtcNow() + TimeSpan.FromHours(1), again.Until);
    }

    [Fact]
    public async Task Http_429_is_rate_limited_with_the_retry_after_of_the_header()
    {
        _emulator.AnswerHttpOnNextCall(429, retryAfter: "7");

        var error = await Assert.ThrowsAsync<PlatformException>(
            () => _connector.SendMessageAsync(Context(), Credentials(), "alice@im.wechat", "hi", default));

        Assert.Equal((ErrorClass.RateLimited, TimeSpan.FromSeconds(7)), (error.Class, error.RetryAfter));
    }

    [Fact]
    public async Task Http_500_is_transient()
    {
        _emulator.AnswerHttpOnNextCall(500, endpoint: "get_bot_qrcode");

        var error = await Assert.ThrowsAsync<PlatformException>(() => _connector.BeginPairingAsync(Context(), default));

        Assert.Equal((ErrorClass.Transient, "server_error"), (error.Class, error.Code));
    }

    [Fact]
    public async Task A_call_that_outlasts_its_timeout_is_transient()
    {
        _emulator.QueueUpdate("alice@im.wechat", "hi", "ctx-a");
        _emulator.StallNextCall(TimeSpan.FromSeconds(20), endpoint: "sendmessage");
        var impatient = new ILinkConnector(Http, Fast with { RequestTimeout = TimeSpan.FromSeconds(1) });
        var clock = Stopwatch.StartNew();

        var error = await Assert.ThrowsAsync<PlatformException>(
            () => impatient.SendMessageAsync(Context(), Credentials(), "alice@im.wechat", "hi", default));

        Assert.Equal((ErrorClass.Transient, "timeout"), (error.Class, error.Code));
        Assert.InRange(clock.Elapsed, TimeSpan.FromSeconds(0.9), TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task An_unreachable_platform_is_transient()
    {
        var gone = _emulator.BaseUrl;
        await _emulator.DisposeAsync();
        _emulator = await ILinkEmulator.StartAsync();
        var context = new ConnectorContext("acct-1", "Support bot", JsonSerializer.SerializeToElement(new { baseUrl = gone.ToString() }));

        var error = await Assert.ThrowsAsync<PlatformException>(() => _connector.BeginPairingAsync(context, default));

        Assert.Equal((ErrorClass.Transient, "network"), (error.Class, error.Code));
    }

    [Fact]
    public async Task A_refused_bot_token_is_an_auth_failure()
    {
        var error = await Assert.ThrowsAsync<PlatformException>(
            () => _connector.CheckHealthAsync(Context(), Credentials(token: "revoked-token"), default));

        Assert.Equal((ErrorClass.Auth, "unauthorized"), (error.Class, error.Code));
        Assert.DoesNotContain("revoked-token", error.Message);
    }

    [Fact]
    public async Task Http_403_is_an_auth_failure()
    {
        _emulator.AnswerHttpOnNextCall(403, endpoint: "sendmessage");
        _emulator.QueueUpdate("alice@im.wechat", "hi", "ctx-a");

        var error = await Assert.ThrowsAsync<PlatformException>(
            () => _connector.SendMessageAsync(Context(), Credentials(), "alice@im.wechat", "hi", default));

        Assert.Equal(ErrorClass.Auth, error.Class);
    }

    [Fact]
    public async Task Another_non_zero_errcode_is_transient()
    {
        _emulator.AnswerErrcodeOnNextCall(-2, "param error", endpoint: "sendmessage");
        _emulator.QueueUpdate("alice@im.wechat", "hi", "ctx-a");

        var error = await Assert.ThrowsAsync<PlatformException>(
            () => _connector.SendMessageAsync(Context(), Credentials(), "alice@im.wechat", "hi", default));

        Assert.Equal((ErrorClass.Transient, "ilink_error"), (error.Class, error.Code));
        Assert.Contains("-2", error.Message);
    }

    [Fact]
    public async Task Unreadable_credentials_mean_pairing_again()
    {
        var error = await Assert.ThrowsAsync<PlatformException>(() => _connector.CheckHealthAsync(Context(), "{\"not\":\"ours\"}", default));

        Assert.Equal((ErrorClass.Auth, "invalid_credentials"), (error.Class, error.Code));
        Assert.Empty(_emulator.Requests);
    }

    [Fact]
    public async Task Logout_tells_the_platform_the_client_stops()
    {
        await _connector.LogoutAsync(Context(), Credentials(), default);

        var stop = Assert.Single(_emulator.Requests);
        Assert.Equal(("msg/notifystop", "Bearer " + _emulator.BotToken), (stop.Endpoint, stop.Header("Authorization")));
    }
}

public sealed class ILinkRedirectTrustTests
{
    [Theory]
    [InlineData("https://ilinkai.weixin.qq.com/", "sz.weixin.qq.com", "https://sz.weixin.qq.com/")]
    [InlineData("https://ilinkai.weixin.qq.com/", "ilinkai.weixin.qq.com:8443", "https://ilinkai.weixin.qq.com:8443/")]
    [InlineData("http://127.0.0.1:5000/", "127.0.0.1:5001", "http://127.0.0.1:5001/")]
    [InlineData("https://ilinkai.weixin.qq.com/", "weixin.qq.com.attacker.example", null)]
    [InlineData("https://ilinkai.weixin.qq.com/", "qq.com", null)]
    [InlineData("https://ilinkai.weixin.qq.com/", "sz.weixin.qq.com/steal?x=1", null)]
    [InlineData("https://ilinkai.weixin.qq.com/", "user@sz.weixin.qq.com", null)]
    [InlineData("https://ilinkai.weixin.qq.com/", "", null)]
    [InlineData("http://127.0.0.1:5000/", "10.0.0.1:5000", null)]
    [InlineData("https://example.com/", "evil.com", null)]
    public void A_login_follows_only_redirects_to_the_configured_host_or_its_siblings(string configured, string redirectHost, string? expected)
    {
        Assert.Equal(expected, ILinkUrls.TrustedRedirect(new Uri(configured), redirectHost)?.ToString());
    }
}
