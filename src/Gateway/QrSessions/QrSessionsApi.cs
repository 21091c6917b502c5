using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using QRCoder;
using QrOrleans.Audit;
using QrOrleans.Gateway.Auth;
using QrOrleans.Gateway.Observability;
using QrOrleans.Grains.QrSessions;
using QrOrleans.KeyBinding;
using QrOrleans.QrSessions;
using QrOrleans.Users;

namespace QrOrleans.Gateway.QrSessions;

public sealed record ClientInfo(string? Name, string? Kind);

/// <param name="Key">The desktop's public key (an EC P-256 JWK) its claim must prove and its tokens are bound to.</param>
public sealed record CreateSessionRequest(ClientInfo? Client, JsonElement? Key = null);

public sealed record CreateSessionResponse(
    string SessionId, string DesktopToken, string State, long Version, DateTimeOffset ExpiresAt, QrCodeView? Qr);

public sealed record ScanRequest(string? Url, string? Token);

public sealed record ApproveRequest(string? Number);

public sealed record StateResponse(string State);

public sealed record ClaimResponse(
    string AccessToken, string TokenType, int ExpiresIn, string RefreshToken, ClaimedDevice Device, UserView User);

public sealed record ClaimedDevice(string Id, string Name);

/// <summary>The QR sign-in ceremony over HTTP: the desktop side (desktop token) and the phone side (access token).</summary>
public static class QrSessionsApi
{
    private const int MaxLongPollSeconds = 30;

