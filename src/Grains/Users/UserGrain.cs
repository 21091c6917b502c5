using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using QrOrleans.KeyBinding;
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
public sealed class UserGrain(
    [PersistentState("user", OrleansNames.Storage)] IPersistentState<UserState> user,
    [FromKeyedServices(OrleansNames.Clock)] TimeProvider time) : Grain, IUserGrain
{
    private string Key => this.GetPrimaryKeyString();

    public async Task<UserView> CreateAsync(string username, string displayName, CancellationToken ct)
    {
        if (!user.RecordExists)
        {
            user.State = new UserState { Username = username, DisplayName = displayName, CreatedAt = time.GetUtcNow() };
            await user.PersistAsync(this);
        }
        return View(user.State);
    }

    public Task<UserView?> GetAsync(CancellationToken ct) =>
        Task.FromResult(user.RecordExists ? View(user.State) : null);

    public async Task<DeviceSession> AddDeviceAsync(NewDevice device, CancellationToken ct)
    {
        if (!user.RecordExists)
        {
            throw Errors.NotFound("The user");
        }
        // The id goes on the list first: if the device grain's write then fails, a retry completes it, and a
        // listed id without a device grain is skipped when listing.
        if (!user.State.DeviceIds.Contains(device.DeviceId))
        {
            user.State = user.State with { DeviceIds = [.. user.State.DeviceIds, device.DeviceId] };
            await user.PersistAsync(this);
        }
        var issued = await GrainFactory.Grain<IDeviceGrain>(device.DeviceId).RegisterAsync(Key, device, ct);
        return new DeviceSession(View(user.State), issued.Device, issued.RefreshToken, issued.KeyThumbprint);
    }

    public async Task<IReadOnlyList<DeviceView>> ListDevicesAsync(CancellationToken ct)
    {
        if (!user.RecordExists)
        {
            return [];
        }
        var devices = await Task.WhenAll(user.State.DeviceIds.Select(d => GrainFactory.Grain<IDeviceGrain>(d).GetAsync(ct)));
        return devices.Where(d => d?.UserId == Key).Select(d => d!.Device).ToArray();
    }

    public async Task RevokeDeviceAsync(string deviceId, CancellationToken ct)
    {
        var device = GrainFactory.Grain<IDeviceGrain>(deviceId);
        if (await device.GetAsync(ct) is not { } d || d.UserId != Key)
        {
            throw Errors.NotFound("The device");
        }
        await device.RevokeAsync(ct);
    }

    public async Task<DeviceSession> RefreshAsync(string deviceId, string secret, string ip, string? proofThumbprint, CancellationToken ct)
    {
        var issued = await GrainFactory.Grain<IDeviceGrain>(deviceId).RefreshAsync(secret, ip, proofThumbprint, ct);
        if (issued.UserId != Key || !user.RecordExists)
        {
            throw Errors.InvalidRefreshToken();
        }
        return new DeviceSession(View(user.State), issued.Device, issued.RefreshToken, issued.KeyThumbprint);
    }

    private UserView View(UserState s) => new(Key, s.Username, s.DisplayName, s.CreatedAt);
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

    /// <summary>
    /// RFC 7638 thumbprint of the key the device's tokens are bound to (a desktop that registered a key at create);
    /// null for bearer tokens, and for devices stored before key binding existed.
    /// </summary>
    public string? KeyThumbprint { get; init; }
}

