using System.Collections.Concurrent;
using System.Globalization;
using Orleans.Runtime;

namespace QrOrleans.Silo.Hosting;

/// <summary>
/// The records behind <see cref="LocalGrainStorage"/>: each grain state's serialized bytes and ETag, in this
/// process's memory, by provider, state name and grain. A silo has one (a singleton of its services); silos that
/// share one process as one cluster (Orleans' TestingHost) are given one instance between them, as the silos of a
/// real cluster share Redis.
/// </summary>
public sealed class LocalStateStore
{
    private readonly ConcurrentDictionary<(string Provider, string StateName, GrainId GrainId), Record> _records = new();

    private long _lastETag;

    /// <summary>
    /// One stored state. Never changed once stored, only replaced or removed as a whole, so a read needs no lock and
    /// a conditional write compares the very record it saw (by reference).
    /// </summary>
    public sealed class Record(ReadOnlyMemory<byte> data, string etag)
    {
        public ReadOnlyMemory<byte> Data { get; } = data;

        public string ETag { get; } = etag;
    }

    /// <summary>The record of this state, or null if none is stored.</summary>
    public Record? Find(string provider, string stateName, GrainId grainId) =>
        _records.TryGetValue((provider, stateName, grainId), out var record) ? record : null;

    /// <summary>
    /// Stores <paramref name="data"/> if the stored ETag is still <paramref name="expectedETag"/>, where null or
    /// empty expects no record, and returns the new record; returns null, storing nothing, if it is not.
    /// </summary>
    public Record? TryWrite(string provider, string stateName, GrainId grainId, string? expectedETag, ReadOnlyMemory<byte> data)
    {
        var key = (provider, stateName, grainId);
        var written = new Record(data, NextETag());
        if (string.IsNullOrEmpty(expectedETag))
        {
            return _records.TryAdd(key, written) ? written : null;
        }
        return _records.TryGetValue(key, out var current) && current.ETag == expectedETag && _records.TryUpdate(key, written, current)
            ? written
            : null;
    }

    /// <summary>
    /// Removes the record if its ETag is still <paramref name="expectedETag"/>; with no record stored, succeeds only
    /// for a caller that expected none. Returns whether the state is now cleared by this caller's right.
    /// </summary>
    public bool TryClear(string provider, string stateName, GrainId grainId, string? expectedETag)
    {
        var key = (provider, stateName, grainId);
        if (!_records.TryGetValue(key, out var current))
        {
            return string.IsNullOrEmpty(expectedETag);
        }
        // Removed outright, no tombstone: ETags are never reused (below), so one issued before the clear can never
        // match a record written after it.
        return current.ETag == expectedETag && _records.TryRemove(KeyValuePair.Create(key, current));
    }

    /// <summary>
    /// One counter for every record: an ETag names one write only, so a stale activation's ETag cannot come to match
    /// again after a clear and a fresh first write (as a per-record counter starting over would).
    /// </summary>
    private string NextETag() => Interlocked.Increment(ref _lastETag).ToString(CultureInfo.InvariantCulture);
}
