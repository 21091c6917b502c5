using Microsoft.AspNetCore.Http.HttpResults;
using QrOrleans.Audit;
using QrOrleans.QrSessions;
using QrOrleans.Gateway.Auth;
using QrOrleans.Gateway.QrSessions;
using QrOrleans.Gateway.Users;

namespace QrOrleans.Gateway.Observability;

/// <summary>
/// Appends to users' audit trails after a QR or device transition has succeeded. A failed append is logged and
/// does not undo or fail the transition the user already made.
/// </summary>
public sealed partial class AuditTrail(IGrainFactory grains, NodeStats stats, QrTelemetry telemetry, ILogger<AuditTrail> log)
{
    /// <param name="client">What acted, when not the caller's own browser: e.g. the desktop being linked.</param>
    public async Task RecordAsync(HttpContext context, string userId, string action, string? actorDeviceId = null,
        string? deviceId = null, string? sessionId = null, string? detail = null, string? client = null)
    {
        var entry = new AuditEntry(default, action, context.ClientIp(), client ?? CallerClient(context), actorDeviceId, deviceId, sessionId, detail);
        try
        {
            var stamped = await grains.Grain<IAuditGrain>(userId).AppendAsync(entry, CancellationToken.None).ConfigureAwait(false);
            stats.Audited(userId, stamped);
            telemetry.AuditAppends.Add(1, new KeyValuePair<string, object?>("action", action));
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            LogAppendFailed(log, action, e.GetType().Name);
        }
    }

    /// <summary>The caller's browser and OS, as audit entries name the client that acted.</summary>
    public static string CallerClient(HttpContext context)
    {
        var (browser, os) = UserAgent.Parse(context.Request.Headers.UserAgent);
        return $"{browser} on {os}";
    }

    /// <summary>
    /// A step of a QR ceremony, which the session grain keeps and hands to the user's trail when the ceremony ends (one
    /// write for the ceremony): here only this node's live view (the dashboard) and the counter hear of it.
    /// </summary>
    public void Noted(PhoneActor phone, string userId, string action, string sessionId) =>
        Noted(userId, new AuditEntry(DateTimeOffset.UtcNow, action, phone.Ip, phone.Client, phone.DeviceId, SessionId: sessionId));

    public void Noted(string userId, AuditEntry entry)
    {
        stats.Audited(userId, entry);
        telemetry.AuditAppends.Add(1, new KeyValuePair<string, object?>("action", entry.Action));
    }

    [LoggerMessage(LogLevel.Warning, "An audit entry ({Action}) could not be appended: {Error}")]
    private static partial void LogAppendFailed(ILogger log, string action, string error);
}

/// <summary>The user's own recent sign-ins and device changes, and the operator's query by user and time.</summary>
public static class AuditApi
{
    private const int DefaultLimit = 50;
    private const int MaxLimit = 500;

    public static IEndpointRouteBuilder MapAuditApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/me/audit", MineAsync).WithTags("Users and devices").RequireAuthorization(BearerAuthentication.Policy)
            .WithSummary("The user's recent sign-ins and device changes")
            .WithDescription($"Access token. Newest first; limit 1 to {MaxLimit} (default {DefaultLimit}).")
            .ProducesProblems("unauthenticated", "validation_failed");
        app.MapGet("/v1/admin/users/{id}/audit", UserAsync).WithTags("Operator")
            .WithSummary("A user's audit trail, by time")
            .WithDescription($"Operator key. Entries between from and to (RFC 3339), newest first; limit 1 to {MaxLimit}.")
            .ProducesProblems("unauthenticated", "validation_failed", "not_found");
        return app;
    }

    private static async Task<Ok<IReadOnlyList<AuditEntry>>> MineAsync(HttpContext context, IGrainFactory grains, int? limit)
    {
        var caller = context.Caller();
        return TypedResults.Ok(await grains.Grain<IAuditGrain>(caller.UserId).ListAsync(null, null, Limit(limit), context.RequestAborted));
    }

    private static async Task<Ok<IReadOnlyList<AuditEntry>>> UserAsync(
        string id, HttpContext context, IGrainFactory grains, DateTimeOffset? from, DateTimeOffset? to, int? limit)
    {
        context.RequireOperator();
        if (!DeviceIds.IsUserId(id))
        {
            throw Errors.NotFound("The user");
        }
        if (from > to)
        {
            throw Errors.Validation("from must not be after to.");
        }
        return TypedResults.Ok(await grains.Grain<IAuditGrain>(id).ListAsync(from, to, Limit(limit), context.RequestAborted));
    }

    private static int Limit(int? limit) =>
        limit is null ? DefaultLimit : limit is >= 1 and <= MaxLimit ? limit.Value : throw Errors.Validation($"limit is 1 to {MaxLimit}.");
}
