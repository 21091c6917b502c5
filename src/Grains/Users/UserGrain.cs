using QrOrleans.Runtime;
using QrOrleans.Users;

namespace QrOrleans.Grains.Users;

public sealed record UserState
{
    public required string Username { get; init; }
    public required string DisplayName { get; init; }
    public required DateTimeOffset CreatedAt { get; init; }

    /// <summary>Ids of the user's devices, oldest first; each device's own state lives in its device grain.</summary>
    public IReadOnlyList<string> DeviceIds { get; init; } = [];
}

/// <summary>A user: profile and the list of their devices. Refresh tokens and revocation live in the device grains.</summary>
public sealed class UserGrain(GrainId id, IGrainRuntime runtime, IGrainFactory grains) : Grain<UserState>(id, runtime), IUserGrain
{
    public Task<UserView> CreateAsync(string username, string displayName, CancellationToken ct) =>
        Transition<UserView>(turn =>
        {
            turn.State ??= new UserState { Username = username, DisplayName = displayName, CreatedAt = turn.Now };
            return View(turn.State);
        }, ct);

    public async Task<UserView?> GetAsync(CancellationToken ct) =>
        await ReadAsync(ct).ConfigureAwait(false) is { } r ? View(r.State) : null;

    public async Task<DeviceSession> AddDeviceAsync(NewDevice device, CancellationToken ct)
    {
        // The id goes on the list first: if the device grain write then fails, a retry completes it, and a
        // listed id without a device grain is skipped when listing.
        var user = await Transition<UserView>(turn =>
        {
            var s = turn.State ?? throw Errors.NotFound("The user");
            if (!s.DeviceIds.Contains(device.DeviceId))
            {
                turn.State = s with { DeviceIds = [.. s.DeviceIds, device.DeviceId] };
            }
            return View(s);
        }, ct).ConfigureAwait(false);
        var (view, refreshToken) = await grains.GetGrain<IDeviceGrain>(device.DeviceId).RegisterAsync(Id.Key, device, ct).ConfigureAwait(false);
        return new DeviceSession(user, view, refreshToken);
    }

    public async Task<IReadOnlyList<DeviceView>> ListDevicesAsync(CancellationToken ct)
    {
        if (await ReadAsync(ct).ConfigureAwait(false) is not { } r)
        {
            return [];
        }
        var devices = await Task.WhenAll(r.State.DeviceIds.Select(d => grains.GetGrain<IDeviceGrain>(d).GetAsync(ct))).ConfigureAwait(false);
        return devices.Where(d => d?.UserId == Id.Key).Select(d => d!.Value.Device).ToArray();
    }

    public async Task RevokeDeviceAsync(string deviceId, CancellationToken ct)
    {
        var device = grains.GetGrain<IDeviceGrain>(deviceId);
        if (await device.GetAsync(ct).ConfigureAwait(false) is not { } d || d.UserId != Id.Key)
        {
            throw Errors.NotFound("The device");
        }
        await device.RevokeAsync(ct).ConfigureAwait(false);
    }

    public async Task<DeviceSession> RefreshAsync(string deviceId, string secret, string ip, CancellationToken ct)
    {
        var (device, userId, refreshToken) = await grains.GetGrain<IDeviceGrain>(deviceId).RefreshAsync(secret, ip, ct).ConfigureAwait(false);
        if (userId != Id.Key || await GetAsync(ct).ConfigureAwait(false) is not { } user)
        {
            throw Errors.InvalidRefreshToken();
        }
        return new DeviceSession(user, device, refreshToken);
    }

    public Task<bool> IsDeviceActiveAsync(string deviceId, CancellationToken ct) =>
        grains.GetGrain<IDeviceGrain>(deviceId).IsActiveAsync(ct);

    private UserView View(UserState s) => new(Id.Key, s.Username, s.DisplayName, s.CreatedAt);
}

public sealed record DeviceState
{
    public required string UserId { get; init; }
    public required string Name { get; init; }
    public required string Kind { get; init; }
    public required DateTimeOffset CreatedAt { get; init; }
    public required DateTimeOffset LastSeenAt { get; init; }
    public required string Ip { get; init; }
    public bool Revoked { get; init; }

    /// <summary>Hash of the one refresh secret that is valid now.</summary>
    public required string RefreshHash { get; init; }

    /// <summary>Hashes of rotated secrets, newest last: presenting one of them is token theft.</summary>
    public IReadOnlyList<string> RotatedHashes { get; init; } = [];
}

