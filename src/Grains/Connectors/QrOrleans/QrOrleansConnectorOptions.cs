namespace QrOrleans.Grains.Connectors.QrOrleansServer;

/// <summary>Tunables of the QrOrleans connector; tests shorten the waits.</summary>
public sealed record QrOrleansConnectorOptions
{
    /// <summary>Bound of every call that is not a long-poll (session creation, claim, refresh, revoke).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>The server holds a long-poll at most 30 s (API.md); one poll asks for no more than this.</summary>
    public TimeSpan MaxLongPoll { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Used when a 429 carries no (usable) Retry-After header.</summary>
    public TimeSpan DefaultRetryAfter { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The server refuses client names longer than this.</summary>
    public int MaxClientName { get; init; } = 80;
}
