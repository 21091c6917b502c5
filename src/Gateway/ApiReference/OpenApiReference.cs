using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.ModelBinding;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.OpenApi;
using Scalar.AspNetCore;

namespace QrOrleans.Gateway.ApiReference;

/// <summary>
/// The OpenAPI document at /openapi/v1.json and Scalar's reference page over it at /openapi. Each operation lists
/// the problem codes it answers with, per status in the response descriptions and all together in
/// <c>x-problem-codes</c>: <c>[{ "code", "status", "title" }]</c>.
/// </summary>
public static class OpenApiReference
{
    public const string DocumentPattern = "/openapi/{documentName}.json";
    public const string PagePath = "/openapi";

    public static IServiceCollection AddApiReference(this IServiceCollection services) =>
        services.AddOpenApi(o =>
        {
            o.AddDocumentTransformer((document, _, _) =>
            {
                document.Info.Title = "QrOrleans API";
                document.Info.Description =
                    "QR-code device linking: a desktop shows a QR code, a signed-in phone scans it, picks the number the desktop shows, "
                    + "and approves; the desktop then claims its own tokens. Every error is application/problem+json with a "
                    + "snake_case `code`; each operation lists its codes (also in `x-problem-codes`).";
                return Task.CompletedTask;
            });
            o.AddOperationTransformer(DescribeProblemsAsync);
        });

    public static IEndpointRouteBuilder MapApiReference(this IEndpointRouteBuilder app)
    {
        app.MapOpenApi(DocumentPattern);
        // Scalar serves its page and its scripts from the assembly (no CDN): the reference works on a machine offline.
        // Its fonts come from a CDN unless turned off, and the AI agent and telemetry call out: all off.
        app.MapScalarApiReference(PagePath, o => o
            .WithTitle("QrOrleans API")
            .WithOpenApiRoutePattern(DocumentPattern)
            .DisableDefaultFonts()
            .DisableTelemetry()
            .DisableAgent()
            .DisableMcp());
        return app;
    }

    private static async Task DescribeProblemsAsync(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken ct)
    {
        var description = context.Description;
        var metadata = description.ActionDescriptor.EndpointMetadata;
        var problems = metadata.OfType<ProblemCodes>().SelectMany(p => p.Codes).Concat(Implied(description))
            .Distinct().Select(ProblemCatalog.Get).OrderBy(p => p.Status).ThenBy(p => p.Code, StringComparer.Ordinal).ToList();
        if (problems.Count == 0)
        {
            return;
        }
        operation.Responses ??= [];
        foreach (var byStatus in problems.GroupBy(p => p.Status))
        {
            var key = byStatus.Key.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (!operation.Responses.TryGetValue(key, out var existing) || existing is not OpenApiResponse response)
            {
                response = new OpenApiResponse
                {
                    Content = new Dictionary<string, OpenApiMediaType>
                    {
                        ["application/problem+json"] = new() { Schema = await context.GetOrCreateSchemaAsync(typeof(ProblemDetails), null, ct) },
                    },
                };
                operation.Responses[key] = response;
            }
            response.Description = $"{ReasonPhrases.GetReasonPhrase(byStatus.Key)}: problem+json with `code` "
                + string.Join(", ", byStatus.Select(p => $"`{p.Code}` ({p.Title})")) + ".";
        }
        operation.Extensions ??= new Dictionary<string, IOpenApiExtension>();
        operation.Extensions["x-problem-codes"] = new JsonNodeExtension(new JsonArray(
            [.. problems.Select(p => (JsonNode)new JsonObject { ["code"] = p.Code, ["status"] = p.Status, ["title"] = p.Title })]));
    }

    /// <summary>Codes that follow from how an endpoint is built rather than from what its handler does.</summary>
    private static IEnumerable<string> Implied(Microsoft.AspNetCore.Mvc.ApiExplorer.ApiDescription description)
    {
        if (description.ParameterDescriptions.Any(p => p.Source == BindingSource.Body))
        {
            yield return "invalid_json";
            yield return "payload_too_large";
            yield return "unsupported_media_type";
        }
        if (description.ParameterDescriptions.Any(p => p.Source == BindingSource.Query && p.Type != typeof(string)))
        {
            yield return "validation_failed"; // a query value that is not of the parameter's type
        }
        if (description.ActionDescriptor.EndpointMetadata.OfType<EnableRateLimitingAttribute>().Any())
        {
            yield return "rate_limited";
        }
        // A phone call's access token may be key-bound (RFC 9449): its refusals come with the authentication.
        if (description.ActionDescriptor.EndpointMetadata.OfType<Microsoft.AspNetCore.Authorization.IAuthorizeData>()
            .Any(a => a.Policy == Auth.BearerAuthentication.Policy))
        {
            foreach (var code in Auth.BearerAuthentication.Refusals)
            {
                yield return code;
            }
        }
        // Every API call reaches the cluster, whose storage may be briefly unreachable (Redis restarting, a silo dying).
        yield return "storage_unavailable";
    }
}
