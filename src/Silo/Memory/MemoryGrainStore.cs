using System.Runtime.CompilerServices;
using System.Threading.Channels;
using QrOrleans.Runtime;

namespace QrOrleans.Silo.Memory;

/// <summary>
/// The embedded default: grain rows, reminder rows and the stream in one process. One lock makes each commit
/// (state + reminders + events) atomic, as one transaction does in PostgreSQL. State is kept as the same
/// serialized bytes a table would hold, so no caller ever shares an object with the store.
/// </summary>
public sealed class MemoryGrainStore : IGrainStore, IReminderTable, IStreamSource, IGrainStatistics
{
    private readonly Lock _gate = new();
    private readonly Dictionary<GrainId, StoredGrain> _grains = [];
    private readonly Dictionary<(GrainId Grain, string Name), ReminderRow> _reminders = [];
    private readonly PriorityQueue<(GrainId Grain, string Name, long Seq), DateTimeOffset> _dueQueue = new();
    private readonly Channel<StreamSignal> _stream = Channel.CreateUnbounded<StreamSignal>(new UnboundedChannelOptions { SingleReader = true });
    private long _seq;

    private sealed record ReminderRow(DateTimeOffset DueAt, TimeSpan? Period, long Seq);

    public Task<StoredGrain?> ReadAsync(GrainId id, CancellationToken ct)
    {
        lock (_gate)
        {
            return Task.FromResult(_grains.GetValueOrDefault(id));
        }
    }

    public Task<long> CommitAsync(GrainId id, long? expectedEtag, byte[]? state, TurnEffects effects, CancellationToken ct)
    {
        lock (_gate)
        {
            var current = _grains.GetValueOrDefault(id);
            if (current?.Etag != expectedEtag)
            {
                throw new EtagConflictException(id, expectedEtag);
            }
            var version = (expectedEtag ?? 0) + 1;
            if (state is null)
            {
                _grains.Remove(id);
            }
            else
            {
                _grains[id] = new StoredGrain(state, version);
            }
            foreach (var change in effects.Reminders)
            {
                ApplyReminder(id, change);
            }
            if (state is null)
            {
                foreach (var key in _reminders.Keys.Where(k => k.Grain == id).ToArray())
                {
                    _reminders.Remove(key);
                }
            }
            foreach (var e in effects.Events)
            {
                _stream.Writer.TryWrite(new StreamSignal(e));
            }
            return Task.FromResult(version);
        }
    }

    private void ApplyReminder(GrainId id, ReminderChange change)
    {
        if (change.DueAt is not { } due)
        {
            _reminders.Remove((id, change.Name));
            return;
        }
        var seq = ++_seq;
        _reminders[(id, change.Name)] = new ReminderRow(due, change.Period, seq);
        _dueQueue.Enqueue((id, change.Name, seq), due);
    }

    public Task<IReadOnlyList<DueReminder>> ClaimDueAsync(DateTimeOffset now, TimeSpan lease, int max, CancellationToken ct)
    {
        var claimed = new List<DueReminder>();
        lock (_gate)
        {
            // The queue may hold stale entries (reminder changed or removed since): skip those.
            while (claimed.Count < max && _dueQueue.TryPeek(out var entry, out var due) && due <= now)
            {
                _dueQueue.Dequeue();
                if (!_reminders.TryGetValue((entry.Grain, entry.Name), out var row) || row.Seq != entry.Seq)
                {
                    continue;
                }
                claimed.Add(new DueReminder(entry.Grain, entry.Name, row.DueAt, row.Period, row.Seq));
                // Hidden until the lease ends; completing it first removes or reschedules it.
                _dueQueue.Enqueue(entry, now + lease);
            }
        }
        return Task.FromResult<IReadOnlyList<DueReminder>>(claimed);
    }

    public Task CompleteAsync(DueReminder reminder, DateTimeOffset now, CancellationToken ct)
    {
        lock (_gate)
        {
            var key = (reminder.Grain, reminder.Name);
            if (!_reminders.TryGetValue(key, out var row) || row.Seq != reminder.Seq)
            {
                return Task.CompletedTask; // the grain set it anew meanwhile
            }
            if (row.Period is { } period && period > TimeSpan.Zero)
            {
                var next = row.DueAt + period;
                while (next <= now)
                {
                    next += period;
                }
                ApplyReminder(reminder.Grain, new ReminderChange(reminder.Name, next, period));
            }
            else
            {
                _reminders.Remove(key);
            }
        }
        return Task.CompletedTask;
    }

    public Task<(int Due, int Overdue)> BacklogAsync(DateTimeOffset now, TimeSpan overdueBy, CancellationToken ct)
    {
        lock (_gate)
        {
            var due = _reminders.Values.Count(r => r.DueAt <= now);
            var overdue = _reminders.Values.Count(r => r.DueAt <= now - overdueBy);
            return Task.FromResult((due, overdue));
        }
    }

    public Task<IReadOnlyDictionary<string, int>> CountByAsync(string grainType, string property, CancellationToken ct)
    {
        byte[][] states;
        lock (_gate)
        {
            states = _grains.Where(g => g.Key.Type == grainType).Select(g => g.Value.State).ToArray();
        }
        var counts = new Dictionary<string, int>();
        foreach (var state in states)
        {
            using var doc = System.Text.Json.JsonDocument.Parse(state);
            var value = doc.RootElement.TryGetProperty(property, out var p) ? p.GetString() ?? "" : "";
            counts[value] = counts.GetValueOrDefault(value) + 1;
        }
        return Task.FromResult<IReadOnlyDictionary<string, int>>(counts);
    }

    public async IAsyncEnumerable<StreamSignal> ListenAsync([EnumeratorCancellation] CancellationToken ct)
    {
        while (await _stream.Reader.WaitToReadAsync(ct).ConfigureAwait(false))
        {
            while (_stream.Reader.TryRead(out var signal))
            {
                yield return signal;
            }
        }
    }
}
