using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Net.Http.Headers;

namespace QrOrleans.Gateway.Problems;

/// <summary>Every error leaves as application/problem+json with a snake_case <c>code</c> (RFC 9457 extension).</summary>
public static partial class ProblemResponses
{
    public static ProblemDetails Create(int status, string code, string title, string? detail) => new()
    {
        Status = status,
        Title = title,
        Detail = detail,
        Extensions = { ["code"] = code },
    };

    /// <summary>Maps exceptions that escape an endpoint to problem+json; anything unexpected is a 500 without internals.</summary>
    public static IApplicationBuilder UseProblemResponses(this IApplicationBuilder app)
    {
        app.UseExceptionHandler(new ExceptionHandlerOptions
        {
            StatusCodeSelector = _ => 500,
            ExceptionHandler = async context =>
            {
                var error = context.Features.Get<IExceptionHandlerFeature>()?.Error;
                await Write(context, Map(error, context, Log(context))).ConfigureAwait(false);
            },
        });
        app.UseStatusCodePages(async status =>
        {
            var context = status.HttpContext;
            var code = context.Response.StatusCode switch
            {
                404 => ("not_found", "Not found", "There is nothing at this address."),
                405 => ("method_not_allowed", "Method not allowed", $"{context.Request.Method} is not allowed here."),
                413 => ("payload_too_large", "Request body too large", "The request body exceeds the size limit."),
                416 => ("range_not_satisfiable", "Range not satisfiable", "The requested range is not within the file."),
                415 => ("unsupported_media_type", "Unsupported media type", "Send the body as application/json."),
                400 => ("bad_request", "Bad request", null),
                _ => ("http_" + context.Response.StatusCode, "Request failed", null),
            };
            await Write(context, Create(context.Response.StatusCode, code.Item1, code.Item2, code.Item3)).ConfigureAwait(false);
        });
        // Refusals are answers, not failures: written here, before the exception handler would log them as errors.
        app.Use(async (context, next) =>
        {
            if (Refusal(context.Request) is { } refusal)
            {
                await Write(context, refusal).ConfigureAwait(false);
                return;
            }
            try
            {
                await next(context).ConfigureAwait(false);
            }
            catch (Exception e) when (e is GrainException or BadHttpRequestException && !context.Response.HasStarted)
            {
                await Write(context, Map(e, context, NullLogger.Instance)).ConfigureAwait(false);
            }
            catch (Exception e) when (Unavailable(e) && !context.Response.HasStarted)
            {
                LogStorageUnavailable(Log(context), e.Message);
                await Write(context, Map(e, context, NullLogger.Instance)).ConfigureAwait(false);
            }
        });
        return app;
    }

