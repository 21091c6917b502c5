using Microsoft.Extensions.DependencyInjection;
using Orleans.Hosting;
using Orleans.Runtime;
using Orleans.Storage;
using QrOrleans.Gateway.Problems;
using QrOrleans.Grains.QrSessions;
using QrOrleans.QrSessions;
using QrOrleans.Silo.Hosting;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.QrSessions;

/// <summary>
/// Partial failures that <c>bench soak</c> found. A transition whose write fails because storage is unreachable (Redis
/// restarting) is not half-done: the session answers from what storage holds, and the phone's retry is a real transition that the
/// desktop is told of. Before the fix the activation kept the unwritten "scanned" in memory, the retry answered 200
/// from it, and no desktop was ever told of the scan. A claim whose device link failed stays approved.
/// </summary>
public sealed class StorageFailureTests
{
    private static readonly Requester Desktop = new("d", "browser", "b", "o", "1.1.1.1", DateTimeOffset.UnixEpoch);

    [Fact]
    public async Task A_scan_whose_write_failed_leaves_the_session_pending_and_the_retry_is_published()
    {
        var fault = new StorageFault();
        await using var silo = await SiloHarness.StartAsync(silo: s => Flaky(s, fault));
        var grain = silo.Grains.GetGrain<IQrSessionGrain>(Grains.Secrets.NewToken(16));
        var created = await grain.CreateAsync(Desktop);
        var secret = SecretOf(created);

        fault.FailWrites = true;
        var failed = await Assert.ThrowsAnyAsync<Exception>(() => grain.ScanAsync(secret, "user-1", "2.2.2.2"));
        Assert.True(ProblemResponses.Unavailable(failed), $"a write refused by storage is a retryable 503, not a 500: {failed}");
        fault.FailWrites = false;

        // Nothing was stored, so nothing happened: the desktop still sees its pending code.
        var after = await grain.GetSnapshotAsync(created.DesktopToken);
        Assert.Equal((QrSessionStates.Pending, created.Snapshot.Version), (after.State, after.Version));

        // The phone's retry is the transition itself: stored, with the next version.
        var retry = await grain.ScanAsync(secret, "user-1", "2.2.2.2");
        var scanned = await grain.GetSnapshotAsync(created.DesktopToken);
        Assert.Equal((QrSessionStates.Scanned, created.Snapshot.Version + 1), (scanned.State, scanned.Version));
        Assert.Contains(scanned.NumberMatch, retry.NumberChoices);
        var stored = new GrainState<QrSessionState>(null!);
        await silo.Cluster.Silos[0].ServiceProvider.GetRequiredKeyedService<IGrainStorage>("flaky-inner").ReadStateAsync("session", grain.GetGrainId(), stored);
        Assert.Equal((QrSessionStates.Scanned, scanned.Version), (stored.State?.State, stored.State?.Version));
    }

    [Fact]
    public async Task A_claim_whose_device_link_failed_stays_approved_and_the_desktops_retry_completes_it_once()
    {
        // bench soak: the session stored Completed, then linking the device failed (the user's silo had died), and the
        // desktop's retry was 410 already_claimed: an approved sign-in lost.
        var fault = new StorageFault();
        await using var silo = await SiloHarness.StartAsync(silo: s => Flaky(s, fault));
        var userId = Grains.Secrets.NewHexId(16);
        var user = silo.Grains.GetGrain<Users.IUserGrain>(userId);
        await user.CreateAsync("claimer", "Claimer");
        var grain = silo.Grains.GetGrain<IQrSessionGrain>(Grains.Secrets.NewToken(16));
        var created = await grain.CreateAsync(Desktop);
        await grain.ScanAsync(SecretOf(created), userId, "2.2.2.2");
        await grain.ApproveAsync(userId, (await grain.GetSnapshotAsync(created.DesktopToken)).NumberMatch!);

        fault.FailWrites = true;
        var failed = await Assert.ThrowsAnyAsync<Exception>(() => grain.BeginClaimAsync(created.DesktopToken, null));
        Assert.True(ProblemResponses.Unavailable(failed), failed.ToString());
        fault.FailWrites = false;
        Assert.Equal(QrSessionStates.Approved, (await grain.GetSnapshotAsync(created.DesktopToken)).State);

        var grant = await grain.BeginClaimAsync(created.DesktopToken, null);
        Assert.Equal(userId, grant.UserId);
        Assert.StartsWith(grant.DeviceId + ".", grant.Session!.RefreshToken, StringComparison.Ordinal);
        await grain.ConfirmClaimAsync(created.DesktopToken, grant.GrantId!);
        Assert.Equal(QrSessionStates.Completed, (await grain.GetSnapshotAsync(created.DesktopToken)).State);
        Assert.Equal([grant.DeviceId], (await user.ListDevicesAsync()).Select(d => d.Id));
        var again = await Assert.ThrowsAsync<GrainException>(() => grain.BeginClaimAsync(created.DesktopToken, null));
        Assert.Equal("already_claimed", again.Code);
    }

    [Fact]
    public void Orleans_redis_storage_errors_are_storage_unavailable()
    {
        // What Orleans' Redis provider throws when Redis went away: the Redis error only in the message.
        var wrapped = new OrleansException("Error from storage provider RedisGrainStorage.session during WriteStateAsync",
            new Orleans.Persistence.Redis.RedisStorageException("Failed to write grain state. StackExchange.Redis.RedisConnectionException: SocketFailure"));
        Assert.True(ProblemResponses.Unavailable(wrapped));
        Assert.False(ProblemResponses.Unavailable(new OrleansException("a bug", new InvalidOperationException())));
    }

    private static string SecretOf(SessionCreated created) => created.Snapshot.Qr!.Url[(created.Snapshot.Qr.Url.LastIndexOf('.') + 1)..];

    /// <summary>The system's grain storage, with writes refused while <paramref name="fault"/> says so.</summary>
    private static void Flaky(ISiloBuilder silo, StorageFault fault)
    {
        silo.AddLocalGrainStorage("flaky-inner", GrainStateJson.Serializer);
        silo.Services.AddKeyedSingleton<IGrainStorage>(OrleansNames.Storage,
            (sp, _) => new FlakyStorage(sp.GetRequiredKeyedService<IGrainStorage>("flaky-inner"), fault));
    }

    private sealed class StorageFault
    {
        public volatile bool FailWrites;
    }

    /// <summary>The embedded storage, with writes refused on demand as a storage that went away refuses them.</summary>
    private sealed class FlakyStorage(IGrainStorage inner, StorageFault fault) : IGrainStorage, ILifecycleParticipant<ISiloLifecycle>
    {
        public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) => inner.ReadStateAsync(stateName, grainId, grainState);

        public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) =>
            fault.FailWrites ? throw new TimeoutException("storage unreachable (test)") : inner.WriteStateAsync(stateName, grainId, grainState);

        public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState) => inner.ClearStateAsync(stateName, grainId, grainState);

        public void Participate(ISiloLifecycle lifecycle) => (inner as ILifecycleParticipant<ISiloLifecycle>)?.Participate(lifecycle);
    }
}
