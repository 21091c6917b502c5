using Npgsql;
using QrOrleans.Runtime;
using QrOrleans.Silo.Memory;
using QrOrleans.Silo.PostgreSql;
using QrOrleans.Tests.Cluster;

namespace QrOrleans.Tests.Accounts;

/// <summary>What every lease table must do; one subclass per provider.</summary>
public abstract class LeaseTableContract
{
    private const string Type = "account";
    private static readonly DateTimeOffset T0 = new(2026, 11, 22, 12, 0, 0, TimeSpan.Zero);
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(15);

    protected abstract Task<ILeaseTable> TableAsync();

    [Fact]
    public async Task A_lease_has_one_holder_until_it_expires_and_every_grant_raises_the_epoch()
    {
        var table = await TableAsync();
        await table.RegisterAsync(Type, "a", default);
        await table.RegisterAsync(Type, "a", default); // idempotent

        var first = Assert.Single(await table.AcquireAsync(Type, "silo-1", T0, Lease, 10, default));
        Assert.Equal(("a", T0 + Lease), (first.Key, first.ExpiresAt));
        Assert.True(first.Epoch > 0);
        Assert.Empty(await table.AcquireAsync(Type, "silo-2", T0.AddSeconds(5), Lease, 10, default));

        var renewed = Assert.Single(await table.RenewAsync(Type, "silo-1", [first], T0.AddSeconds(10), Lease, default));
        Assert.Equal(T0.AddSeconds(25), renewed.ExpiresAt);
        Assert.Empty(await table.AcquireAsync(Type, "silo-2", T0.AddSeconds(20), Lease, 10, default));

        // silo-1 stops renewing: once expired, silo-2 takes it at the next epoch, and silo-1 can no longer renew or release it.
        var taken = Assert.Single(await table.AcquireAsync(Type, "silo-2", T0.AddSeconds(26), Lease, 0, default));
        Assert.True(taken.Epoch > first.Epoch);
        Assert.Empty(await table.RenewAsync(Type, "silo-1", [renewed], T0.AddSeconds(27), Lease, default));
        await table.ReleaseAsync(Type, "silo-1", [renewed], default);
        Assert.Equal(("silo-2", taken.Epoch), Holder(await table.ListAsync(Type, default), "a"));

        await table.ReleaseAsync(Type, "silo-2", [taken], default);
        Assert.Equal((null, taken.Epoch), Holder(await table.ListAsync(Type, default), "a"));
        var again = Assert.Single(await table.AcquireAsync(Type, "silo-1", T0.AddSeconds(28), Lease, 1, default));
        Assert.True(again.Epoch > taken.Epoch);

        // Registered anew (an account deleted and created again), the lease still outranks its earlier life.
        await table.UnregisterAsync(Type, "a", default);
        Assert.Equal(0, await table.CountAsync(Type, default));
        await table.RegisterAsync(Type, "a", default);
        Assert.True(Assert.Single(await table.AcquireAsync(Type, "silo-2", T0.AddSeconds(29), Lease, 1, default)).Epoch > again.Epoch);
    }

    [Fact]
    public async Task Free_leases_are_taken_up_to_the_share_asked_for_expired_ones_always()
    {
        var table = await TableAsync();
        foreach (var key in new[] { "a", "b", "c", "d" })
        {
            await table.RegisterAsync(Type, key, default);
        }
        await table.RegisterAsync("other", "a", default);
        var two = await table.AcquireAsync(Type, "silo-1", T0, Lease, 2, default);
        Assert.Equal(2, two.Count);
        Assert.Equal(4, await table.CountAsync(Type, default));

        // silo-1 dies: silo-2 asks for no free leases yet gets silo-1's expired ones.
        var takenOver = await table.AcquireAsync(Type, "silo-2", T0 + Lease + TimeSpan.FromSeconds(1), Lease, 0, default);
        Assert.Equal(two.Select(g => g.Key).Order(), takenOver.Select(g => g.Key).Order());
        Assert.Equal(2, (await table.ListAsync(Type, default)).Count(l => l.Holder is null));
        Assert.Equal((null, 0L), Holder(await table.ListAsync("other", default), "a"));
    }

    private static (string? Holder, long Epoch) Holder(IReadOnlyList<LeaseRecord> rows, string key) =>
        rows.Single(r => r.Key == key) is var r ? (r.Holder, r.Epoch) : default;
}

public sealed class MemoryLeaseTableTests : LeaseTableContract
{
    protected override Task<ILeaseTable> TableAsync() => Task.FromResult<ILeaseTable>(new MemoryLeaseTable());
}

public sealed class PostgreSqlLeaseTableTests : LeaseTableContract, IAsyncLifetime
{
    private PostgresDatabase _db = null!;
    private NpgsqlDataSource _source = null!;

    public async ValueTask InitializeAsync()
    {
        _db = await PostgresDatabase.CreateAsync(maxPoolSize: 4);
        _source = NpgsqlDataSource.Create(_db.ConnectionString);
        await new SchemaMigrator(_source, Microsoft.Extensions.Logging.Abstractions.NullLogger<SchemaMigrator>.Instance).StartAsync(default);
    }

    protected override Task<ILeaseTable> TableAsync() => Task.FromResult<ILeaseTable>(new PostgreSqlLeaseTable(_source));

    public async ValueTask DisposeAsync()
    {
        await _source.DisposeAsync();
        await _db.DisposeAsync();
    }
}