    /// <summary>
    /// Requests the framework would refuse in a way no client can read: ASP.NET Core throws (a 500) reading a JSON body
    /// whose charset it has no decoder for (utf-7, a made-up name) and a form in utf-7, and SignalR answers a negotiate
    /// that is no POST with a bare text/plain 405.
    /// </summary>
    private static ProblemDetails? Refusal(HttpRequest request)
    {
        if (request.Path.StartsWithSegments("/hubs") && request.Path.Value!.EndsWith("/negotiate", StringComparison.Ordinal)
            && !HttpMethods.IsPost(request.Method))
        {
            request.HttpContext.Response.Headers.Allow = "POST";
            return Create(405, "method_not_allowed", "Method not allowed", $"{request.Method} is not allowed here.");
        }
        if (!MediaTypeHeaderValue.TryParse(request.ContentType, out var type) || type.Charset is not { Length: > 0 } quoted || !IsReadBody(type))
        {
            return null;
        }
        var charset = HeaderUtilities.RemoveQuotes(quoted);
        if (charset != quoted)
        {
            // charset="utf-8" is valid HTTP, but the JSON reader takes the quotes for part of the name.
            type.Charset = charset;
            request.ContentType = type.ToString();
        }
        try
        {
            _ = charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase) ? null : Encoding.GetEncoding(charset.ToString());
            return null;
        }
        catch (Exception e) when (e is ArgumentException or NotSupportedException)
        {
            return Create(415, "unsupported_media_type", "Unsupported media type", $"The charset '{charset}' cannot be read; send the body as UTF-8.");
        }
    }

    /// <summary>The bodies the gateway reads: JSON (and +json), and the dashboard's sign-in form.</summary>
    private static bool IsReadBody(MediaTypeHeaderValue type) =>
        type.Suffix.Equals("json", StringComparison.OrdinalIgnoreCase)
        || type.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase)
        || type.MediaType.Equals("application/x-www-form-urlencoded", StringComparison.OrdinalIgnoreCase)
        || type.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase);

    public static async Task Write(HttpContext context, ProblemDetails problem)
    {
        context.Response.StatusCode = problem.Status ?? 500;
        if (problem.Extensions.TryGetValue("retryAfter", out var retry) && retry is int seconds)
        {
            context.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        await context.Response.WriteAsJsonAsync(problem, (JsonSerializerOptions?)null, "application/problem+json").ConfigureAwait(false);
    }

    private static ILogger Log(HttpContext context) =>
        context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger("QrOrleans.Errors");

    private static ProblemDetails Map(Exception? error, HttpContext context, ILogger log)
    {
        switch (error)
        {
            case GrainException g:
                var problem = Create(g.Status, g.Code, g.Title, g.Detail);
                foreach (var (name, value) in g.Extensions ?? new Dictionary<string, object?>())
                {
                    problem.Extensions[name] = value;
                }
                if (g.RetryAfter is { } at)
                {
                    // Written as the Retry-After header by Write, and kept in the body for clients that prefer JSON.
                    var now = context.RequestServices.GetRequiredService<TimeProvider>().GetUtcNow();
                    problem.Extensions["retryAfter"] = Math.Max(1, (int)Math.Ceiling((at - now).TotalSeconds));
                }
                return problem;
            case BadHttpRequestException { StatusCode: 413 }:
                return Create(413, "payload_too_large", "Request body too large", "The request body exceeds the size limit.");
            case BadHttpRequestException { StatusCode: 415 }:
                return Create(415, "unsupported_media_type", "Unsupported media type", "Send the body as application/json.");
            case BadHttpRequestException { InnerException: JsonException json }:
                return Create(400, "invalid_json", "Malformed JSON", JsonDetail(json));
            case BadHttpRequestException { StatusCode: 400 } bad when BindingFailure().Match(bad.Message) is { Success: true } m:
                // A query or route value that is no number, date, … of the parameter's type ("waitForVersion=1e400").
                return m.Groups["source"].Value switch
                {
                    "body" => MissingBody(),
                    "" => Validation($"The value of {m.Groups["name"].Value} is not valid."),
                    _ => Validation($"{m.Groups["name"].Value} is required."),
                };
            case BadHttpRequestException { StatusCode: 400 } bad when bad.Message.StartsWith("Implicit body inferred", StringComparison.Ordinal):
                return MissingBody();
            case BadHttpRequestException bad:
                return Create(bad.StatusCode, "bad_request", "Bad request", bad.Message);
            case Orleans.Storage.InconsistentStateException:
                // Still conflicting after the retries: another activation keeps writing. Retryable, not a bug.
                var conflict = Create(503, "conflict", "Concurrent change", "The resource changed concurrently; try again.");
                conflict.Extensions["retryAfter"] = 1;
                return conflict;
            case not null when Unavailable(error):
                // Redis restarting, a silo just died, or the cluster unreachable: a retryable condition, not a bug.
                var unavailable = Create(503, "storage_unavailable", "Storage unavailable", "The cluster's storage is not reachable right now; try again shortly.");
                unavailable.Extensions["retryAfter"] = 1;
                return unavailable;
            case OperationCanceledException:
                return Create(499, "client_closed_request", "Request cancelled", null);
            default:
                LogUnhandled(log, error);
                return Create(500, "internal_error", "Internal error", "Something went wrong on our side.");
        }
    }

    private static ProblemDetails Validation(string detail)
    {
        var e = Errors.Validation(detail);
        return Create(e.Status, e.Code, e.Title, e.Detail);
    }

    private static ProblemDetails MissingBody() => Create(400, "invalid_json", "Malformed JSON", "A JSON body is required.");

    /// <summary>Failures of the cluster or its storage that go away by themselves (the caller should retry).</summary>
    /// <remarks>
    /// Orleans' Redis storage reports a lost connection as a <c>RedisStorageException</c> that carries the Redis error
    /// only in its message (no inner exception), inside an <c>OrleansException</c>: found by the soak's Redis restart,
    /// where it was a 500 internal_error.
    /// </remarks>
    public static bool Unavailable(Exception e) => e switch
    {
        Orleans.Storage.InconsistentStateException => true,
        TimeoutException or Orleans.Runtime.SiloUnavailableException or Orleans.Runtime.OrleansMessageRejectionException => true,
        Orleans.Runtime.ClientNotAvailableException or StackExchange.Redis.RedisException => true,
        Orleans.Persistence.Redis.RedisStorageException => true,
        Orleans.Runtime.OrleansException { InnerException: { } inner } => Unavailable(inner),
        _ => false,
    };

    private static string JsonDetail(JsonException json) =>
        json.Path is { Length: > 0 } path
            ? $"The body is not valid for this call at '{path}' (line {json.LineNumber + 1})."
            : "The body is not valid JSON.";

    /// <summary>
    /// Minimal APIs' binding refusals (ThrowOnBadRequest): 'Failed to bind parameter "Nullable&lt;long&gt; waitForVersion"
    /// from "abc".' and 'Required parameter "T name" was not provided from query.' The .NET type is left out of the answer.
    /// </summary>
    [System.Text.RegularExpressions.GeneratedRegex("""^(?:Failed to bind parameter "(?:\S+ )?(?<name>[^"]+)" from|Required parameter "(?:\S+ )?(?<name>[^"]+)" was not provided from (?<source>\w+))""")]
    private static partial System.Text.RegularExpressions.Regex BindingFailure();

    [LoggerMessage(LogLevel.Warning, "Storage unavailable: {Reason}")]
    private static partial void LogStorageUnavailable(ILogger log, string reason);

    [LoggerMessage(LogLevel.Error, "Unhandled error")]
    private static partial void LogUnhandled(ILogger log, Exception? e);
}
