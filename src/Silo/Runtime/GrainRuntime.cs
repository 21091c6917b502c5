using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using QrOrleans.Runtime;

namespace QrOrleans.Silo.Runtime;

/// <summary>
/// Runs grain turns: one at a time per key on this node (a keyed lock), and across nodes by the store's
/// version compare-and-set; a turn that loses the race runs again on the fresh state.
/// </summary>
public sealed partial class GrainRuntime(
    IGrainStore store, GrainCatalog catalog, TimeProvider time, ILogger<GrainRuntime> log, IEnumerable<ITurnCommitObserver> observers)
    : IGrainRuntime, IGrainFactory
{
    private readonly ITurnCommitObserver[] _observers = observers.ToArray();

    /// <summary>Enough for any realistic contention; past it the caller gets a 503, never a torn state.</summary>
    private const int MaxAttempts = 50;

    private static JsonSerializerOptions Json => GrainJson.Options;

    private readonly KeyedLock<GrainId> _locks = new();

    /// <summary>Most grains an activation cache keeps before it starts over.</summary>
    private const int TurnCacheSize = 100_000;

    /// <summary>
    /// Each grain's last committed state on this node, so a turn starts without a read. Only for a shared store
    /// (PostgreSQL); the in-memory store's read is already a dictionary lookup.
    /// </summary>
    private readonly System.Collections.Concurrent.ConcurrentDictionary<GrainId, StoredGrain>? _cache =
        store is Memory.MemoryGrainStore ? null : new();

    public TimeProvider Time => time;

    /// <summary>Turns that lost an ETag race and ran again; a figure for the dashboard and the tests.</summary>
    public long ConflictRetries => Interlocked.Read(ref _conflictRetries);

    private long _conflictRetries;

    public TGrain GetGrain<TGrain>(string key) where TGrain : IGrain => catalog.Get<TGrain>(key);

    public async Task<TResult> RunTurnAsync<TState, TResult>(GrainId id, Func<Turn<TState>, TResult> body, CancellationToken ct)
        where TState : class
    {
        using var _ = await _locks.AcquireAsync(id, ct).ConfigureAwait(false);
        for (var attempt = 1; ; attempt++)
        {
            // The activation's last committed state saves the read; if another node wrote since, the version
            // check refuses the commit and the turn runs again on a fresh read. A turn that changes nothing has
            // no version check, so it never answers from a possibly stale copy.
            var cached = _cache is not null && attempt == 1 && _cache.TryGetValue(id, out var hit) ? hit : null;
            var stored = cached ?? await store.ReadAsync(id, ct).ConfigureAwait(false);
            var state = stored is null ? null : JsonSerializer.Deserialize<TState>(stored.State, Json);
            var turn = new Turn<TState>(id, state, stored?.Etag ?? 0, time.GetUtcNow());
            TResult result;
            try
            {
                result = body(turn);
            }
            catch (Exception) when (cached is not null)
            {
                continue; // a refusal is an answer too: give it from the store's state, not the copy
            }
            if (!turn.Changed)
            {
                if (cached is not null)
                {
                    continue; // answer from the store's state, not the copy
                }
                return result;
            }
            var bytes = turn.State is null ? null : JsonSerializer.SerializeToUtf8Bytes(turn.State, Json);
            try
            {
                var version = await store.CommitAsync(id, stored?.Etag, bytes, turn.Effects(), ct).ConfigureAwait(false);
                Remember(id, bytes is null ? null : new StoredGrain(bytes, version));
                NotifyCommitted(id, version, stored?.State, bytes);
                return result;
            }
            catch (EtagConflictException) when (cached is not null)
            {
                Remember(id, null); // the copy was stale (another node wrote): read the store
                Interlocked.Increment(ref _conflictRetries);
            }
            catch (EtagConflictException) when (attempt < MaxAttempts)
            {
                Remember(id, null);
                Interlocked.Increment(ref _conflictRetries);
                LogConflict(log, id, attempt);
                if (attempt > 3)
                {
                    // Another node keeps winning: back off a little, with jitter, before reading again.
                    await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.Next(1, 5 * attempt)), time, ct).ConfigureAwait(false);
                }
            }
            catch (EtagConflictException)
            {
                throw new GrainException("conflict", 503, "Busy", "The resource is changing too fast; try again.");
            }
        }
    }

    /// <summary>Keeps (or, with null, forgets) a grain's last committed state, bounded by <see cref="TurnCacheSize"/>.</summary>
    private void Remember(GrainId id, StoredGrain? stored)
    {
        if (_cache is null)
        {
            return;
        }
        if (stored is null)
        {
            _cache.TryRemove(id, out _);
            return;
        }
        if (_cache.Count >= TurnCacheSize)
        {
            _cache.Clear(); // rare and cheap to recover from: the next turns read the store
        }
        _cache[id] = stored;
    }

    public async Task<(TState State, long Version)?> ReadAsync<TState>(GrainId id, CancellationToken ct) where TState : class
    {
        var stored = await store.ReadAsync(id, ct).ConfigureAwait(false);
        if (stored is null)
        {
            return null;
        }
        return (JsonSerializer.Deserialize<TState>(stored.State, Json)!, stored.Etag);
    }

    /// <summary>Delivers a claimed reminder to its grain.</summary>
    public Task DeliverReminderAsync(DueReminder reminder, CancellationToken ct)
    {
        if (catalog.Get(reminder.Grain) is not IRemindable remindable)
        {
            throw new UnreachableException($"Grain type {reminder.Grain.Type} has reminders but does not take them.");
        }
        return remindable.ReceiveReminderAsync(reminder.Name, reminder.DueAt, ct);
    }

    private void NotifyCommitted(GrainId id, long version, byte[]? previous, byte[]? state)
    {
        foreach (var observer in _observers)
        {
            try
            {
                observer.OnCommitted(id, version, previous, state);
            }
            catch (Exception e)
            {
                LogObserverFailed(log, id, e); // a figure may be lost; the committed turn stands
            }
        }
    }

    [LoggerMessage(LogLevel.Warning, "A commit observer failed on {Grain}")]
    private static partial void LogObserverFailed(ILogger log, GrainId grain, Exception e);

    [LoggerMessage(LogLevel.Debug, "Turn on {Grain} lost a version race (attempt {Attempt}); running it again")]
    private static partial void LogConflict(ILogger log, GrainId grain, int attempt);
}

/// <summary>
/// Told of every turn this node committed, once, after the commit (a turn that lost a race and re-ran is told of
/// only its committed run): counters and dashboards count transitions here, exactly once across the cluster.
/// Runs on the committing call's path, so it must be quick and must not block.
/// </summary>
public interface ITurnCommitObserver
{
    /// <param name="previousState">The state the turn started from (null: the grain did not exist).</param>
    /// <param name="state">The committed state (null: the grain was deleted).</param>
    void OnCommitted(GrainId grain, long version, byte[]? previousState, byte[]? state);
}
