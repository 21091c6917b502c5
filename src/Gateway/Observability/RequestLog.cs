using System.Diagnostics;

namespace QrOrleans.Gateway.Observability;

/// <summary>
/// Our request log, in place of ASP.NET Core's: the page a phone's camera opens is /l/&lt;sessionId&gt;.&lt;qrSecret&gt;,
/// and the framework writes request paths into its logs (hosting at Information, routing and static files at
/// Debug). Those categories are capped below the level that names paths; this log writes the path with the
/// secret replaced and never the query string. It also counts the QR-session requests this node serves.
/// </summary>
public static partial class RequestLog
{
    /// <summary>Framework categories that write request paths, hub invocation arguments (desktop tokens) or
    /// connection tokens below these levels. Capped at Warning, the shipped default: a per-request line at
    /// Information costs about a quarter of the server's CPU per ceremony (docs/benchmarks.md). Hosting is off entirely: while it is enabled at all it opens a log
    /// scope per request holding the raw path, which any provider that writes scopes would record.</summary>
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
    ];

    public static ILoggingBuilder AddRedactingFilters(this ILoggingBuilder logging)
    {
        foreach (var (category, minimum) in Capped)
        {
            logging.AddFilter(category, minimum);
        }
        return logging;
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
