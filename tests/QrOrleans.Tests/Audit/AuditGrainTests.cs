using Microsoft.Extensions.DependencyInjection;
using QrOrleans.Audit;
using QrOrleans.Grains.Audit;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Audit;

/// <summary>The per-user audit grain: newest first, kept for the retention time, bounded, trimmed daily.</summary>
public sealed class AuditGrainTests
{
    private static Task<SiloHarness> Silo(AuditOptions options) => SiloHarness.StartAsync(services: s => s.AddSingleton(options));

    private static AuditEntry Entry(string action, string? detail = null) => new(default, action, "192.0.2.7", "Chrome 131 on Android", Detail: detail);

    [Fact]
    public async Task Entries_are_stamped_by_the_grain_and_listed_newest_first_within_a_time_range()
    {
        await using var silo = await Silo(new AuditOptions());
        var grain = silo.Grains.GetGrain<IAuditGrain>("u1");
        var start = silo.Clock!.GetUtcNow();

        await grain.AppendAsync(Entry(AuditActions.QrScanned), default);
        silo.Clock.Advance(TimeSpan.FromMinutes(1));
        await grain.AppendAsync(Entry(AuditActions.QrApproved), default);
        silo.Clock.Advance(TimeSpan.FromMinutes(1));
        var linked = await grain.AppendAsync(Entry(AuditActions.DeviceLinked), default);

        Assert.Equal(start + TimeSpan.FromMinutes(2), linked.At);
        var all = await grain.ListAsync(null, null, 10, default);
        Assert.Equal([AuditActions.DeviceLinked, AuditActions.QrApproved, AuditActions.QrScanned], all.Select(e => e.Action));
        var middle = await grain.ListAsync(start + TimeSpan.FromSeconds(30), start + TimeSpan.FromSeconds(90), 10, default);
        Assert.Equal([AuditActions.QrApproved], middle.Select(e => e.Action));
        Assert.Single(await grain.ListAsync(null, null, 1, default));
        Assert.Empty(await silo.Grains.GetGrain<IAuditGrain>("nobody").ListAsync(null, null, 10, default));
    }

    [Fact]
    public async Task An_append_drops_entries_past_retention_and_keeps_at_most_the_bound()
    {
        await using var silo = await Silo(new AuditOptions { Retention = TimeSpan.FromDays(30), MaxEntries = 5 });
        var grain = silo.Grains.GetGrain<IAuditGrain>("u2");
        await grain.AppendAsync(Entry(AuditActions.QrScanned, "old"), default);
        silo.Clock!.Advance(TimeSpan.FromDays(31));

        for (var i = 0; i < 8; i++)
        {
            await grain.AppendAsync(Entry(AuditActions.QrApproved, i.ToString(System.Globalization.CultureInfo.InvariantCulture)), default);
        }

        var kept = await grain.ListAsync(null, null, 100, default);
        Assert.Equal(["7", "6", "5", "4", "3"], kept.Select(e => e.Detail));
    }

    [Fact]
    public async Task The_daily_reminder_trims_a_trail_nobody_appends_to_and_deletes_it_when_empty()
    {
        await using var silo = await Silo(new AuditOptions { Retention = TimeSpan.FromDays(2), TrimInterval = TimeSpan.FromDays(1) });
        var grain = silo.Grains.GetGrain<IAuditGrain>("u3");
        await grain.AppendAsync(Entry(AuditActions.DeviceLinked), default);
        silo.Clock!.Advance(TimeSpan.FromDays(1));
        await grain.AppendAsync(Entry(AuditActions.DeviceRevoked), default);

        silo.Clock.Advance(TimeSpan.FromDays(1.5)); // the first entry is past retention now
        Assert.Equal(["trim"], await silo.RemindersOfAsync(grain));
        await SiloHarness.FireReminderAsync(grain, "trim");
        Assert.Equal([AuditActions.DeviceRevoked], (await grain.ListAsync(null, null, 10, default)).Select(e => e.Action));
        Assert.True(await silo.IsStoredAsync<AuditState>(grain, "audit"));

        silo.Clock.Advance(TimeSpan.FromDays(2));
        await SiloHarness.FireReminderAsync(grain, "trim");
        Assert.False(await silo.IsStoredAsync<AuditState>(grain, "audit"));
        Assert.Empty(await silo.RemindersOfAsync(grain)); // the emptied trail took its reminder with it
    }
}
