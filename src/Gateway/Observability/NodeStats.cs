using Orleans.Storage;
using QrOrleans.Audit;

namespace QrOrleans.Gateway.Observability;

/// <summary>
/// Log-spaced latency buckets (each 20% wider than the one before, from 1 ms): bucket counts add up across nodes
/// and minutes, so a cluster-wide p50/p99 is computed from merged counts, never by averaging percentiles.
/// Resolution: a percentile is off by at most half a bucket, about ±10%.
/// </summary>
public static class LatencyBuckets
{
    private const double First = 0.001;
    private const double Growth = 1.2;
    private const int Last = 90; // 1 ms × 1.2^90 ≈ 13 hours: anything longer shares the last bucket

    public static int IndexOf(double seconds) =>
        seconds <= First ? 0 : Math.Min(Last, (int)Math.Ceiling(Math.Log(seconds / First) / Math.Log(Growth)));

    /// <summary>The bucket's geometric middle, in seconds.</summary>
    public static double ValueOf(int index) => index == 0 ? First : First * Math.Pow(Growth, index - 0.5);

    /// <summary>The value at quantile <paramref name="q"/> (0..1) of the merged counts, or null when there are none.</summary>
    public static double? Quantile(IReadOnlyDictionary<int, long> counts, double q)
    {
        var total = counts.Values.Sum();
        if (total == 0)
        {
            return null;
        }
        var rank = Math.Max(1, (long)Math.Ceiling(q * total));
        long seen = 0;
        foreach (var (index, count) in counts.OrderBy(c => c.Key))
        {
            seen += count;
            if (seen >= rank)
            {
                return ValueOf(index);
            }
        }
        return ValueOf(counts.Keys.Max());
    }

    public static void Merge(Dictionary<int, long> into, IReadOnlyDictionary<int, long>? from)
    {
        foreach (var (index, count) in from ?? new Dictionary<int, long>())
        {
            into[index] = into.GetValueOrDefault(index) + count;
        }
    }
}

/// <summary>One minute of this node's ceremony figures (UTC minute number since the epoch).</summary>
[GenerateSerializer, Immutable, Alias("qrorleans.MinuteFigures")]
public sealed record MinuteFigures(
    [property: Id(0)] long Minute,
    [property: Id(1)] IReadOnlyDictionary<string, long> Transitions,
    [property: Id(2)] IReadOnlyDictionary<int, long> CeremonySeconds,
    [property: Id(3)] IReadOnlyDictionary<int, long> NotifySeconds);

/// <summary>Requests served in one UTC second (seconds since the epoch).</summary>
[GenerateSerializer, Immutable, Alias("qrorleans.SecondCount")]
public sealed record SecondCount([property: Id(0)] long Second, [property: Id(1)] long Count);

/// <summary>An audit entry as the dashboard lists it: whose, and what.</summary>
[GenerateSerializer, Immutable, Alias("qrorleans.AuditEvent")]
public sealed record AuditEvent([property: Id(0)] string UserId, [property: Id(1)] AuditEntry Entry);

/// <summary>
/// This node's own figures for the dashboard, kept in memory: QR-session requests per second (last minute),
/// transitions and latency buckets per minute (last <see cref="MinutesKept"/>), the latest audit events and the
/// grain calls that lost an ETag race here. The publisher copies them into this silo's stats grain; every node's
/// dashboard merges the stats of all active silos.
/// </summary>
public sealed class NodeStats(TimeProvider time)
{
    public const int MinutesKept = 15;
    private const int SecondsKept = 64;
    private const int AuditKept = 20;

    private readonly Lock _gate = new();
    private readonly long[] _servedSecond = new long[SecondsKept];
    private readonly long[] _servedCount = new long[SecondsKept];
    private readonly SortedDictionary<long, Minute> _minutes = [];
    private readonly LinkedList<AuditEvent> _audit = [];
    private long _changes;
    private long _conflicts;

    /// <summary>Grows on every figure recorded; the publisher writes only when it moved.</summary>
    public long Changes => Interlocked.Read(ref _changes);

    /// <summary>Requests to this node run again after a write conflict (<see cref="InconsistentStateException"/>), since start.</summary>
    public long TurnConflicts => Interlocked.Read(ref _conflicts);

    public void Conflict()
    {
        Interlocked.Increment(ref _conflicts);
        Interlocked.Increment(ref _changes);
    }

    public void Served()
    {
        var second = time.GetUtcNow().ToUnixTimeSeconds();
        var slot = (int)(second % SecondsKept);
        lock (_gate)
        {
            if (_servedSecond[slot] != second)
            {
                _servedSecond[slot] = second;
                _servedCount[slot] = 0;
            }
            _servedCount[slot]++;
        }
        Interlocked.Increment(ref _changes);
    }

    public void Transition(string state) => Record(m => m.Transitions[state] = m.Transitions.GetValueOrDefault(state) + 1);

    public void CeremonyCompleted(TimeSpan duration) => Record(m => Add(m.Ceremony, duration));

    public void DesktopNotified(TimeSpan latency) => Record(m => Add(m.Notify, latency));

    public void Audited(string userId, AuditEntry entry)
    {
        lock (_gate)
        {
            _audit.AddFirst(new AuditEvent(userId, entry));
            while (_audit.Count > AuditKept)
            {
                _audit.RemoveLast();
            }
        }
        Interlocked.Increment(ref _changes);
    }

    /// <summary>A copy of what this node holds now.</summary>
    public (IReadOnlyList<SecondCount> Served, IReadOnlyList<MinuteFigures> Minutes, IReadOnlyList<AuditEvent> Audit) Snapshot()
    {
        var now = time.GetUtcNow();
        lock (_gate)
        {
            Prune(now);
            var oldest = now.ToUnixTimeSeconds() - 60;
            var served = Enumerable.Range(0, SecondsKept)
                .Where(i => _servedSecond[i] >= oldest && _servedCount[i] > 0)
                .Select(i => new SecondCount(_servedSecond[i], _servedCount[i]))
                .OrderBy(s => s.Second)
                .ToArray();
            var minutes = _minutes.Select(m => new MinuteFigures(m.Key,
                new Dictionary<string, long>(m.Value.Transitions), new Dictionary<int, long>(m.Value.Ceremony),
                new Dictionary<int, long>(m.Value.Notify))).ToArray();
            return (served, minutes, _audit.ToArray());
        }
    }

    private void Record(Action<Minute> change)
    {
        var now = time.GetUtcNow();
        lock (_gate)
        {
            var key = now.ToUnixTimeSeconds() / 60;
            if (!_minutes.TryGetValue(key, out var minute))
            {
                _minutes[key] = minute = new Minute();
                Prune(now);
            }
            change(minute);
        }
        Interlocked.Increment(ref _changes);
    }

    private void Prune(DateTimeOffset now)
    {
        var oldest = now.ToUnixTimeSeconds() / 60 - MinutesKept + 1;
        foreach (var old in _minutes.Keys.Where(k => k < oldest).ToArray())
        {
            _minutes.Remove(old);
        }
    }

    private static void Add(Dictionary<int, long> buckets, TimeSpan value)
    {
        var index = LatencyBuckets.IndexOf(Math.Max(0, value.TotalSeconds));
        buckets[index] = buckets.GetValueOrDefault(index) + 1;
    }

    private sealed class Minute
    {
        public Dictionary<string, long> Transitions { get; } = [];
        public Dictionary<int, long> Ceremony { get; } = [];
        public Dictionary<int, long> Notify { get; } = [];
    }
}
