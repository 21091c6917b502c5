using System.Globalization;
using Orleans.Runtime;

namespace QrOrleans.Silo.Hosting;

/// <summary>
/// The reminder table in this process, for the embedded one-silo mode: the reminder service reads and writes its rows
/// directly, where Orleans' in-memory table sends each operation to a grain. Rows carry ETags as in any reminder
/// table: every upsert gives the row a new one, and a remove names the one it saw. A silo has one (a singleton of its
/// services); silos that share one process as one cluster (TestingHost) are given one instance, as they share Redis.
/// </summary>
public sealed class LocalReminderTable : IReminderTable
{
    // One lock: each operation is a few dictionary steps, far shorter than the grain call it replaces.
    private readonly Lock _lock = new();

    private readonly Dictionary<GrainId, Dictionary<string, ReminderEntry>> _rows = [];

    private long _lastETag;

    public Task<ReminderTableData> ReadRows(GrainId grainId)
    {
        lock (_lock)
        {
            return Task.FromResult(_rows.TryGetValue(grainId, out var rows) ? new ReminderTableData(rows.Values.Select(Copy)) : new ReminderTableData());
        }
    }

    /// <summary>
    /// The rows whose grain hash is in (<paramref name="begin"/>, <paramref name="end"/>] on the ring: a begin at or
    /// past the end wraps round past <see cref="uint.MaxValue"/>, so begin == end is the whole ring.
    /// </summary>
    public Task<ReminderTableData> ReadRows(uint begin, uint end)
    {
        var found = new List<ReminderEntry>();
        lock (_lock)
        {
            foreach (var (grainId, rows) in _rows)
            {
                var hash = grainId.GetUniformHashCode();
                if (begin < end ? hash > begin && hash <= end : hash > begin || hash <= end)
                {
                    found.AddRange(rows.Values.Select(Copy));
                }
            }
        }
        return Task.FromResult(new ReminderTableData(found));
    }

    public Task<ReminderEntry?> ReadRow(GrainId grainId, string reminderName)
    {
        lock (_lock)
        {
            return Task.FromResult(_rows.TryGetValue(grainId, out var rows) && rows.TryGetValue(reminderName, out var row) ? Copy(row) : null);
        }
    }

    public Task<string?> UpsertRow(ReminderEntry entry)
    {
        var row = Copy(entry);
        row.ETag = Interlocked.Increment(ref _lastETag).ToString(CultureInfo.InvariantCulture);
        lock (_lock)
        {
            if (!_rows.TryGetValue(row.GrainId, out var rows))
            {
                rows = [];
                _rows[row.GrainId] = rows;
            }
            rows[row.ReminderName] = row;
        }
        return Task.FromResult<string?>(row.ETag);
    }

    public Task<bool> RemoveRow(GrainId grainId, string reminderName, string eTag)
    {
        lock (_lock)
        {
            if (!_rows.TryGetValue(grainId, out var rows) || !rows.TryGetValue(reminderName, out var row) || row.ETag != eTag)
            {
                return Task.FromResult(false);
            }
            rows.Remove(reminderName);
            if (rows.Count == 0)
            {
                _rows.Remove(grainId);
            }
            return Task.FromResult(true);
        }
    }

    public Task TestOnlyClearTable()
    {
        lock (_lock)
        {
            _rows.Clear();
        }
        return Task.CompletedTask;
    }

    /// <summary>
    /// Rows go in and out as copies: the reminder service keeps and changes the entries it hands over and is handed
    /// (a grain-backed table copies them on every call), and a row must change only by an upsert.
    /// </summary>
    private static ReminderEntry Copy(ReminderEntry entry) => new()
    {
        GrainId = entry.GrainId,
        ReminderName = entry.ReminderName,
        StartAt = entry.StartAt,
        Period = entry.Period,
        ETag = entry.ETag,
    };
}
