using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using QrOrleans.Gateway.Observability;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Observability;

/// <summary>What the "QrOrleans" meter of one node records during ceremonies (read in process with a MeterListener).</summary>
public sealed class MetricsTests
{
    [Fact]
    public async Task Transitions_ceremony_duration_and_notify_latency_are_recorded_once_each()
    {
        await using var node = await GatewayNode.StartAsync();
        var meter = node.Services.GetRequiredService<QrTelemetry>().Meter;
        Assert.Equal("QrOrleans", meter.Name);
        var seen = new ConcurrentQueue<(string Instrument, double Value, Dictionary<string, object?> Tags)>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (ReferenceEquals(instrument.Meter, meter))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) => seen.Enqueue((i.Name, v, Tags(tags))));
        listener.SetMeasurementEventCallback<double>((i, v, tags, _) => seen.Enqueue((i.Name, v, Tags(tags))));
        listener.Start();
        var api = new ApiClient(node.Http);
        var phone = await api.NewPhoneAsync();

        var session = await api.CreateSessionAsync();
        await api.ScanAsync(phone.AccessToken, session.QrUrl);
        var waiting = api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{session.SessionId}?waitForVersion=2&timeout=10", null, session.DesktopToken);
        await Task.Delay(200);
        var number = (await api.SnapshotAsync(session)).Body.GetProperty("numberMatch").GetString()!;
        (await api.ApproveAsync(phone.AccessToken, session.SessionId, number)).EnsureStatus(200);
        Assert.Equal("approved", (await waiting).EnsureStatus(200).Body.GetProperty("state").GetString());
        (await api.ClaimAsync(session)).EnsureStatus(200);
        var cancelled = await api.CreateSessionAsync();
        (await api.CancelAsync(cancelled)).EnsureStatus(200);
        listener.RecordObservableInstruments();

        var transitions = seen.Where(m => m.Instrument == "qrorleans.qr_session.transitions").Select(m => (string)m.Tags["state"]!).ToList();
        Assert.Equal(["pending", "scanned", "approved", "completed", "pending", "cancelled"], transitions);
        var duration = Assert.Single(seen, m => m.Instrument == "qrorleans.ceremony.duration");
        Assert.InRange(duration.Value, 0, 30);
        var notify = Assert.Single(seen, m => m.Instrument == "qrorleans.notify.latency");
        Assert.Equal("long_poll", notify.Tags["transport"]);
        Assert.InRange(notify.Value, 0, 5);
        Assert.Contains(seen, m => m.Instrument == "qrorleans.grain.turn.conflicts");
        Assert.Equal(3, seen.Count(m => m.Instrument == "qrorleans.audit.appends")); // scanned, approved, linked
    }

    private static Dictionary<string, object?> Tags(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var d = new Dictionary<string, object?>();
        foreach (var t in tags)
        {
            d[t.Key] = t.Value;
        }
        return d;
    }
}
