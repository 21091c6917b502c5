namespace QrOrleans.Gateway;

/// <summary>The gateway's own keys of the QrOrleans configuration section (API.md, Configuration).</summary>
public sealed class GatewayOptions
{
    /// <summary>The operator key (X-Api-Key). Generated and printed at start when not configured.</summary>
    public string AdminApiKey { get; set; } = "";

    public string PublicOrigin { get; set; } = "";

    /// <summary>Create a demo user at start and print a signed-in phone link.</summary>
    public bool Demo { get; set; } = true;

    public TimeSpan AccessTokenLifetime { get; set; } = TimeSpan.FromMinutes(15);

    /// <summary>Largest request body accepted, in bytes.</summary>
    public long MaxRequestBodyBytes { get; set; } = 16 * 1024;

    public RateLimitOptions RateLimiting { get; set; } = new();
}

/// <summary>Fixed-window limits: per client IP on session creation and scans, per user on approvals.</summary>
public sealed class RateLimitOptions
{
    public bool Enabled { get; set; } = true;
    public int SessionsPerMinutePerIp { get; set; } = 60;
    public int ScansPerMinutePerIp { get; set; } = 60;
    public int ApprovalsPerMinutePerUser { get; set; } = 30;
}
