using System.Collections.Frozen;
using QrOrleans.Accounts;
using QrOrleans.Grains.Vault;
using QrOrleans.KeyBinding;

namespace QrOrleans.Gateway;

/// <summary>Endpoint metadata: the problem <c>code</c>s an endpoint answers with (API.md), read by the OpenAPI document.</summary>
public sealed record ProblemCodes(IReadOnlyList<string> Codes);

/// <summary>A problem code, its HTTP status and the title its body carries.</summary>
public sealed record ProblemCode(string Code, int Status, string Title);

/// <summary>
/// Every problem code the gateway can answer with. The grains' codes are read from their own factories
/// (<see cref="Errors"/>, <see cref="AccountErrors"/>, <see cref="VaultErrors"/>), so status and title cannot drift from
/// what is sent; the HTTP pipeline's own codes are those of <see cref="Problems.ProblemResponses"/> and the rate limiter.
/// </summary>
public static class ProblemCatalog
{
    private static readonly FrozenDictionary<string, ProblemCode> Known = new[]
    {
        Errors.QrInvalid(), Errors.QrExpired(), Errors.QrAlreadyScanned(), Errors.QrAlreadyUsed(), Errors.NotScanner(),
        Errors.InvalidState("", ""), Errors.NumberMismatch(), Errors.NotApproved(), Errors.AlreadyClaimed(), Errors.ClaimInterrupted(),
        Errors.Unauthenticated(), Errors.RefreshTokenReused(), Errors.InvalidRefreshToken(), Errors.UsernameTaken(""),
        Errors.NotFound(""), Errors.Validation(""),
        KeyBindingErrors.KeyRequired(), KeyBindingErrors.ProofRequired(), KeyBindingErrors.InvalidProof(), KeyBindingErrors.ProofReplayed(), KeyBindingErrors.InvalidToken(),
        AccountErrors.NotConnected(""), AccountErrors.CoolingDown(default), AccountErrors.RateBudgetExhausted(default),
        AccountErrors.PlatformRateLimited(default), AccountErrors.PlatformUnavailable(default), AccountErrors.BadCredentials(""),
        AccountErrors.NoCredentials(""),
        VaultErrors.InvalidSealed(""), VaultErrors.CredentialsTampered(), VaultErrors.UnknownKeyVersion(0, []),
        VaultErrors.WrongPassphrase(), VaultErrors.WrongAccount(),
    }
        .Select(e => new ProblemCode(e.Code, e.Status, e.Title))
        .Concat(
        [
            new("invalid_json", 400, "Malformed JSON"),
            new("invalid_form", 400, "Malformed form"),
            new("cross_origin", 403, "Forbidden"),
            new("forbidden", 403, "Forbidden"),
            new("method_not_allowed", 405, "Method not allowed"),
            new("range_not_satisfiable", 416, "Range not satisfiable"),
            new("payload_too_large", 413, "Request body too large"),
            new("unsupported_media_type", 415, "Unsupported media type"),
            new("rate_limited", 429, "Too many requests"),
            new("storage_unavailable", 503, "Storage unavailable"),
        ])
        .ToFrozenDictionary(p => p.Code);

    public static ProblemCode Get(string code) =>
        Known.TryGetValue(code, out var problem) ? problem : throw new ArgumentException($"'{code}' is not a problem code of the gateway.", nameof(code));

    /// <summary>
    /// Documents the codes an endpoint (or a group) answers with: one problem+json response per status, and the codes
    /// themselves for the OpenAPI document. An unknown code fails at startup, not in the document.
    /// </summary>
    public static TBuilder ProducesProblems<TBuilder>(this TBuilder builder, params string[] codes) where TBuilder : IEndpointConventionBuilder
    {
        foreach (var status in codes.Select(c => Get(c).Status).Distinct())
        {
            builder.ProducesProblem(status);
        }
        return builder.WithMetadata(new ProblemCodes(codes));
    }
}