/// <summary>A device's refresh token ("deviceId.secret", only its hash kept), rotated on every use, and its revocation.</summary>
public sealed class DeviceGrain(GrainId id, IGrainRuntime runtime) : Grain<DeviceState>(id, runtime), IDeviceGrain
{
    /// <summary>Enough rotated hashes to recognise a replay of any recent token.</summary>
    private const int RotatedHashesKept = 32;

    public Task<(DeviceView Device, string RefreshToken)> RegisterAsync(string userId, NewDevice device, CancellationToken ct) =>
        Transition<(DeviceView, string)>(turn =>
        {
            var secret = Secrets.NewToken(32);
            if (turn.State is { } existing)
            {
                if (existing.Revoked || existing.UserId != userId)
                {
                    return Errors.InvalidState("revoked", "register");
                }
                turn.State = Rotate(existing, secret, turn.Now, device.Ip);
            }
            else
            {
                turn.State = new DeviceState
                {
                    UserId = userId, Name = device.Name, Kind = device.Kind, CreatedAt = turn.Now, LastSeenAt = turn.Now,
                    Ip = device.Ip, RefreshHash = Secrets.Hash(secret),
                };
            }
            return (View(turn.State), Id.Key + "." + secret);
        }, ct);

    public async Task<(DeviceView Device, string UserId)?> GetAsync(CancellationToken ct) =>
        await ReadAsync(ct).ConfigureAwait(false) is { } r ? (View(r.State), r.State.UserId) : null;

    public Task<(DeviceView Device, string UserId, string RefreshToken)> RefreshAsync(string secret, string ip, CancellationToken ct) =>
        Transition<(DeviceView, string, string)>(turn =>
        {
            if (turn.State is not { Revoked: false } s)
            {
                throw Errors.InvalidRefreshToken();
            }
            if (Secrets.MatchesHash(secret, s.RefreshHash))
            {
                var next = Secrets.NewToken(32);
                turn.State = Rotate(s, next, turn.Now, ip);
                return (View(turn.State), s.UserId, Id.Key + "." + next);
            }
            if (s.RotatedHashes.Contains(Secrets.Hash(secret)))
            {
                // A rotated token came back: someone holds a copy. Sign the device out everywhere.
                turn.State = s with { Revoked = true };
                return Errors.RefreshTokenReused();
            }
            throw Errors.InvalidRefreshToken();
        }, ct);

    public Task RevokeAsync(CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            if (turn.State is { Revoked: false } s)
            {
                turn.State = s with { Revoked = true };
            }
            return true;
        }, ct);

    public async Task<bool> IsActiveAsync(CancellationToken ct) =>
        await ReadAsync(ct).ConfigureAwait(false) is { State.Revoked: false };

    private static DeviceState Rotate(DeviceState device, string secret, DateTimeOffset now, string ip) => device with
    {
        RefreshHash = Secrets.Hash(secret),
        RotatedHashes = [.. device.RotatedHashes.TakeLast(RotatedHashesKept - 1), device.RefreshHash],
        LastSeenAt = now,
        Ip = ip,
    };

    private DeviceView View(DeviceState d) => new(Id.Key, d.Name, d.Kind, d.CreatedAt, d.LastSeenAt, d.Ip, d.Revoked);
}

public sealed record UsernameState(string UserId);

public sealed class UsernameGrain(GrainId id, IGrainRuntime runtime) : Grain<UsernameState>(id, runtime), IUsernameGrain
{
    public Task ReserveAsync(string userId, CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            if (turn.State is { } taken)
            {
                return taken.UserId == userId ? true : Errors.UsernameTaken(Id.Key);
            }
            turn.State = new UsernameState(userId);
            return true;
        }, ct);

    public async Task<string?> GetUserIdAsync(CancellationToken ct) =>
        (await ReadAsync(ct).ConfigureAwait(false))?.State.UserId;
}

public sealed class SigningKeyGrain(GrainId id, IGrainRuntime runtime) : Grain<SigningKeyMaterial>(id, runtime), ISigningKeyGrain
{
    public async Task<SigningKeyMaterial> GetOrCreateAsync(CancellationToken ct) =>
        await ReadAsync(ct).ConfigureAwait(false) is { } r
            ? r.State
            : await Transition<SigningKeyMaterial>(turn =>
            {
                if (turn.State is null)
                {
                    using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
                    turn.State = new SigningKeyMaterial(Secrets.NewHexId(8), Convert.ToBase64String(key.ExportPkcs8PrivateKey()), turn.Now);
                }
                return turn.State;
            }, ct).ConfigureAwait(false);
}
