using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http.HttpResults;
using QrOrleans.Audit;
using QrOrleans.Gateway.Auth;
using QrOrleans.Gateway.Observability;
using QrOrleans.Users;

namespace QrOrleans.Gateway.Users;

public sealed record DeviceResponse(
    string Id, string Name, string Kind, DateTimeOffset CreatedAt, DateTimeOffset LastSeenAt, string Ip, bool Current, bool Revoked);

public sealed record RefreshRequest(string? RefreshToken);

public sealed record TokenResponse(
    string AccessToken, string TokenType, int ExpiresIn, string RefreshToken, DeviceResponse Device, UserView User);

public sealed record CreateUserRequest(string? Username, string? DisplayName);

public sealed record CreateDeviceRequest(string? Name, string? Kind);

/// <summary>The signed-in user's account and devices, token refresh, and the operator's user bootstrap.</summary>
public static partial class DevicesApi
{
    public static IEndpointRouteBuilder MapDevicesApi(this IEndpointRouteBuilder app)
    {
        var me = app.MapGroup("/v1").WithTags("Users and devices");
        me.MapGet("/me", MeAsync).RequireAuthorization(BearerAuthentication.Policy)
            .WithSummary("The signed-in user")
            .WithDescription("Phone or device access token.")
            .ProducesProblems("unauthenticated");
        me.MapGet("/devices", DevicesAsync).RequireAuthorization(BearerAuthentication.Policy)
            .WithSummary("The user's devices")
            .WithDescription("Access token. Every device linked to the user, current marks the caller's own, revoked ones included.")
            .ProducesProblems("unauthenticated");
        me.MapDelete("/devices/{id}", RevokeAsync).RequireAuthorization(BearerAuthentication.Policy)
            .WithSummary("Sign a device out")
            .WithDescription("Access token. The device's access and refresh tokens stop working at once.")
            .ProducesProblems("unauthenticated", "not_found");
        me.MapPost("/auth/refresh", RefreshAsync)
            .WithSummary("Exchange a refresh token for new tokens")
            .WithDescription("No bearer. The refresh token rotates: replaying a used one is 401 refresh_token_reused and signs that device out. "
                + "A key-bound device (tokenType DPoP) sends a DPoP proof of its key for this URL; its new tokens stay bound.")
            .ProducesProblems("invalid_refresh_token", "refresh_token_reused", "proof_required", "invalid_proof", "proof_replayed");

        var admin = app.MapGroup("/v1/admin").WithTags("Operator");
        admin.MapPost("/users", CreateUserAsync)
            .WithSummary("Create a user")
            .WithDescription("Operator key (X-Api-Key). username: 3-32 characters of a-z, 0-9, '.', '_' or '-'.")
            .ProducesProblems("unauthenticated", "validation_failed", "username_taken");
        admin.MapPost("/users/{id}/devices", CreateDeviceAsync)
            .WithSummary("Bootstrap a user's primary device")
            .WithDescription("Operator key. Signs a phone in directly (in a real deployment the host app's own sign-in does this); "
                + "answers its access and refresh tokens.")
            .ProducesProblems("unauthenticated", "validation_failed", "not_found");
        return app;
    }

    private static async Task<Ok<UserView>> MeAsync(HttpContext context, IGrainFactory grains)
    {
        var caller = context.Caller();
        return TypedResults.Ok(await grains.GetGrain<IUserGrain>(caller.UserId).GetAsync(context.RequestAborted)
            ?? throw Errors.Unauthenticated());
    }

    private static async Task<Ok<DeviceResponse[]>> DevicesAsync(HttpContext context, IGrainFactory grains)
    {
        var caller = context.Caller();
        var devices = await grains.GetGrain<IUserGrain>(caller.UserId).ListDevicesAsync(context.RequestAborted);
        return TypedResults.Ok(devices.Select(d => Response(d, caller.DeviceId)).ToArray());
    }

    private static async Task<NoContent> RevokeAsync(string id, HttpContext context, IGrainFactory grains, AuditTrail audit, DeviceStatus status)
    {
        var caller = context.Caller();
        if (DeviceIds.UserOf(id) != caller.UserId)
        {
            throw Errors.NotFound("The device");
        }
        await grains.GetGrain<IUserGrain>(caller.UserId).RevokeDeviceAsync(id, context.RequestAborted);
        status.Forget(id); // at once here; other nodes hear of it on the revocation stream
        var name = (await grains.GetGrain<IDeviceGrain>(id).GetAsync(CancellationToken.None))?.Device.Name;
        await audit.RecordAsync(context, caller.UserId, AuditActions.DeviceRevoked, caller.DeviceId, deviceId: id,
            detail: name is null ? null : $"signed out {name}");
        return TypedResults.NoContent();
    }

