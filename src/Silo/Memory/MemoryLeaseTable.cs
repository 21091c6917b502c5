using QrOrleans.Runtime;

namespace QrOrleans.Silo.Memory;

/// <summary>The embedded default's leases: one process, so its one silo holds everything; same rules as PostgreSQL.</summary>
public sealed class MemoryLeaseTable : ILeaseTable
{
    private readonly Lock _gate = new();
    private readonly Dictionary<(string Type, string Key), LeaseRecord> _rows = [];
    private long _epoch;

    public Task RegisterAsync(string grainType, string key, CancellationToken ct)
    {
        lock (_gate)
        {
            _rows.TryAdd((grainType, key), new LeaseRecord(key, null, 0, null));
        }
        return Task.CompletedTask;
    }

    public Task UnregisterAsync(string grainType, string key, CancellationToken ct)
    {
        lock (_gate)
        {
            _rows.Remove((grainType, key));
        }
        return Task.CompletedTask;
    }

    public Task<IReadOnlyList<LeaseGrant>> AcquireAsync(
        string grainType, string holder, DateTimeOffset now, TimeSpan duration, int maxFree, CancellationToken ct)
    {
        var granted = new List<LeaseGrant>();
        lock (_gate)
        {
            var expired = _rows.Where(r => r.Key.Type == grainType && r.Value.Holder is not null && r.Value.ExpiresAt < now);
            var free = _rows.Where(r => r.Key.Type == grainType && r.Value.Holder is null).Take(Math.Max(0, maxFree));
            foreach (var (id, row) in expired.Concat(free).ToList())
            {
                var grant = new LeaseGrant(row.Key, ++_epoch, now + duration);
                _rows[id] = new LeaseRecord(row.Key, holder, grant.Epoch, grant.ExpiresAt);
                granted.Add(grant);
            }
        }
        return Task.FromResult<IReadOnlyList<LeaseGrant>>(granted);
    }

    public Task<IReadOnlyList<LeaseGrant>> RenewAsync(
        string grainType, string holder, IReadOnlyCollection<LeaseGrant> held, DateTimeOffset now, TimeSpan duration, CancellationToken ct)
    {
        var renewed = new List<LeaseGrant>();
        lock (_gate)
        {
            foreach (var lease in held)
            {
                if (_rows.TryGetValue((grainType, lease.Key), out var row) && row.Holder == holder && row.Epoch == lease.Epoch)
                {
                    _rows[(grainType, lease.Key)] = row with { ExpiresAt = now + duration };
                    renewed.Add(lease with { ExpiresAt = now + duration });
                }
            }
        }
        return Task.FromResult<IReadOnlyList<LeaseGrant>>(renewed);
    }

    public Task ReleaseAsync(string grainType, string holder, IReadOnlyCollection<LeaseGrant> held, CancellationToken ct)
    {
        lock (_gate)
        {
            foreach (var lease in held)
            {
                if (_rows.TryGetValue((grainType, lease.Key), out var row) && row.Holder == holder && row.Epoch == lease.Epoch)
                {
                    _rows[(grainType, lease.Key)] = row with { Holder = null, ExpiresAt = null };
                }
            }
        }
        return Task.CompletedTask;
    }

    public Task<int> CountAsync(string grainType, CancellationToken ct)
    {
        lock (_gate)
        {
            return Task.FromResult(_rows.Keys.Count(k => k.Type == grainType));
        }
    }

    public Task<IReadOnlyList<LeaseRecord>> ListAsync(string grainType, CancellationToken ct)
    {
        lock (_gate)
        {
            return Task.FromResult<IReadOnlyList<LeaseRecord>>(
                _rows.Where(r => r.Key.Type == grainType).Select(r => r.Value).OrderBy(r => r.Key, StringComparer.Ordinal).ToList());
        }
    }
}