    public static IEndpointRouteBuilder MapQrSessionsApi(this IEndpointRouteBuilder app)
    {
        var desktop = app.MapGroup("/v1/qr/sessions").WithTags("QR sessions (desktop)");
        desktop.MapPost("/", CreateAsync).RequireRateLimiting(RateLimits.SessionCreation)
            .WithSummary("Start a sign-in session")
            .WithDescription("No authentication. Answers the session's desktopToken (send it as 'Authorization: Bearer' on every other "
                + "desktop call) and its first QR code. client.kind is browser, cli, agent or device; the name defaults from the User-Agent. "
                + "key (optional; required when the server sets RequireKeyBinding): the desktop's public key, an EC P-256 JWK "
                + "{ kty, crv, x, y }, which its claim must then prove with a DPoP header.")
            .ProducesProblems("validation_failed", "key_required");
        desktop.MapGet("/{id}", GetAsync)
            .WithSummary("Read the session's snapshot, or long-poll for its next version")
            .WithDescription("Desktop token. With waitForVersion=N the answer comes as soon as the version is above N, or after "
                + "timeout seconds (at most 30) with the current snapshot. A wrong token or an unknown id is 401 alike.")
            .Produces<QrSessionSnapshot>()
            .ProducesProblems("unauthenticated");
        desktop.MapGet("/{id}/events", EventsAsync)
            .WithSummary("Follow the session as server-sent events")
            .WithDescription("Desktop token. text/event-stream of 'event: state', 'id: <version>', 'data: <snapshot>'; the current "
                + "snapshot comes first, Last-Event-ID is honoured, and a comment every 15 s keeps proxies from closing the stream.")
            .Produces(StatusCodes.Status200OK, contentType: "text/event-stream")
            .ProducesProblems("unauthenticated");
        desktop.MapGet("/{id}/qr.svg", QrSvgAsync)
            .WithSummary("The current QR code as SVG")
            .WithDescription("Desktop token. The code is a bearer credential while it lives, so it is never public (Cache-Control: no-store).")
            .Produces(StatusCodes.Status200OK, contentType: "image/svg+xml")
            .ProducesProblems("unauthenticated", "qr_expired", "invalid_state");
        desktop.MapGet("/{id}/qr.png", QrPngAsync)
            .WithSummary("The current QR code as PNG")
            .WithDescription("Desktop token. As qr.svg, as a PNG image.")
            .Produces(StatusCodes.Status200OK, contentType: "image/png")
            .ProducesProblems("unauthenticated", "qr_expired", "invalid_state");
        desktop.MapPost("/{id}/cancel", CancelAsync)
            .WithSummary("Cancel the session")
            .WithDescription("Desktop token. Answers the snapshot in state cancelled; the phone's code stops working at once.")
            .ProducesProblems("unauthenticated", "qr_expired", "invalid_state");
        desktop.MapPost("/{id}/claim", ClaimAsync)
            .WithSummary("Claim this device's tokens after the phone approved")
            .WithDescription("Desktop token. Exactly once, after approval: the access and refresh tokens of the new device, for the "
                + "user who approved. Before approval 409 not_approved, after a first claim 410 already_claimed. A session created "
                + "with a key needs a DPoP proof of it (htm POST, htu this URL); its tokens are then bound to the key (tokenType DPoP). "
                + "A claim that failed on the server may be retried by the same desktop (with a fresh proof) within the claim window; "
                + "503 claim_interrupted says exactly that (the node that began it went away before it was confirmed).")
            .ProducesProblems("unauthenticated", "not_approved", "already_claimed", "claim_interrupted", "qr_expired", "invalid_state",
                "proof_required", "invalid_proof", "proof_replayed");

        var phone = app.MapGroup("/v1/qr").WithTags("QR sessions (phone)").RequireAuthorization(BearerAuthentication.Policy);
        phone.MapPost("/scan", ScanAsync).RequireRateLimiting(RateLimits.Scans)
            .WithSummary("Scan a QR code")
            .WithDescription("Phone access token. Send the code's URL ({ \"url\": \"…/l/#<sessionId>.<secret>\" }; the earlier …/l/<sessionId>.<secret> "
                + "is accepted too) or its token ({ \"token\": \"<sessionId>.<secret>\" }). "
                + "Answers who is asking (client, browser, OS, IP, same network) and the number choices; one of them is shown on the desktop.")
            .ProducesProblems("unauthenticated", "validation_failed", "qr_invalid", "qr_expired", "qr_already_scanned", "qr_already_used",
                "invalid_state");
        phone.MapPost("/sessions/{id}/approve", ApproveAsync).RequireRateLimiting(RateLimits.Approvals)
            .WithSummary("Approve the sign-in with the number the desktop shows")
            .WithDescription("Phone access token of the user who scanned. A wrong number is 422 number_mismatch and rejects the session.")
            .ProducesProblems("unauthenticated", "validation_failed", "qr_invalid", "qr_expired", "qr_already_used", "not_scanner",
                "invalid_state", "number_mismatch");
        phone.MapPost("/sessions/{id}/reject", RejectAsync).RequireRateLimiting(RateLimits.Approvals)
            .WithSummary("Reject the sign-in")
            .WithDescription("Phone access token of the user who scanned. The desktop learns it is rejected.")
            .ProducesProblems("unauthenticated", "qr_invalid", "qr_expired", "qr_already_used", "not_scanner", "invalid_state");
        return app;
    }

    private static async Task<Created<CreateSessionResponse>> CreateAsync(
        HttpContext context, IGrainFactory grains, QrSessionOptions options,
        [FromBody(EmptyBodyBehavior = Microsoft.AspNetCore.Mvc.ModelBinding.EmptyBodyBehavior.Allow)] CreateSessionRequest? body)
    {
        var keyThumbprint = KeyThumbprint(body?.Key, options);
        var (browser, os) = UserAgent.Parse(context.Request.Headers.UserAgent);
        var kind = body?.Client?.Kind ?? (browser.StartsWith("curl", StringComparison.Ordinal) ? "cli" : "browser");
        if (!ClientKinds.All.Contains(kind))
        {
            throw Errors.Validation($"client.kind must be one of {string.Join(", ", ClientKinds.All)}.");
        }
        var name = body?.Client?.Name?.Trim();
        if (name is { Length: > 80 })
        {
            throw Errors.Validation("client.name is at most 80 characters.");
        }
        if (string.IsNullOrEmpty(name))
        {
            name = $"{browser} on {os}";
        }
        var sessionId = Grains.Secrets.NewToken(16);
        var requester = new Requester(name, kind, browser, os, context.ClientIp(), DateTimeOffset.UtcNow, keyThumbprint);
        var created = await grains.Grain<IQrSessionGrain>(sessionId).CreateAsync(requester, context.RequestAborted);
        var s = created.Snapshot;
        return TypedResults.Created($"/v1/qr/sessions/{sessionId}",
            new CreateSessionResponse(sessionId, created.DesktopToken, s.State, s.Version, s.ExpiresAt, s.Qr));
    }

