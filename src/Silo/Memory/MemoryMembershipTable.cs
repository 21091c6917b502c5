using QrOrleans.Runtime;

namespace QrOrleans.Silo.Memory;

/// <summary>The embedded default's membership: this process is the whole cluster.</summary>
public sealed class MemoryMembershipTable : IMembershipTable
{
    private readonly Dictionary<string, SiloRecord> _silos = [];

    public Task JoinAsync(SiloRecord silo, CancellationToken ct)
    {
        lock (_silos)
        {
            _silos[silo.Id] = silo;
        }
        return Task.CompletedTask;
    }

    public Task<bool> HeartbeatAsync(string siloId, DateTimeOffset now, CancellationToken ct)
    {
        lock (_silos)
        {
            if (_silos.TryGetValue(siloId, out var s) && s.Status == SiloStatuses.Active)
            {
                _silos[siloId] = s with { LastHeartbeatAt = now };
                return Task.FromResult(true);
            }
            return Task.FromResult(false);
        }
    }

    public Task LeaveAsync(string siloId, CancellationToken ct) => Update(siloId, s => s with { Status = SiloStatuses.Stopped });

    public Task<int> MarkDeadAsync(DateTimeOffset before, CancellationToken ct)
    {
        lock (_silos)
        {
            var dead = _silos.Values.Where(s => s.Status == SiloStatuses.Active && s.LastHeartbeatAt < before).ToList();
            foreach (var s in dead)
            {
                _silos[s.Id] = s with { Status = SiloStatuses.Dead };
            }
            return Task.FromResult(dead.Count);
        }
    }

    public Task<IReadOnlyList<SiloRecord>> ListAsync(CancellationToken ct)
    {
        lock (_silos)
        {
            return Task.FromResult<IReadOnlyList<SiloRecord>>(_silos.Values.OrderBy(s => s.StartedAt).ToList());
        }
    }

    private Task Update(string siloId, Func<SiloRecord, SiloRecord> change)
    {
        lock (_silos)
        {
            if (_silos.TryGetValue(siloId, out var s))
            {
                _silos[siloId] = change(s);
            }
        }
        return Task.CompletedTask;
    }
}
