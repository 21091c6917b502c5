using QrOrleans.Runtime;
using QrOrleans.Users;

namespace QrOrleans.Grains.Users;

public sealed record DeviceState
{
    public required string Id { get; init; }
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

public sealed record UserState
{
    public required string Username { get; init; }
    public required string DisplayName { get; init; }
    public required DateTimeOffset CreatedAt { get; init; }
    public IReadOnlyList<DeviceState> Devices { get; init; } = [];
}

/// <summary>A user and their devices. Refresh tokens are "deviceId.secret"; only hashes are kept.</summary>
public sealed class UserGrain(GrainId id, IGrainRuntime runtime) : Grain<UserState>(id, runtime), IUserGrain
{
    /// <summary>Enough rotated hashes to recognise a replay of any recent token.</summary>
    private const int RotatedHashesKept = 32;

    public Task<UserView> CreateAsync(string username, string displayName, CancellationToken ct) =>
        Transition<UserView>(turn =>
        {
            if (turn.State is not null)
            {
                return View(turn.State);
            }
            turn.State = new UserState { Username = username, DisplayName = displayName, CreatedAt = turn.Now };
            return View(turn.State);
        }, ct);

    public async Task<UserView?> GetAsync(CancellationToken ct) =>
        await ReadAsync(ct).ConfigureAwait(false) is { } r ? View(r.State) : null;

    public Task<DeviceSession> AddDeviceAsync(NewDevice device, CancellationToken ct) =>
        Transition<DeviceSession>(turn =>
        {
            var s = turn.State ?? throw Errors.NotFound("The user");
            var secret = Secrets.NewToken(32);
            var existing = s.Devices.FirstOrDefault(d => d.Id == device.DeviceId);
            if (existing is { Revoked: true })
            {
                return Errors.InvalidState("revoked", "add");
            }
            var added = existing is null
                ? new DeviceState
                {
                    Id = device.DeviceId, Name = device.Name, Kind = device.Kind, CreatedAt = turn.Now,
                    LastSeenAt = turn.Now, Ip = device.Ip, RefreshHash = Secrets.Hash(secret),
                }
                : Rotate(existing, secret, turn.Now, device.Ip);
            turn.State = s with { Devices = [.. s.Devices.Where(d => d.Id != device.DeviceId), added] };
            return new DeviceSession(View(s), DeviceView(added), device.DeviceId + "." + secret);
        }, ct);

    public async Task<IReadOnlyList<DeviceView>> ListDevicesAsync(CancellationToken ct) =>
        await ReadAsync(ct).ConfigureAwait(false) is { } r ? r.State.Devices.Select(DeviceView).ToArray() : [];

    public Task RevokeDeviceAsync(string deviceId, CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            var s = turn.State ?? throw Errors.NotFound("The user");
            var device = s.Devices.FirstOrDefault(d => d.Id == deviceId) ?? throw Errors.NotFound("The device");
            if (!device.Revoked)
            {
                turn.State = s with { Devices = s.Devices.Select(d => d.Id == deviceId ? d with { Revoked = true } : d).ToArray() };
            }
            return true;
        }, ct);

    public Task<DeviceSession> RefreshAsync(string deviceId, string secret, string ip, CancellationToken ct) =>
        Transition<DeviceSession>(turn =>
        {
            var s = turn.State ?? throw Errors.InvalidRefreshToken();
            var device = s.Devices.FirstOrDefault(d => d.Id == deviceId) ?? throw Errors.InvalidRefreshToken();
            if (device.Revoked)
            {
                throw Errors.InvalidRefreshToken();
            }
            if (Secrets.MatchesHash(secret, device.RefreshHash))
            {
                var next = Secrets.NewToken(32);
                var rotated = Rotate(device, next, turn.Now, ip);
                turn.State = s with { Devices = s.Devices.Select(d => d.Id == deviceId ? rotated : d).ToArray() };
                return new DeviceSession(View(s), DeviceView(rotated), deviceId + "." + next);
            }
            if (device.RotatedHashes.Contains(Secrets.Hash(secret)))
            {
                // A rotated token came back: someone holds a copy. Sign the device out everywhere.
                turn.State = s with { Devices = s.Devices.Select(d => d.Id == deviceId ? d with { Revoked = true } : d).ToArray() };
                return Errors.RefreshTokenReused();
            }
            throw Errors.InvalidRefreshToken();
        }, ct);

    public async Task<bool> IsDeviceActiveAsync(string deviceId, CancellationToken ct) =>
        await ReadAsync(ct).ConfigureAwait(false) is { } r && r.State.Devices.Any(d => d.Id == deviceId && !d.Revoked);

    private static DeviceState Rotate(DeviceState device, string secret, DateTimeOffset now, string ip) => device with
    {
        RefreshHash = Secrets.Hash(secret),
        RotatedHashes = [.. device.RotatedHashes.TakeLast(RotatedHashesKept - 1), device.RefreshHash],
        LastSeenAt = now,
        Ip = ip,
    };

    private UserView View(UserState s) => new(Id.Key, s.Username, s.DisplayName, s.CreatedAt);

    private static DeviceView DeviceView(DeviceState d) => new(d.Id, d.Name, d.Kind, d.CreatedAt, d.LastSeenAt, d.Ip, d.Revoked);
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