    /// <summary>The RFC 7638 thumbprint of the key a desktop registers at create; null for an unkeyed session.</summary>
    private static string? KeyThumbprint(JsonElement? key, QrSessionOptions options)
    {
        if (key is not { ValueKind: not JsonValueKind.Null } jwk)
        {
            return options.RequireKeyBinding ? throw KeyBindingErrors.KeyRequired() : null;
        }
        if (EcPublicJwk.HasPrivatePart(jwk))
        {
            throw Errors.Validation("key must be the public key only: it has a private part (d). Keep d on the desktop.");
        }
        return EcPublicJwk.TryRead(jwk, out var problem)?.Thumbprint
            ?? throw Errors.Validation($"key must be an EC P-256 public JWK {{ kty, crv, x, y }}: {problem}.");
    }

    private static async Task<IResult> GetAsync(
        string id, HttpContext context, IGrainFactory grains, SessionWatches watches, CeremonyTelemetry telemetry, long? waitForVersion, int? timeout)
    {
        var token = DesktopToken(context, id);
        if (waitForVersion is null)
        {
            return TypedResults.Ok(await grains.Grain<IQrSessionGrain>(id).GetSnapshotAsync(token, context.RequestAborted));
        }
        var seconds = Math.Clamp(timeout ?? MaxLongPollSeconds, 0, MaxLongPollSeconds);
        var (feed, snapshot) = await SnapshotFeed.OpenAsync(grains, watches, id, token, context.RequestAborted);
        await using (feed)
        {
            if (snapshot.Version > waitForVersion)
            {
                return TypedResults.Ok(snapshot);
            }
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
            deadline.CancelAfter(TimeSpan.FromSeconds(seconds));
            try
            {
                if (await feed.NextAsync(waitForVersion.Value, deadline.Token) is { } next)
                {
                    var json = System.Text.Json.JsonSerializer.Serialize(next, GrainJson.Options);
                    telemetry.DesktopNotified(next, CeremonyTelemetry.LongPoll);
                    return TypedResults.Text(json, "application/json", Encoding.UTF8);
                }
            }
            catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
            {
                // timed out: answer with the current snapshot
            }
            return TypedResults.Ok(await grains.Grain<IQrSessionGrain>(id).GetSnapshotAsync(token, context.RequestAborted));
        }
    }

    private static async Task EventsAsync(string id, HttpContext context, IGrainFactory grains, SessionWatches watches, CeremonyTelemetry telemetry)
    {
        var token = DesktopToken(context, id);
        var (feed, snapshot) = await SnapshotFeed.OpenAsync(grains, watches, id, token, context.RequestAborted);
        await using (feed)
        {
            var response = context.Response;
            response.ContentType = "text/event-stream";
            response.Headers.CacheControl = "no-cache, no-store";
            response.Headers["X-Accel-Buffering"] = "no";
            var have = long.TryParse(context.Request.Headers["Last-Event-ID"], out var lastId) ? lastId : 0;
            if (snapshot.Version > have)
            {
                have = snapshot.Version;
                await WriteEventAsync(response, snapshot.Version, System.Text.Json.JsonSerializer.Serialize(snapshot, GrainJson.Options), context.RequestAborted);
            }
            else
            {
                await response.WriteAsync(": up to date\n\n", context.RequestAborted);
                await response.Body.FlushAsync(context.RequestAborted);
            }
            // The desktop leaving closes the feed, so the wait ends with no exception; the heartbeat is the stream's own.
            using var closing = context.RequestAborted.Register(static f => ((SnapshotFeed)f!).Close(), feed);
            var heartbeat = new CancellationTokenSource();
            try
            {
                while (true)
                {
                    if (!heartbeat.TryReset())
                    {
                        heartbeat.Dispose();
                        heartbeat = new CancellationTokenSource();
                    }
                    heartbeat.CancelAfter(TimeSpan.FromSeconds(15));
                    try
                    {
                        if (await feed.NextAsync(have, heartbeat.Token) is not { } next)
                        {
                            return; // the desktop left, or the session is gone
                        }
                        have = next.Version;
                        var json = System.Text.Json.JsonSerializer.Serialize(next, GrainJson.Options);
                        await WriteEventAsync(response, next.Version, json, context.RequestAborted);
                        telemetry.DesktopNotified(next, CeremonyTelemetry.ServerSentEvents);
                    }
                    catch (OperationCanceledException) when (heartbeat.IsCancellationRequested && !context.RequestAborted.IsCancellationRequested)
                    {
                        // keeps proxies from closing an idle stream
                        await response.WriteAsync(": keep-alive\n\n", context.RequestAborted);
                        await response.Body.FlushAsync(context.RequestAborted);
                    }
                }
            }
            finally
            {
                heartbeat.Dispose();
            }
        }
    }

