namespace QrOrleans.Grains.Connectors.ILink;

/// <summary>
/// Tunables of the iLink connector. The defaults follow what public iLink clients observe of the real
/// service (35 s long-polls, QR codes that live about five minutes, a one-hour pause after errcode -14);
/// tests shorten the waits.
/// </summary>
public sealed record ILinkOptions
{
    /// <summary>Used when the account's connector settings carry no <c>baseUrl</c>.</summary>
    public static readonly Uri DefaultBaseUrl = new("https://ilinkai.weixin.qq.com/");

    /// <summary>The <c>bot_type</c> of <c>get_bot_qrcode</c>; public clients all send 3 (its meaning is not published).</summary>
    public string BotType { get; init; } = "3";

    /// <summary>The platform does not say when a code expires; public clients see about five minutes.</summary>
    public TimeSpan QrLifetime { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Bound of every call that is not a long-poll (QR issue, send, logout).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How long <c>getupdates</c> may be held when the caller asks for the default wait.</summary>
    public TimeSpan UpdatesLongPoll { get; init; } = TimeSpan.FromSeconds(35);

    /// <summary>
    /// Bound of the <c>getupdates</c> that a health check (and a send to a peer with no known context token)
    /// makes. The server answers a dead token at once, so a poll that is still held when this elapses is healthy.
    /// </summary>
    public TimeSpan HealthPoll { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>A status poll that brings no news takes at least this long, so a caller's loop never spins.</summary>
    public TimeSpan MinStatusPollInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>errcode -14 (session expired): the official plugin pauses the account for an hour.</summary>
    public TimeSpan SessionExpiredCooldown { get; init; } = TimeSpan.FromHours(1);

    /// <summary>verify_code_blocked: no public source gives a duration; ten minutes keeps the owner from burning more codes.</summary>
    public TimeSpan VerifyCodeBlockedCooldown { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Used when a 429 carries no (usable) Retry-After header.</summary>
    public TimeSpan DefaultRetryAfter { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Public clients cap one text message at 4000 characters; longer texts are sent as several messages.</summary>
    public int MaxTextLength { get; init; } = 4000;

    /// <summary>Value of the <c>iLink-App-Id</c> header.</summary>
    public string AppId { get; init; } = "bot";

    /// <summary>Value of the <c>iLink-App-ClientVersion</c> header: <c>major&lt;&lt;16 | minor&lt;&lt;8 | patch</c> (1.0.0 here).</summary>
    public string ClientVersion { get; init; } = "65536";

    /// <summary><c>base_info.channel_version</c> of POST bodies (observability only).</summary>
    public string ChannelVersion { get; init; } = "1.0.0";

    /// <summary>Context tokens remembered per account; the oldest peers are forgotten past this.</summary>
    public int MaxKnownPeers { get; init; } = 1000;

    /// <summary>Received messages a health check keeps for a later <see cref="ILinkConnector.GetUpdatesAsync"/>.</summary>
    public int MaxBufferedMessages { get; init; } = 200;
}
