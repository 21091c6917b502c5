namespace QrOrleans.Users;

[GenerateSerializer, Immutable, Alias("qrorleans.UserView")]
public sealed record UserView(
    [property: Id(0)] string Id,
    [property: Id(1)] string Username,
    [property: Id(2)] string DisplayName,
    [property: Id(3)] DateTimeOffset CreatedAt);

[GenerateSerializer, Immutable, Alias("qrorleans.DeviceView")]
public sealed record DeviceView(
    [property: Id(0)] string Id,
    [property: Id(1)] string Name,
    [property: Id(2)] string Kind,
    [property: Id(3)] DateTimeOffset CreatedAt,
    [property: Id(4)] DateTimeOffset LastSeenAt,
    [property: Id(5)] string Ip,
    [property: Id(6)] bool Revoked);

/// <summary>
/// A new refresh token (plaintext, returned once; only its hash is stored) for a device, and the thumbprint of the key
/// the device's tokens are bound to (null: bearer tokens).
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.DeviceSession")]
public sealed record DeviceSession(
    [property: Id(0)] UserView User,
    [property: Id(1)] DeviceView Device,
    [property: Id(2)] string RefreshToken,
    [property: Id(3)] string? KeyThumbprint = null)

{
    /// <summary>Orleans prints a grain's answer in its Trace logs: never with the token.</summary>
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("User = ").Append(User).Append(", Device = ").Append(Device).Append(", RefreshToken = (redacted)");
        return true;
    }
}

/// <summary>A device to add; <see cref="KeyThumbprint"/> binds its tokens to that key (RFC 9449), null for bearer tokens.</summary>
[GenerateSerializer, Immutable, Alias("qrorleans.NewDevice")]
public sealed record NewDevice(
    [property: Id(0)] string DeviceId,
    [property: Id(1)] string Name,
    [property: Id(2)] string Kind,
    [property: Id(3)] string Ip,
    [property: Id(4)] string? KeyThumbprint = null);

/// <summary>A device and the user it belongs to.</summary>
[GenerateSerializer, Immutable, Alias("qrorleans.OwnedDevice")]
public sealed record OwnedDevice([property: Id(0)] DeviceView Device, [property: Id(1)] string UserId);

/// <summary>A device's new refresh token (plaintext, handed out once), with the device and its user.</summary>
[GenerateSerializer, Immutable, Alias("qrorleans.IssuedRefreshToken")]
public sealed record IssuedRefreshToken(
    [property: Id(0)] DeviceView Device,
    [property: Id(1)] string UserId,
    [property: Id(2)] string RefreshToken,
    [property: Id(3)] string? KeyThumbprint = null)

{
    /// <summary>Orleans prints a grain's answer in its Trace logs: never with the token.</summary>
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("Device = ").Append(Device).Append(", UserId = ").Append(UserId).Append(", RefreshToken = (redacted)");
        return true;
    }
}

[Alias("qrorleans.IUserGrain")]
public interface IUserGrain : IGrainWithStringKey
{
    [Alias("Create")]
    Task<UserView> CreateAsync(string username, string displayName, CancellationToken ct = default);

    [Alias("Get")]
    Task<UserView?> GetAsync(CancellationToken ct = default);

    /// <summary>Adds a device (idempotent on DeviceId: a retry returns a fresh refresh token for it).</summary>
    [Alias("AddDevice")]
    Task<DeviceSession> AddDeviceAsync(NewDevice device, CancellationToken ct = default);

    [Alias("ListDevices")]
    Task<IReadOnlyList<DeviceView>> ListDevicesAsync(CancellationToken ct = default);

    [Alias("RevokeDevice")]
    Task RevokeDeviceAsync(string deviceId, CancellationToken ct = default);

    /// <summary>
    /// Rotates a refresh token. Replaying a rotated one revokes the device. A key-bound device needs
    /// <paramref name="proofThumbprint"/> (of a verified DPoP proof) to be its key, checked before anything else.
    /// </summary>
    [Alias("Refresh")]
    Task<DeviceSession> RefreshAsync(string deviceId, string secret, string ip, string? proofThumbprint, CancellationToken ct = default);
}

/// <summary>Unique username → user id.</summary>
[Alias("qrorleans.IUsernameGrain")]
public interface IUsernameGrain : IGrainWithStringKey
{
    /// <summary>Reserves the name for the user id, or throws username_taken.</summary>
    [Alias("Reserve")]
    Task ReserveAsync(string userId, CancellationToken ct = default);

    [Alias("GetUserId")]
    Task<string?> GetUserIdAsync(CancellationToken ct = default);
}

/// <summary>The cluster-wide ES256 signing key for access tokens, created on first use.</summary>
[GenerateSerializer, Immutable, Alias("qrorleans.SigningKeyMaterial")]
public sealed record SigningKeyMaterial(
    [property: Id(0)] string KeyId,
    [property: Id(1)] string PrivateKeyPkcs8Base64,
    [property: Id(2)] DateTimeOffset CreatedAt);

[Alias("qrorleans.ISigningKeyGrain")]
public interface ISigningKeyGrain : IGrainWithStringKey
{
    [Alias("GetOrCreate")]
    Task<SigningKeyMaterial> GetOrCreateAsync(CancellationToken ct = default);
}

/// <summary>
/// The cluster-wide notice that a device was signed out: every gateway node follows the one stream
/// (<see cref="DeviceStreams"/>) and drops what it remembers of the device, so its tokens stop working on
/// every node at once, not when the node's short-lived memory of it runs out.
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.DeviceRevoked")]
public sealed record DeviceRevoked([property: Id(0)] string DeviceId);

public static class DeviceStreams
{
    /// <summary>
    /// The one stream of <see cref="DeviceRevoked"/> notices (this namespace, key <see cref="Key"/>) on the
    /// <see cref="OrleansNames.Streams"/> provider.
    /// </summary>
    public const string Namespace = "device-revocations";

    public const string Key = "all";
}

/// <summary>
/// One device of a user (key = device id "&lt;userId&gt;-&lt;random&gt;"): its refresh token hash and revocation.
/// A grain of its own so that a user with many linked devices (an operator's agent fleet) costs nothing extra
/// on each bearer call, which asks only this small grain.
/// </summary>
[Alias("qrorleans.IDeviceGrain")]
public interface IDeviceGrain : IGrainWithStringKey
{
    /// <summary>Creates the device, or (idempotent retry) rotates its refresh token; the plaintext token is returned once.</summary>
    [Alias("Register")]
    Task<IssuedRefreshToken> RegisterAsync(string userId, NewDevice device, CancellationToken ct = default);

    [Alias("Get")]
    Task<OwnedDevice?> GetAsync(CancellationToken ct = default);

    [Alias("Refresh")]
    Task<IssuedRefreshToken> RefreshAsync(string secret, string ip, string? proofThumbprint, CancellationToken ct = default);

    [Alias("Revoke")]
    Task RevokeAsync(CancellationToken ct = default);

    /// <summary>True while the device exists, belongs to <paramref name="userId"/> and is not revoked: asked on every bearer call.</summary>
    [Alias("IsActive"), Orleans.Concurrency.ReadOnly]
    Task<bool> IsActiveAsync(string userId, CancellationToken ct = default);
}
