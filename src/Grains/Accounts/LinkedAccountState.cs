using QrOrleans.Accounts;

namespace QrOrleans.Grains.Accounts;

/// <summary>One pairing ceremony: which code of how many, until when, and the wall-clock limit.</summary>
public sealed record PairingRun(
    long Attempt, int Cycle, int MaxCycles, int QrTtlSeconds, DateTimeOffset? QrExpiresAt, DateTimeOffset Deadline, bool Scanned,
    string? QrContent = null, string? Caption = null);

public sealed record LastError(string Code, string Class, DateTimeOffset At, string? Message);

/// <summary>The per-account rate budget: refilled continuously, one token per send.</summary>
public sealed record TokenBucket(double Tokens, DateTimeOffset UpdatedAt)
{
    public TokenBucket Refill(RateBudgetConfig budget, DateTimeOffset now) =>
        now <= UpdatedAt
            ? this
            : new TokenBucket(Math.Min(budget.Capacity, Tokens + (now - UpdatedAt).TotalMinutes * budget.RefillPerMinute), now);

    public TimeSpan UntilNextToken(RateBudgetConfig budget) =>
        Tokens >= 1 ? TimeSpan.Zero : TimeSpan.FromMinutes((1 - Tokens) / budget.RefillPerMinute);
}

/// <summary>
/// A linked account as stored. Credentials are only ever the vault's sealed string. <see cref="Notices"/> are
/// owner notices made by transitions and not yet handed to the outbox grain.
/// </summary>
public sealed record LinkedAccountState
{
    public required string State { get; init; }
    public required DateTimeOffset StateSince { get; init; }
    public required AccountConfig Config { get; init; }

    /// <summary>Identifies this life of the account; notice sequence numbers count within it.</summary>
    public required string Incarnation { get; init; }

    public required TokenBucket Bucket { get; init; }
    public string? SealedCredentials { get; init; }

    /// <summary>Bumped whenever the credentials change, so a late report about older credentials is ignored.</summary>
    public long CredentialGeneration { get; init; }

    public DateTimeOffset? LinkedAt { get; init; }
    public PairingRun? Pairing { get; init; }
    public long PairingAttempts { get; init; }
    public DateTimeOffset? CooldownUntil { get; init; }

    /// <summary>The platform rate-limited the account: no calls before this.</summary>
    public DateTimeOffset? NotBefore { get; init; }

    public LastError? LastError { get; init; }

    /// <summary>A health check is due now; the worker does it and reports.</summary>
    public bool CheckDue { get; init; }

    /// <summary>When the next health check falls due (health interval, backoff retry, the platform's Retry-After).</summary>
    public DateTimeOffset? CheckAt { get; init; }

    public int RetryAttempt { get; init; }
    public DateTimeOffset? DisconnectedSince { get; init; }
    public bool DisconnectNoticeSent { get; init; }
    public IReadOnlyList<WebhookNotice> Notices { get; init; } = [];
    public long NextNoticeSeq { get; init; } = 1;
}

/// <summary>
/// The stored document of an account grain: the account (null before creation; kept as a tombstone in state
/// "deleted" while its last notices wait for the outbox) and the version every write increments.
/// </summary>
public sealed record LinkedAccountDocument
{
    public LinkedAccountState? Account { get; init; }
    public long Version { get; init; }
}