/// <summary>A device's refresh token ("deviceId.secret", only its hash kept), rotated on every use, and its revocation.</summary>
public sealed partial class DeviceGrain(
    [PersistentState("device", OrleansNames.Storage)] IPersistentState<DeviceState> device,
    [FromKeyedServices(OrleansNames.Clock)] TimeProvider time,
    ILogger<DeviceGrain> log) : Grain, IDeviceGrain
{
    [LoggerMessage(LogLevel.Warning, "A device's revocation is stored, but its notice to the nodes failed ({Error}); they forget the device within seconds anyway")]
    private static partial void LogNoticeFailed(ILogger log, string error);

    /// <summary>Enough rotated hashes to recognise a replay of any recent token.</summary>
    private const int RotatedHashesKept = 32;

    private string Key => this.GetPrimaryKeyString();

    public async Task<IssuedRefreshToken> RegisterAsync(string userId, NewDevice registration, CancellationToken ct)
    {
        var secret = Secrets.NewToken(32);
        var now = time.GetUtcNow();
        if (device.RecordExists)
        {
            if (device.State.Revoked || device.State.UserId != userId)
            {
                throw Errors.InvalidState("revoked", "register");
            }
            device.State = Rotate(device.State, secret, now, registration.Ip);
        }
        else
        {
            device.State = new DeviceState
            {
                UserId = userId, Name = registration.Name, Kind = registration.Kind, CreatedAt = now, LastSeenAt = now,
                Ip = registration.Ip, RefreshHash = Secrets.Hash(secret), KeyThumbprint = registration.KeyThumbprint,
            };
        }
        await device.PersistAsync(this);
        return new IssuedRefreshToken(View(device.State), userId, Key + "." + secret, device.State.KeyThumbprint);
    }

    public Task<OwnedDevice?> GetAsync(CancellationToken ct) =>
        Task.FromResult(device.RecordExists ? new OwnedDevice(View(device.State), device.State.UserId) : null);

    public async Task<IssuedRefreshToken> RefreshAsync(string secret, string ip, string? proofThumbprint, CancellationToken ct)
    {
        if (!device.RecordExists || device.State.Revoked)
        {
            throw Errors.InvalidRefreshToken();
        }
        var s = device.State;
        // Before the secret is looked at: without the key a copied token is useless, and it must not be able to sign
        // the device out either (what a rotated token's comeback below does).
        if (KeyBindingErrors.Check(s.KeyThumbprint, proofThumbprint) is { } refusal)
        {
            throw refusal;
        }
        if (Secrets.MatchesHash(secret, s.RefreshHash))
        {
            var next = Secrets.NewToken(32);
            device.State = Rotate(s, next, time.GetUtcNow(), ip);
            await device.PersistAsync(this);
            return new IssuedRefreshToken(View(device.State), s.UserId, Key + "." + next, s.KeyThumbprint);
        }
        if (s.RotatedHashes.Contains(Secrets.Hash(secret)))
        {
            // A rotated token came back: someone holds a copy. Sign the device out everywhere.
            device.State = s with { Revoked = true };
            await device.PersistAsync(this);
            await AnnounceRevokedAsync();
            throw Errors.RefreshTokenReused();
        }
        throw Errors.InvalidRefreshToken();
    }

    public async Task RevokeAsync(CancellationToken ct)
    {
        if (device.RecordExists && !device.State.Revoked)
        {
            device.State = device.State with { Revoked = true };
            await device.PersistAsync(this);
            await AnnounceRevokedAsync();
        }
    }

    /// <summary>
    /// Tells every gateway node, which may have this device's "active" answer in memory for a few seconds. The
    /// revocation is stored already; if the notice is lost, a node forgets the answer when it runs out anyway.
    /// </summary>
    private async Task AnnounceRevokedAsync()
    {
        try
        {
            await this.GetStreamProvider(OrleansNames.Streams).GetStream<DeviceRevoked>(StreamId.Create(DeviceStreams.Namespace, DeviceStreams.Key))
                .OnNextAsync(new DeviceRevoked(Key));
        }
        catch (Exception e)
        {
            LogNoticeFailed(log, e.GetType().Name);
        }
    }

    public Task<bool> IsActiveAsync(string userId, CancellationToken ct) =>
        Task.FromResult(device.RecordExists && !device.State.Revoked && device.State.UserId == userId);

    private static DeviceState Rotate(DeviceState d, string secret, DateTimeOffset now, string ip) => d with
    {
        RefreshHash = Secrets.Hash(secret),
        RotatedHashes = [.. d.RotatedHashes.TakeLast(RotatedHashesKept - 1), d.RefreshHash],
        LastSeenAt = now,
        Ip = ip,
    };

    private DeviceView View(DeviceState d) => new(Key, d.Name, d.Kind, d.CreatedAt, d.LastSeenAt, d.Ip, d.Revoked);
}

public sealed record UsernameState
{
    public required string UserId { get; init; }
}

public sealed class UsernameGrain(
    [PersistentState("username", OrleansNames.Storage)] IPersistentState<UsernameState> name) : Grain, IUsernameGrain
{
    public async Task ReserveAsync(string userId, CancellationToken ct)
    {
        if (name.RecordExists)
        {
            if (name.State.UserId != userId)
            {
                throw Errors.UsernameTaken(this.GetPrimaryKeyString());
            }
            return;
        }
        name.State = new UsernameState { UserId = userId };
        await name.PersistAsync(this);
    }

    public Task<string?> GetUserIdAsync(CancellationToken ct) => Task.FromResult(name.RecordExists ? name.State.UserId : null);
}

public sealed record SigningKeyState
{
    public required string KeyId { get; init; }
    public required string PrivateKeyPkcs8Base64 { get; init; }
    public required DateTimeOffset CreatedAt { get; init; }
}

public sealed class SigningKeyGrain(
    [PersistentState("signing-key", OrleansNames.Storage)] IPersistentState<SigningKeyState> key,
    [FromKeyedServices(OrleansNames.Clock)] TimeProvider time) : Grain, ISigningKeyGrain
{
    public async Task<SigningKeyMaterial> GetOrCreateAsync(CancellationToken ct)
    {
        if (!key.RecordExists)
        {
            using var ec = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
            key.State = new SigningKeyState
            {
                KeyId = Secrets.NewHexId(8), PrivateKeyPkcs8Base64 = Convert.ToBase64String(ec.ExportPkcs8PrivateKey()), CreatedAt = time.GetUtcNow(),
            };
            await key.PersistAsync(this);
        }
        return new SigningKeyMaterial(key.State.KeyId, key.State.PrivateKeyPkcs8Base64, key.State.CreatedAt);
    }
}
