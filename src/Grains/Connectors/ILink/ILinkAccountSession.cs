namespace QrOrleans.Grains.Connectors.ILink;

/// <summary>
/// What the connector remembers, in memory, about one account's live iLink session: the <c>getupdates</c> cursor,
/// each peer's latest context token, messages a health check received, and when errcode -14 was first seen.
/// Lost on restart or when another silo takes the account over; see <see cref="ILinkConnector"/> for what that costs.
/// </summary>
internal sealed class ILinkAccountSession(string tokenHash, ILinkOptions options)
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, (string Token, long Seen)> _peers = new(StringComparer.Ordinal);
    private readonly Queue<ILinkMessage> _inbox = new();
    private long _sequence;
    private DateTimeOffset? _sessionExpiredSince;

    /// <summary>Hash of the bot token this session belongs to; new credentials start a new session.</summary>
    public string TokenHash { get; } = tokenHash;

    /// <summary>One <c>getupdates</c> at a time: the cursor of one answer is the request of the next.</summary>
    public SemaphoreSlim Updates { get; } = new(1, 1);

    /// <summary>The opaque <c>get_updates_buf</c> to send next; empty on a fresh session. Guarded by <see cref="Updates"/>.</summary>
    public string Cursor { get; set; } = "";

    public void Remember(string peer, string contextToken)
    {
        lock (_gate)
        {
            if (!_peers.ContainsKey(peer) && _peers.Count >= options.MaxKnownPeers)
            {
                _peers.Remove(_peers.MinBy(p => p.Value.Seen).Key);
            }
            _peers[peer] = (contextToken, ++_sequence);
        }
    }

    public string? ContextTokenOf(string peer)
    {
        lock (_gate)
        {
            return _peers.TryGetValue(peer, out var known) ? known.Token : null;
        }
    }

    public void Buffer(IEnumerable<ILinkMessage> messages)
    {
        lock (_gate)
        {
            foreach (var message in messages)
            {
                _inbox.Enqueue(message);
                if (_inbox.Count > options.MaxBufferedMessages)
                {
                    _inbox.Dequeue();
                }
            }
        }
    }

    public List<ILinkMessage> DrainInbox()
    {
        lock (_gate)
        {
            var drained = _inbox.ToList();
            _inbox.Clear();
            return drained;
        }
    }

    /// <summary>
    /// Records an errcode -14 and says when the cool-down it starts ends, or null if one already ran its full
    /// course and the platform still refuses: the token is dead, not resting.
    /// </summary>
    public DateTimeOffset? SessionExpired(DateTimeOffset now)
    {
        lock (_gate)
        {
            _sessionExpiredSince ??= now;
            var until = _sessionExpiredSince.Value + options.SessionExpiredCooldown;
            return now < until ? until : null;
        }
    }

    public void Succeeded()
    {
        lock (_gate)
        {
            _sessionExpiredSince = null;
        }
    }
}
