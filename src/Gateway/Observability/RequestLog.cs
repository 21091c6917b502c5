using System.Diagnostics;
using Microsoft.Extensions.Options;

namespace QrOrleans.Gateway.Observability;

/// <summary>
/// Our request log, in place of ASP.NET Core's. Codes printed before the fragment shape open
/// /l/&lt;sessionId&gt;.&lt;qrSecret&gt; (today's open /l/#…, whose token is never sent), and the framework writes
/// request paths into its logs (hosting at Information, routing and static files at Debug). Those categories are
/// capped below the level that names paths; this log writes the path with the secret replaced and never the query
/// string. It also counts the QR-session requests this node serves.
/// </summary>
public static partial class RequestLog
{
    /// <summary>
    /// Framework categories that write request paths, hub invocation arguments (desktop tokens) or connection tokens
    /// below these levels. Capped at Warning, the shipped default: a per-request line at Information costs about a
    /// quarter of the server's CPU per ceremony (docs/benchmarks.md). Hosting is off entirely: while it is enabled at
    /// all it opens a log scope per request holding the raw path, which any provider that writes scopes would record.
    /// </summary>
    private static readonly (string Category, LogLevel Minimum)[] Capped =
    [
        ("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None),
        ("Microsoft.AspNetCore.Routing", LogLevel.Warning),
        ("Microsoft.AspNetCore.StaticFiles", LogLevel.Warning),
        ("Microsoft.AspNetCore.Server.Kestrel", LogLevel.Warning),
        ("Microsoft.AspNetCore.SignalR", LogLevel.Warning),
        ("Microsoft.AspNetCore.Http.Connections", LogLevel.Warning),
        ("Microsoft.AspNetCore.Http.Result", LogLevel.Warning),
        ("Microsoft.AspNetCore.Rewrite", LogLevel.Warning),
        // JwtBearer writes every refused token's validation exception at Information.
        ("Microsoft.AspNetCore.Authentication", LogLevel.Warning),
        // At Trace, Orleans prints whole messages (a grain's answer: a refresh token) and whole grain states.
        ("Orleans.Runtime.Messaging", LogLevel.Debug),
        ("Orleans.Storage", LogLevel.Debug),
    ];

    public static ILoggingBuilder AddRedactingFilters(this ILoggingBuilder logging)
    {
        logging.Services.AddSingleton<IPostConfigureOptions<LoggerFilterOptions>, CapsOutrankConfiguration>();
        return logging;
    }

    /// <summary>
    /// The caps hold whatever the configuration says. A plain filter rule would lose to an operator's
    /// "Logging:Console:LogLevel:Default=Trace" (a provider's own rules outrank every general rule) or to a rule for a
    /// category under a capped one; so, after all configuration is applied (and again on every reload), each rule under
    /// a capped category is raised to the cap, and the cap is added for every provider the rules name. A cap only
    /// ever raises a level: where the configuration already asks for less ("Orleans": "Warning" in the shipped
    /// settings), the added rule keeps that level, since a more specific rule at the cap would lower it (Orleans'
    /// storage once wrote ~27 Debug lines per ceremony this way: 8 % of the server's CPU in a profile).
    /// </summary>
    private sealed class CapsOutrankConfiguration : IPostConfigureOptions<LoggerFilterOptions>
    {
        public void PostConfigure(string? name, LoggerFilterOptions options)
        {
            var providers = options.Rules.Select(r => r.ProviderName).Append(null).Distinct().ToList();
            var rules = options.Rules.Select(Raised).ToList();
            rules.AddRange(from provider in providers
                           from cap in Capped
                           let configured = Configured(options, provider, cap.Category)
                           select new LoggerFilterRule(provider, cap.Category, configured > cap.Minimum ? configured : cap.Minimum, null));
            options.Rules.Clear();
            foreach (var rule in rules)
            {
                options.Rules.Add(rule);
            }
        }

        /// <summary>
        /// The level the configured rules give <paramref name="category"/> for <paramref name="provider"/>, chosen as
        /// Microsoft.Extensions.Logging chooses: the provider's own rules before general ones, then the longest
        /// matching category (a '*' matches anything), then the last such rule; without one, the minimum level.
        /// </summary>
        private static LogLevel Configured(LoggerFilterOptions options, string? provider, string category)
        {
            LoggerFilterRule? best = null;
            foreach (var rule in options.Rules)
            {
                if (rule.Filter is not null || (rule.ProviderName is not null && rule.ProviderName != provider) || !Matches(rule.CategoryName, category))
                {
                    continue;
                }
                if (best is null || Outranks(rule, best))
                {
                    best = rule;
                }
            }
            return best?.LogLevel ?? options.MinLevel;
        }

        private static bool Outranks(LoggerFilterRule rule, LoggerFilterRule best)
        {
            if ((rule.ProviderName is null) != (best.ProviderName is null))
            {
                return rule.ProviderName is not null;
            }
            return (rule.CategoryName?.Length ?? 0) >= (best.CategoryName?.Length ?? 0);
        }

        private static bool Matches(string? pattern, string category)
        {
            if (pattern is null)
            {
                return true;
            }
            var star = pattern.IndexOf('*', StringComparison.Ordinal);
            if (star < 0)
            {
                return category.StartsWith(pattern, StringComparison.OrdinalIgnoreCase);
            }
            var (prefix, suffix) = (pattern[..star], pattern[(star + 1)..]);
            return category.Length >= prefix.Length + suffix.Length
                && category.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) && category.EndsWith(suffix, StringComparison.OrdinalIgnoreCase);
        }

        private static LoggerFilterRule Raised(LoggerFilterRule rule)
        {
            foreach (var (category, minimum) in Capped)
            {
                if (rule.CategoryName is { } c && (c == category || c.StartsWith(category + ".", StringComparison.Ordinal))
                    && (rule.LogLevel is null || rule.LogLevel < minimum))
                {
                    return new LoggerFilterRule(rule.ProviderName, rule.CategoryName, minimum, rule.Filter);
                }
            }
            return rule;
        }
    }

    public static IApplicationBuilder UseRequestLog(this IApplicationBuilder app)
    {
        var log = app.ApplicationServices.GetRequiredService<ILoggerFactory>().CreateLogger("QrOrleans.Gateway.Requests");
        var stats = app.ApplicationServices.GetRequiredService<NodeStats>();
        return app.Use(async (context, next) =>
        {
            var path = context.Request.Path.Value ?? "";
            if (path.StartsWith("/v1/qr/", StringComparison.Ordinal) || path.StartsWith("/hubs/qr", StringComparison.Ordinal)
                || path.StartsWith("/l/", StringComparison.Ordinal))
            {
                stats.Served();
            }
            var started = Stopwatch.GetTimestamp();
            try
            {
                await next(context).ConfigureAwait(false);
            }
            finally
            {
                if (log.IsEnabled(LogLevel.Debug))
                {
                    LogRequest(log, context.Request.Method, Silo.Hosting.Telemetry.RedactPath(path), context.Response.StatusCode,
                        Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                }
            }
        });
    }

    [LoggerMessage(LogLevel.Debug, "HTTP {Method} {Path} answered {StatusCode} in {ElapsedMs:0.0} ms")]
    private static partial void LogRequest(ILogger log, string method, string path, int statusCode, double elapsedMs);
}
