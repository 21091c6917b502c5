using System.Globalization;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.IdentityModel.JsonWebTokens;
using QrOrleans.Gateway.Problems;

namespace QrOrleans.Gateway;

/// <summary>Per-IP limits on session creation and scans, per-user limits on approvals (429 + Retry-After).</summary>
public static class RateLimits
{
    public const string SessionCreation = "session-creation";
    public const string Scans = "scans";
    public const string Approvals = "approvals";

    public static IServiceCollection AddQrRateLimits(this IServiceCollection services, RateLimitOptions options)
    {
        services.AddRateLimiter(limiter =>
        {
            limiter.AddPolicy(SessionCreation, context => PerMinute("ip:" + context.Connection.RemoteIpAddress, options.SessionsPerMinutePerIp, options.Enabled));
            limiter.AddPolicy(Scans, context => PerMinute("ip:" + context.Connection.RemoteIpAddress, options.ScansPerMinutePerIp, options.Enabled));
            limiter.AddPolicy(Approvals, context => options.Enabled
                ? PerMinute("user:" + UserOf(context), options.ApprovalsPerMinutePerUser, enabled: true)
                : RateLimitPartition.GetNoLimiter("off")); // no token parsing when limits are off
            limiter.OnRejected = async (rejected, ct) =>
            {
                var seconds = rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var retry) ? (int)Math.Ceiling(retry.TotalSeconds) : 60;
                rejected.HttpContext.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
                await ProblemResponses.Write(rejected.HttpContext, ProblemResponses.Create(429, "rate_limited", "Too many requests",
                    $"Slow down; try again in {seconds} s.")).ConfigureAwait(false);
            };
        });
        return services;
    }

    private static RateLimitPartition<string> PerMinute(string key, int permits, bool enabled) =>
        enabled
            ? RateLimitPartition.GetFixedWindowLimiter(key, _ => new FixedWindowRateLimiterOptions
            {
                PermitLimit = permits,
                Window = TimeSpan.FromMinutes(1),
                QueueLimit = 0,
            })
            : RateLimitPartition.GetNoLimiter(key);

    /// <summary>The token's subject, read without validating it: the endpoint validates; this only buckets.</summary>
    private static string UserOf(HttpContext context)
    {
        var header = context.Request.Headers.Authorization.ToString();
        if (header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            try
            {
                return new JsonWebToken(header[7..].Trim()).Subject ?? "anonymous";
            }
            catch (ArgumentException)
            {
                // not a JWT: the endpoint will answer 401
            }
        }
        return "anonymous:" + context.Connection.RemoteIpAddress;
    }
}