    private static async Task WriteEventAsync(HttpResponse response, long version, string json, CancellationToken ct)
    {
        await response.WriteAsync($"event: state\nid: {version}\ndata: {json}\n\n", ct);
        await response.Body.FlushAsync(ct);
    }

    private static async Task<IResult> QrSvgAsync(string id, HttpContext context, IGrainFactory grains)
    {
        var url = await CurrentQrUrlAsync(id, context, grains);
        using var data = QRCodeGenerator.GenerateQrCode(url, QRCodeGenerator.ECCLevel.M);
        var svg = new SvgQRCode(data).GetGraphic(8);
        context.Response.Headers.CacheControl = "no-store";
        return TypedResults.Text(svg, "image/svg+xml", Encoding.UTF8);
    }

    private static async Task<IResult> QrPngAsync(string id, HttpContext context, IGrainFactory grains)
    {
        var url = await CurrentQrUrlAsync(id, context, grains);
        using var data = QRCodeGenerator.GenerateQrCode(url, QRCodeGenerator.ECCLevel.M);
        context.Response.Headers.CacheControl = "no-store";
        return TypedResults.File(new PngByteQRCode(data).GetGraphic(8), "image/png");
    }

    private static async Task<string> CurrentQrUrlAsync(string id, HttpContext context, IGrainFactory grains)
    {
        var token = DesktopToken(context, id);
        var snapshot = await grains.Grain<IQrSessionGrain>(id).GetSnapshotAsync(token, context.RequestAborted);
        // Only a pending session has a code; an expired one says so, as every other call on it does.
        return snapshot.Qr?.Url ?? throw (snapshot.State == QrSessionStates.Expired
            ? Errors.QrExpired()
            : Errors.InvalidState(snapshot.State, "show a QR code for"));
    }

    private static async Task<Ok<QrSessionSnapshot>> CancelAsync(string id, HttpContext context, IGrainFactory grains)
    {
        var token = DesktopToken(context, id);
        return TypedResults.Ok(await grains.Grain<IQrSessionGrain>(id).CancelAsync(token, context.RequestAborted));
    }

    /// <summary>
    /// Begin (the grain checks the key, records the device and a pending grant, registers the device), mint, confirm,
    /// answer. Until the confirmation the session stays approved, so if anything fails on the way (this node dies,
    /// storage blips) the same desktop's retry gets the same device with fresh tokens; once confirmed, 410 already_claimed.
    /// </summary>
    private static async Task<Ok<ClaimResponse>> ClaimAsync(
        string id, HttpContext context, IGrainFactory grains, AccessTokens tokens, DpopProofs proofs, AuditTrail audit)
    {
        var desktopToken = DesktopToken(context, id);
        var proof = DpopProofs.IsPresent(context.Request)
            ? await proofs.VerifyAsync(context.Request, accessToken: null, boundTo: null, context.RequestAborted)
            : null;
        var grain = grains.Grain<IQrSessionGrain>(id);
        var grant = await grain.BeginClaimAsync(desktopToken, proof?.Thumbprint, context.RequestAborted);
        var session = grant.Session!;
        // Minting happens here and nowhere else, and the tokens go only into this response.
        var access = await tokens.IssueAsync(grant.UserId, grant.DeviceId, grant.KeyThumbprint, CancellationToken.None);
        await grain.ConfirmClaimAsync(desktopToken, grant.GrantId!, context.ClientIp(), CancellationToken.None);
        audit.Noted(grant.UserId, new AuditEntry(DateTimeOffset.UtcNow, AuditActions.DeviceLinked, context.ClientIp(),
            $"{grant.DeviceName} ({grant.DeviceKind})", DeviceId: grant.DeviceId, SessionId: id));
        return TypedResults.Ok(new ClaimResponse(access, AccessTokens.TokenType(grant.KeyThumbprint), (int)tokens.Lifetime.TotalSeconds,
            session.RefreshToken, new ClaimedDevice(session.Device.Id, session.Device.Name), session.User));
    }