    private static async Task<Ok<TokenResponse>> RefreshAsync(
        HttpContext context, IGrainFactory grains, AccessTokens tokens, DpopProofs proofs, AuditTrail audit, DeviceStatus status, RefreshRequest body)
    {
        var parts = body.RefreshToken?.Split('.');
        if (parts is not [var deviceId, var secret] || DeviceIds.UserOf(deviceId) is not { } userId || secret.Length is 0 or > 128)
        {
            throw Errors.InvalidRefreshToken();
        }
        // A proof, when sent, is verified before the device is asked; whether the device needs one, the device decides.
        var proof = DpopProofs.IsPresent(context.Request)
            ? await proofs.VerifyAsync(context.Request, accessToken: null, boundTo: null, context.RequestAborted)
            : null;
        DeviceSession session;
        try
        {
            session = await grains.GetGrain<IUserGrain>(userId).RefreshAsync(deviceId, secret, context.ClientIp(), proof?.Thumbprint, context.RequestAborted);
        }
        catch (GrainException e) when (e.Code == "refresh_token_reused")
        {
            status.Forget(deviceId);
            await audit.RecordAsync(context, userId, AuditActions.RefreshTokenReused, deviceId: deviceId,
                detail: "a used refresh token came back; the device was signed out");
            throw;
        }
        return TypedResults.Ok(await TokenResponse(tokens, session, context.RequestAborted));
    }

    private static async Task<Created<UserView>> CreateUserAsync(HttpContext context, IGrainFactory grains, CreateUserRequest body)
    {
        context.RequireOperator();
        var username = body.Username?.Trim().ToLowerInvariant();
        if (username is null || !UsernameRegex().IsMatch(username))
        {
            throw Errors.Validation("username is required: 3-32 characters of a-z, 0-9, '.', '_' or '-'.");
        }
        var displayName = string.IsNullOrWhiteSpace(body.DisplayName) ? username : body.DisplayName.Trim();
        if (displayName.Length > 80)
        {
            throw Errors.Validation("displayName is at most 80 characters.");
        }
        var user = await RegisterUserAsync(grains, username, displayName, context.RequestAborted);
        return TypedResults.Created($"/v1/admin/users/{user.Id}", user);
    }

    public static async Task<UserView> RegisterUserAsync(IGrainFactory grains, string username, string displayName, CancellationToken ct)
    {
        var userId = Grains.Secrets.NewHexId(16);
        await grains.GetGrain<IUsernameGrain>(username).ReserveAsync(userId, ct);
        return await grains.GetGrain<IUserGrain>(userId).CreateAsync(username, displayName, ct);
    }

    private static async Task<Created<TokenResponse>> CreateDeviceAsync(
        string id, HttpContext context, IGrainFactory grains, AccessTokens tokens, CreateDeviceRequest body)
    {
        context.RequireOperator();
        var name = string.IsNullOrWhiteSpace(body.Name) ? "Phone" : body.Name.Trim();
        if (name.Length > 80 || (body.Kind ?? "phone") is not ("phone" or "tablet"))
        {
            throw Errors.Validation("name is at most 80 characters and kind is 'phone' (or 'tablet').");
        }
        if (!DeviceIds.IsUserId(id))
        {
            throw Errors.NotFound("The user");
        }
        var session = await grains.GetGrain<IUserGrain>(id).AddDeviceAsync(
            new NewDevice(DeviceIds.New(id), name, body.Kind ?? "phone", context.ClientIp()), context.RequestAborted);
        var response = await TokenResponse(tokens, session, context.RequestAborted);
        return TypedResults.Created($"/v1/devices/{session.Device.Id}", response);
    }

    public static async Task<TokenResponse> TokenResponse(AccessTokens tokens, DeviceSession session, CancellationToken ct) => new(
        await tokens.IssueAsync(session.User.Id, session.Device.Id, session.KeyThumbprint, ct),
        AccessTokens.TokenType(session.KeyThumbprint),
        (int)tokens.Lifetime.TotalSeconds,
        session.RefreshToken,
        Response(session.Device, session.Device.Id),
        session.User);

    private static DeviceResponse Response(DeviceView d, string currentDeviceId) =>
        new(d.Id, d.Name, d.Kind, d.CreatedAt, d.LastSeenAt, d.Ip, d.Id == currentDeviceId, d.Revoked);

    [GeneratedRegex("^[a-z0-9._-]{3,32}$")]
    private static partial Regex UsernameRegex();
}

/// <summary>Device ids are "&lt;userId&gt;-&lt;random&gt;" so a refresh token alone leads to its user.</summary>
public static class DeviceIds
{
    public static string New(string userId) => userId + "-" + Grains.Secrets.NewHexId(8);

    public static bool IsUserId(string value) => value.Length == 32 && value.All(char.IsAsciiHexDigitLower);

    public static string? UserOf(string deviceId)
    {
        var dash = deviceId.IndexOf('-', StringComparison.Ordinal);
        return dash == 32 && deviceId.Length == 49 && IsUserId(deviceId[..dash]) && deviceId[(dash + 1)..].All(char.IsAsciiHexDigitLower)
            ? deviceId[..dash]
            : null;
    }
}
