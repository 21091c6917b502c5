namespace QrOrleans.Grains.Connectors.ILink;

/// <summary>A message an iLink bot received (one entry of <c>getupdates</c>' <c>msgs</c>).</summary>
/// <param name="From"><c>from_user_id</c>: the peer to answer with <see cref="ILinkConnector.SendMessageAsync"/>.</param>
/// <param name="Text">The text items joined; empty for media-only messages.</param>
/// <param name="ContextToken">The conversation token a reply must echo; the connector remembers the latest per peer.</param>
/// <param name="MessageId"><c>message_id</c> (a uint64, kept as its decimal string).</param>
public sealed record ILinkMessage(string From, string Text, string? ContextToken, string? MessageId);
