namespace QrOrleans.Grains.Accounts;

/// <summary>Timings of the agent fleet (configuration section QrOrleans:Accounts).</summary>
public sealed class AccountOptions
{
    /// <summary>How often a connected account's session is checked.</summary>
    public TimeSpan HealthInterval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>First wait after a transient failure; it doubles per failure up to <see cref="RetryMax"/>.</summary>
    public TimeSpan RetryBase { get; set; } = TimeSpan.FromSeconds(5);

    public TimeSpan RetryMax { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>A transient disconnect that lasts this long is worth one owner notice (account.disconnected).</summary>
    public TimeSpan TransientNoticeAfter { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>Cool-down when the platform throttles without saying until when.</summary>
    public TimeSpan DefaultCooldown { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>Wait when the platform rate-limits without a Retry-After.</summary>
    public TimeSpan DefaultRetryAfter { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>The pairing wall-clock limit is maxCycles × qrTtl plus this (time to reach the platform between codes).</summary>
    public TimeSpan PairingSlack { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Longest single wait for news about a QR code (the platform's long-poll).</summary>
    public TimeSpan PairingPollWait { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Longest a single connector call may take.</summary>
    public TimeSpan ConnectorTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>First wait after a failed webhook delivery; it doubles per attempt up to <see cref="WebhookRetryMax"/>.</summary>
    public TimeSpan WebhookRetryBase { get; set; } = TimeSpan.FromSeconds(1);

    public TimeSpan WebhookRetryMax { get; set; } = TimeSpan.FromMinutes(10);

    /// <summary>Longest wait for an owner's webhook to answer; a timeout counts as a failed attempt.</summary>
    public TimeSpan WebhookTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>Pending deliveries kept per account; past it the oldest waiting ones are dropped.</summary>
    public int OutboxCapacity { get; set; } = 500;

    /// <summary>Doubling backoff: base, 2×base, 4×base … capped.</summary>
    public static TimeSpan Backoff(TimeSpan first, TimeSpan max, int attempt)
    {
        var factor = Math.Pow(2, Math.Clamp(attempt - 1, 0, 30));
        return TimeSpan.FromTicks((long)Math.Min(max.Ticks, first.Ticks * factor));
    }
}
