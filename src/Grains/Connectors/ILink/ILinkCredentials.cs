using System.Text.Json;
using System.Text.Json.Serialization;
using QrOrleans.Accounts;

namespace QrOrleans.Grains.Connectors.ILink;

/// <summary>
/// What a confirmed iLink login yields, stored (sealed) by the grain as one JSON string:
/// <c>{"v":1,"botToken":"…","baseUrl":"https://…/","botId":"…@im.bot","userId":"…@im.wechat"}</c>.
/// </summary>
/// <param name="BotToken">The bearer secret of every authenticated call. Never logged, never in an exception message.</param>
/// <param name="BaseUrl">The API host the platform chose for this account (<c>baseurl</c> of the confirmation).</param>
/// <param name="BotId"><c>ilink_bot_id</c>: the bot account.</param>
/// <param name="UserId"><c>ilink_user_id</c>: the WeChat user who scanned, i.e. the owner the bot talks to.</param>
public sealed record ILinkCredentials(string BotToken, string BaseUrl, string? BotId, string? UserId)
{
    private const int CurrentVersion = 1;

    private static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    public string ToJson() => JsonSerializer.Serialize(new Stored(CurrentVersion, BotToken, BaseUrl, BotId, UserId), Json);

    /// <summary>Reads stored credentials; anything unreadable means the account must pair again.</summary>
    public static ILinkCredentials Parse(string credentials)
    {
        Stored? stored;
        try
        {
            stored = JsonSerializer.Deserialize<Stored>(credentials, Json);
        }
        catch (JsonException)
        {
            stored = null;
        }
        if (stored is not { V: CurrentVersion, BotToken.Length: > 0, BaseUrl: { Length: > 0 } baseUrl }
            || !Uri.TryCreate(baseUrl, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http"))
        {
            throw new PlatformException(ErrorClass.Auth, "invalid_credentials",
                "The stored iLink credentials are unreadable; pair the account again.");
        }
        return new ILinkCredentials(stored.BotToken, baseUrl, stored.BotId, stored.UserId);
    }

    internal Uri ApiBase => ILinkUrls.WithTrailingSlash(new Uri(BaseUrl));

    /// <summary>A record prints all its members by default; this one must never print the token.</summary>
    public override string ToString() => $"ILinkCredentials {{ BotId = {BotId}, BaseUrl = {BaseUrl}, BotToken = *** }}";

    private sealed record Stored(int V, string? BotToken, string? BaseUrl, string? BotId, string? UserId);
}
