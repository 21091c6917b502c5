using QrOrleans.Audit;
using QrOrleans.Runtime;

namespace QrOrleans.Grains.Audit;

/// <summary>The entries of one user's audit trail, oldest first.</summary>
public sealed record AuditState
{
    public IReadOnlyList<AuditEntry> Entries { get; init; } = [];
}

/// <summary>
/// A user's audit trail. Every append trims what is past retention or over the bound, and a daily reminder trims a
/// trail nobody appends to; an emptied trail deletes itself (and with it its reminder).
/// </summary>
public sealed class AuditGrain(GrainId id, IGrainRuntime runtime, AuditOptions options)
    : Grain<AuditState>(id, runtime), IAuditGrain, IRemindable
{
    private const string TrimReminder = "trim";

    public Task<AuditEntry> AppendAsync(AuditEntry entry, CancellationToken ct) =>
        Transition<AuditEntry>(turn =>
        {
            var stamped = entry with { At = turn.Now };
            var first = turn.State is null;
            var kept = Trim(turn.State?.Entries ?? [], turn.Now, options.MaxEntries - 1);
            turn.State = new AuditState { Entries = [.. kept, stamped] };
            if (first)
            {
                turn.SetReminder(TrimReminder, turn.Now + options.TrimInterval, options.TrimInterval);
            }
            return stamped;
        }, ct);

    public async Task<IReadOnlyList<AuditEntry>> ListAsync(DateTimeOffset? from, DateTimeOffset? to, int max, CancellationToken ct)
    {
        if (await ReadAsync(ct).ConfigureAwait(false) is not { } r)
        {
            return [];
        }
        var horizon = Runtime.Time.GetUtcNow() - options.Retention;
        return r.State.Entries
            .Where(e => e.At >= horizon && (from is null || e.At >= from) && (to is null || e.At < to))
            .Reverse()
            .Take(Math.Max(0, max))
            .ToArray();
    }

    public Task ReceiveReminderAsync(string name, DateTimeOffset dueAt, CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            if (turn.State is not { } s)
            {
                return false;
            }
            var kept = Trim(s.Entries, turn.Now, options.MaxEntries);
            if (kept.Count == 0)
            {
                turn.State = null; // nothing left to keep: the row and its reminder go
            }
            else if (kept.Count != s.Entries.Count)
            {
                turn.State = s with { Entries = kept };
            }
            return true;
        }, ct);

    /// <summary>The newest <paramref name="max"/> entries that are still within retention.</summary>
    private IReadOnlyList<AuditEntry> Trim(IReadOnlyList<AuditEntry> entries, DateTimeOffset now, int max)
    {
        var horizon = now - options.Retention;
        var fresh = entries.Where(e => e.At >= horizon).ToArray();
        return fresh.Length > max ? fresh[^Math.Max(0, max)..] : fresh;
    }
}