    private static async Task<Ok<ScanResult>> ScanAsync(HttpContext context, IGrainFactory grains, AuditTrail audit, ScanRequest body)
    {
        var caller = context.Caller();
        if (!SessionIds.TryParseQr(body.Url ?? body.Token, out var sessionId, out var secret))
        {
            throw body.Url is null && body.Token is null ? Errors.Validation("Send { \"url\": \"…\" } or { \"token\": \"…\" }.") : Errors.QrInvalid();
        }
        var phone = Phone(context, caller);
        var scan = await grains.Grain<IQrSessionGrain>(sessionId).ScanAsync(secret, caller.UserId, phone.Ip, phone, context.RequestAborted);
        audit.Noted(phone, caller.UserId, AuditActions.QrScanned, sessionId: sessionId);
        return TypedResults.Ok(scan);
    }

    private static async Task<Ok<StateResponse>> ApproveAsync(string id, HttpContext context, IGrainFactory grains, AuditTrail audit, ApproveRequest body)
    {
        var caller = context.Caller();
        if (body.Number is not { Length: > 0 and <= 4 } number)
        {
            throw Errors.Validation("number is required: the two-digit number shown on the other device.");
        }
        var grain = SessionGrainForPhone(grains, id);
        var phone = Phone(context, caller);
        QrSessionSnapshot approved;
        try
        {
            approved = await grain.ApproveAsync(caller.UserId, number, phone, context.RequestAborted);
        }
        catch (GrainException e) when (e.Code == "number_mismatch")
        {
            audit.Noted(phone, caller.UserId, AuditActions.QrRejected, sessionId: id);
            throw;
        }
        audit.Noted(phone, caller.UserId, AuditActions.QrApproved, sessionId: id);
        return TypedResults.Ok(new StateResponse(approved.State));
    }

    private static async Task<Ok<StateResponse>> RejectAsync(string id, HttpContext context, IGrainFactory grains, AuditTrail audit)
    {
        var caller = context.Caller();
        var grain = SessionGrainForPhone(grains, id);
        var phone = Phone(context, caller);
        var rejected = await grain.RejectAsync(caller.UserId, phone, context.RequestAborted);
        audit.Noted(phone, caller.UserId, AuditActions.QrRejected, sessionId: id);
        return TypedResults.Ok(new StateResponse(rejected.State));
    }

    /// <summary>The phone as its user's audit trail names it; the session keeps the entries until the ceremony ends.</summary>
    private static PhoneActor Phone(HttpContext context, Caller caller) =>
        new(caller.DeviceId, AuditTrail.CallerClient(context), context.ClientIp());

    private static IQrSessionGrain SessionGrainForPhone(IGrainFactory grains, string id) =>
        SessionIds.IsWellFormed(id) ? grains.Grain<IQrSessionGrain>(id) : throw Errors.QrInvalid();

    /// <summary>
    /// A malformed id answers exactly like a wrong token: 401, nothing about the session. Called before the grain is
    /// named: Orleans refuses a blank key with an ArgumentException.
    /// </summary>
    private static string DesktopToken(HttpContext context, string id)
    {
        var token = context.Request.RequireDesktopToken();
        return SessionIds.IsWellFormed(id) ? token : throw Errors.Unauthenticated("A valid desktop token for this session is required.");
    }
}
