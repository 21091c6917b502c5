using Microsoft.Extensions.DependencyInjection;
using QrOrleans.Audit;

namespace QrOrleans.Grains.Audit;

/// <summary>The entries of one user's audit trail, oldest first.</summary>
public sealed record AuditState
{
    public IReadOnlyList<AuditEntry> Entries { get; init; } = [];
}

/// <summary>
/// A user's audit trail. Every append trims what is past retention or over the bound, and a daily reminder trims a
/// trail nobody appends to; an emptied trail deletes itself and its reminder.
/// </summary>
public sealed class AuditGrain(
    [PersistentState("audit", OrleansNames.Storage)] IPersistentState<AuditState> trail,
    AuditOptions options,
    [FromKeyedServices(OrleansNames.Clock)] TimeProvider time) : Grain, IAuditGrain, IRemindable
{
    private const string TrimReminder = "trim";

    public async Task<AuditEntry> AppendAsync(AuditEntry entry, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var stamped = entry with { At = now };
        var first = !trail.RecordExists;
        var kept = Trim(trail.RecordExists ? trail.State.Entries : [], now, options.MaxEntries - 1);
        trail.State = new AuditState { Entries = [.. kept, stamped] };
        await trail.PersistAsync(this);
        if (first)
        {
            await this.KeepReminderAsync(TrimReminder, options.TrimInterval, needed: true);
        }
        return stamped;
    }

    public async Task AppendSessionAsync(IReadOnlyList<AuditEntry> entries, CancellationToken ct)
    {
        var held = trail.RecordExists ? trail.State.Entries : [];
        var fresh = entries.Where(e => !held.Any(h => h.At == e.At && h.Action == e.Action && h.SessionId == e.SessionId)).ToArray();
        if (fresh.Length == 0)
        {
            return;
        }
        var first = !trail.RecordExists;
        // Kept in time order (Trim keeps the newest by position): a session's entries may be older than what other
        // sessions appended meanwhile.
        var merged = held.Concat(fresh).OrderBy(e => e.At).ToArray();
        trail.State = new AuditState { Entries = Trim(merged, time.GetUtcNow(), options.MaxEntries) };
        await trail.PersistAsync(this);
        if (first)
        {
            await this.KeepReminderAsync(TrimReminder, options.TrimInterval, needed: true);
        }
    }

    public Task<IReadOnlyList<AuditEntry>> ListAsync(DateTimeOffset? from, DateTimeOffset? to, int max, CancellationToken ct)
    {
        if (!trail.RecordExists)
        {
            return Task.FromResult<IReadOnlyList<AuditEntry>>([]);
        }
        var horizon = time.GetUtcNow() - options.Retention;
        IReadOnlyList<AuditEntry> entries = trail.State.Entries
            .Where(e => e.At >= horizon && (from is null || e.At >= from) && (to is null || e.At < to))
            .Reverse()
            .Take(Math.Max(0, max))
            .ToArray();
        return Task.FromResult(entries);
    }

    public async Task ReceiveReminder(string reminderName, TickStatus status)
    {
        var kept = trail.RecordExists ? Trim(trail.State.Entries, time.GetUtcNow(), options.MaxEntries) : [];
        if (kept.Count == 0)
        {
            // Nothing left to keep: the stored trail and its reminder go.
            if (trail.RecordExists)
            {
                await trail.DeleteAsync(this);
            }
            await this.ForgetReminderAsync(TrimReminder);
            DeactivateOnIdle();
        }
        else if (kept.Count != trail.State.Entries.Count)
        {
            trail.State = trail.State with { Entries = kept };
            await trail.PersistAsync(this);
        }
    }

    /// <summary>The newest <paramref name="max"/> entries that are still within retention.</summary>
    private IReadOnlyList<AuditEntry> Trim(IReadOnlyList<AuditEntry> entries, DateTimeOffset now, int max)
    {
        var horizon = now - options.Retention;
        var fresh = entries.Where(e => e.At >= horizon).ToArray();
        return fresh.Length > max ? fresh[^Math.Max(0, max)..] : fresh;
    }
}
