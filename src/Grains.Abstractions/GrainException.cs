namespace QrOrleans;

/// <summary>
/// A refusal a caller can act on: <see cref="Code"/> is the stable snake_case code of API.md and
/// <see cref="Status"/> the HTTP status the gateway answers with.
/// </summary>
[GenerateSerializer]
[Alias("qrorleans.GrainException")]
public sealed class GrainException : Exception
{
    public GrainException(string code, int status, string title, string? detail = null)
        : base(detail ?? title)
    {
        Code = code;
        Status = status;
        Title = title;
        Detail = detail;
    }

    [Id(0)]
    public string Code { get; init; }

    [Id(1)]
    public int Status { get; init; }

    [Id(2)]
    public string Title { get; init; }

    [Id(3)]
    public string? Detail { get; init; }

    /// <summary>When the caller may try again; answered as Retry-After (and <c>retryAfter</c> in the body).</summary>
    [Id(4)]
    public DateTimeOffset? RetryAfter { get; init; }

    /// <summary>Further members of the problem body, e.g. <c>cooldownUntil</c> (values: strings, numbers, times).</summary>
    [Id(5)]
    public IReadOnlyDictionary<string, object?>? Extensions { get; init; }
}

/// <summary>Every error code the grains raise, with its status.</summary>
public static class Errors
{
    public static GrainException QrInvalid() => new("qr_invalid", 404, "Unknown QR code", "This code is not a valid sign-in code.");
    public static GrainException QrExpired() => new("qr_expired", 410, "QR code expired", "This code has expired. Ask for a new one on the device that shows it.");
    public static GrainException QrAlreadyScanned() => new("qr_already_scanned", 409, "Already scanned", "Another phone has already scanned this code.");
    public static GrainException QrAlreadyUsed() => new("qr_already_used", 409, "Code already used", "This sign-in has already finished.");
    public static GrainException NotScanner() => new("not_scanner", 403, "Not the scanning user", "Only the user who scanned this code can approve or reject it.");
    public static GrainException InvalidState(string state, string action) => new("invalid_state", 409, "Invalid state", $"Cannot {action} a session that is {state}.");
    public static GrainException NumberMismatch() => new("number_mismatch", 422, "Number does not match", "The number picked is not the one shown on the other device; the sign-in was rejected.");
    public static GrainException NotApproved() => new("not_approved", 409, "Not approved yet", "The session has not been approved on the phone yet.");
    /// <summary>A begun claim whose session lost its activation before the confirmation: the desktop sends the claim again.</summary>
    public static GrainException ClaimInterrupted() => new("claim_interrupted", 503, "Claim interrupted", "The claim was interrupted on the server; send it again.");
    public static GrainException AlreadyClaimed() => new("already_claimed", 410, "Already claimed", "The tokens of this session were already handed out.");
    public static GrainException Unauthenticated(string detail = "A valid token is required.") => new("unauthenticated", 401, "Unauthenticated", detail);
    public static GrainException RefreshTokenReused() => new("refresh_token_reused", 401, "Refresh token reused", "This refresh token was already used; the device has been signed out.");
    public static GrainException InvalidRefreshToken() => new("invalid_refresh_token", 401, "Invalid refresh token", "The refresh token is not valid.");
    public static GrainException UsernameTaken(string username) => new("username_taken", 409, "Username taken", $"The username '{username}' is already in use.");
    public static GrainException NotFound(string what) => new("not_found", 404, "Not found", $"{what} was not found.");
    public static GrainException Validation(string detail) => new("validation_failed", 400, "Invalid request", detail);
}
