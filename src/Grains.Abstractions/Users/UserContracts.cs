using QrOrleans.Runtime;

namespace QrOrleans.Users;

public sealed record UserView(string Id, string Username, string DisplayName, DateTimeOffset CreatedAt);

public sealed record DeviceView(
    string Id, string Name, string Kind, DateTimeOffset CreatedAt, DateTimeOffset LastSeenAt, string Ip, bool Revoked);

/// <summary>A new refresh token (plaintext, returned once; only its hash is stored) for a device.</summary>
public sealed record DeviceSession(UserView User, DeviceView Device, string RefreshToken);

public sealed record NewDevice(string DeviceId, string Name, string Kind, string Ip);

public interface IUserGrain : IGrain
{
    Task<UserView> CreateAsync(string username, string displayName, CancellationToken ct);

    Task<UserView?> GetAsync(CancellationToken ct);

    /// <summary>Adds a device (idempotent on DeviceId: a retry returns a fresh refresh token for it).</summary>
    Task<DeviceSession> AddDeviceAsync(NewDevice device, CancellationToken ct);

    Task<IReadOnlyList<DeviceView>> ListDevicesAsync(CancellationToken ct);

    Task RevokeDeviceAsync(string deviceId, CancellationToken ct);

    /// <summary>Rotates a refresh token. Replaying a rotated one revokes the device.</summary>
    Task<DeviceSession> RefreshAsync(string deviceId, string secret, string ip, CancellationToken ct);

    /// <summary>True while the device exists and is not revoked; a read, cheap, used on every bearer call.</summary>
    Task<bool> IsDeviceActiveAsync(string deviceId, CancellationToken ct);
}

/// <summary>Unique username → user id.</summary>
public interface IUsernameGrain : IGrain
{
    /// <summary>Reserves the name for the user id, or throws username_taken.</summary>
    Task ReserveAsync(string userId, CancellationToken ct);

    Task<string?> GetUserIdAsync(CancellationToken ct);
}

/// <summary>The cluster-wide ES256 signing key for access tokens, created on first use.</summary>
public sealed record SigningKeyMaterial(string KeyId, string PrivateKeyPkcs8Base64, DateTimeOffset CreatedAt);

public interface ISigningKeyGrain : IGrain
{
    Task<SigningKeyMaterial> GetOrCreateAsync(CancellationToken ct);
}

/// <summary>
/// One device of a user (key = device id "&lt;userId&gt;-&lt;random&gt;"): its refresh token hash and revocation.
/// A grain of its own so that a user with many linked devices (an operator's agent fleet) costs nothing extra
/// on each bearer call, which reads only this small state.
/// </summary>
public interface IDeviceGrain : IGrain
{
    /// <summary>Creates the device, or (idempotent retry) rotates its refresh token; the plaintext token is returned once.</summary>
    Task<(DeviceView Device, string RefreshToken)> RegisterAsync(string userId, NewDevice device, CancellationToken ct);

    Task<(DeviceView Device, string UserId)?> GetAsync(CancellationToken ct);

    Task<(DeviceView Device, string UserId, string RefreshToken)> RefreshAsync(string secret, string ip, CancellationToken ct);

    Task RevokeAsync(CancellationToken ct);

    Task<bool> IsActiveAsync(CancellationToken ct);
}
