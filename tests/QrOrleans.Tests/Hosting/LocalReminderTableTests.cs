using Orleans.Runtime;
using QrOrleans.Silo.Hosting;

namespace QrOrleans.Tests.Hosting;

/// <summary>
/// The embedded reminder table's contract, as Orleans' reminder service relies on it: rows by grain and name, a new
/// ETag on every upsert, a remove that names a stale ETag refused, and hash-range reads on the ring, wrapping round.
/// </summary>
public sealed class LocalReminderTableTests
{
    private static readonly DateTime Start = new(2026, 11, 22, 12, 0, 0, DateTimeKind.Utc);

    private readonly LocalReminderTable _table = new();

    private static ReminderEntry Row(GrainId grain, string name, int minutes = 1) => new()
    {
        GrainId = grain,
        ReminderName = name,
        StartAt = Start,
        Period = TimeSpan.FromMinutes(minutes),
    };

    private static GrainId Grain(int i) => GrainId.Create("remindable", i.ToString(System.Globalization.CultureInfo.InvariantCulture));

    [Fact]
    public async Task An_upsert_returns_a_new_etag_each_time_and_a_read_returns_the_row_under_it()
    {
        var grain = Grain(1);

        var first = await _table.UpsertRow(Row(grain, "r", 1));
        var second = await _table.UpsertRow(Row(grain, "r", 2));

        Assert.False(string.IsNullOrEmpty(first));
        Assert.NotEqual(first, second);
        var row = await _table.ReadRow(grain, "r");
        Assert.NotNull(row);
        Assert.Equal(second, row.ETag);
        Assert.Equal(TimeSpan.FromMinutes(2), row.Period);
        Assert.Equal(Start, row.StartAt);
        Assert.Null(await _table.ReadRow(grain, "other"));
        Assert.Null(await _table.ReadRow(Grain(2), "r"));
    }

    [Fact]
    public async Task A_remove_with_a_stale_etag_returns_false_and_keeps_the_row()
    {
        var grain = Grain(1);
        var stale = await _table.UpsertRow(Row(grain, "r"));
        var current = await _table.UpsertRow(Row(grain, "r"));

        Assert.False(await _table.RemoveRow(grain, "r", stale!));
        Assert.False(await _table.RemoveRow(grain, "other", current!));
        Assert.Equal(current, (await _table.ReadRow(grain, "r"))?.ETag);

        Assert.True(await _table.RemoveRow(grain, "r", current!));
        Assert.Null(await _table.ReadRow(grain, "r"));
        Assert.Empty((await _table.ReadRows(grain)).Reminders);
        Assert.False(await _table.RemoveRow(grain, "r", current!)); // gone already
    }

    [Fact]
    public async Task A_grain_s_rows_are_its_own_and_all_of_them()
    {
        await _table.UpsertRow(Row(Grain(1), "a"));
        await _table.UpsertRow(Row(Grain(1), "b"));
        await _table.UpsertRow(Row(Grain(2), "a"));

        Assert.Equal(["a", "b"], (await _table.ReadRows(Grain(1))).Reminders.Select(r => r.ReminderName).Order());
        Assert.Equal(["a"], (await _table.ReadRows(Grain(2))).Reminders.Select(r => r.ReminderName));
        Assert.Empty((await _table.ReadRows(Grain(3))).Reminders);
    }

    [Fact]
    public async Task A_range_read_returns_exactly_the_rows_whose_hash_is_in_the_range_and_wraps_round_the_ring()
    {
        var grains = Enumerable.Range(0, 200).Select(Grain).ToArray();
        foreach (var g in grains)
        {
            await _table.UpsertRow(Row(g, "r"));
        }
        var hashes = grains.Select(g => g.GetUniformHashCode()).Order().ToArray();
        Assert.Equal(hashes.Length, hashes.Distinct().Count()); // so the bounds below fall on rows, not between them
        var low = hashes[20];
        var high = hashes[150];

        // (low, high]: the row at low is outside, the row at high inside.
        Assert.Equal(hashes[21..151], await HashesInAsync(low, high));
        // (high, low] wraps past uint.MaxValue: the rows up to low and those above high.
        Assert.Equal(hashes[..21].Concat(hashes[151..]), await HashesInAsync(high, low));
        // A begin equal to the end is the whole ring; so is (0, uint.MaxValue] but for a hash of 0.
        Assert.Equal(hashes, await HashesInAsync(low, low));
        Assert.Equal(hashes, await HashesInAsync(0, 0));
        Assert.Equal(hashes.Where(h => h != 0), await HashesInAsync(0, uint.MaxValue));
        // One hash wide: exactly the row at high.
        Assert.Equal(new[] { high }, await HashesInAsync(high - 1, high));
    }

    private async Task<uint[]> HashesInAsync(uint begin, uint end)
    {
        var rows = (await _table.ReadRows(begin, end)).Reminders;
        return rows.Select(r => r.GrainId.GetUniformHashCode()).Order().ToArray();
    }

    [Fact]
    public async Task Rows_go_in_and_out_as_copies_so_only_an_upsert_changes_a_row()
    {
        var grain = Grain(1);
        var entry = Row(grain, "r");
        var etag = await _table.UpsertRow(entry);
        Assert.Null(entry.ETag); // the caller's entry is not the table's row

        entry.Period = TimeSpan.FromHours(1);
        var read = (await _table.ReadRow(grain, "r"))!;
        read.Period = TimeSpan.FromHours(2);
        read.ETag = "changed by a reader";
        (await _table.ReadRows(grain)).Reminders[0].StartAt = DateTime.MinValue;

        var row = (await _table.ReadRow(grain, "r"))!;
        Assert.Equal(TimeSpan.FromMinutes(1), row.Period);
        Assert.Equal(Start, row.StartAt);
        Assert.Equal(etag, row.ETag);
    }

    [Fact]
    public async Task Clearing_the_table_leaves_no_row()
    {
        await _table.UpsertRow(Row(Grain(1), "r"));
        await _table.UpsertRow(Row(Grain(2), "r"));

        await _table.TestOnlyClearTable();

        Assert.Empty((await _table.ReadRows(0, 0)).Reminders);
    }
}
