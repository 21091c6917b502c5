using System.Diagnostics;
using System.Diagnostics.Metrics;
using QrOrleans.Grains.QrSessions;

namespace QrOrleans.Gateway.Observability;

/// <summary>
/// The one Meter and the one ActivitySource of the system, both named "QrOrleans". Instrument names follow the
/// OpenTelemetry conventions: dotted lower-case namespaces, UCUM units, durations in seconds.
/// </summary>
public sealed class QrTelemetry : IDisposable
{
    public const string Name = CeremonyTrace.Name;

    /// <summary>Shared by every node of the process (and by the grains): an ActivitySource is only a name that listeners pick up.</summary>
    public static ActivitySource Source => CeremonyTrace.Source;

    private static readonly double[] CeremonyBuckets = [0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300];
    private static readonly double[] LatencyBuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

    public QrTelemetry(IMeterFactory meters, NodeStats stats)
    {
        Meter = meters.Create(new MeterOptions(Name));
        Transitions = Meter.CreateCounter<long>("qrorleans.qr_session.transitions", "{transition}",
            "QR sessions entering a state (attribute state), counted once on the silo that committed the transition.");
        Rotations = Meter.CreateCounter<long>("qrorleans.qr_session.rotations", "{rotation}", "QR codes replaced by a new one while pending.");
        CeremonyDuration = Meter.CreateHistogram("qrorleans.ceremony.duration", "s",
            "From session creation to completed (the desktop claimed its tokens).", advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = CeremonyBuckets });
        NotifyLatency = Meter.CreateHistogram("qrorleans.notify.latency", "s",
            "From approval on the phone to the approved snapshot leaving for the desktop (attribute transport).",
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = LatencyBuckets });
        AuditAppends = Meter.CreateCounter<long>("qrorleans.audit.appends", "{entry}", "Audit entries appended (attribute action).");
        // A total this node keeps anyway: read when a reader collects, so the grain calls pay nothing. Reminder
        // deliveries are Orleans' own instruments (meter "Microsoft.Orleans", orleans-reminders-*).
        Meter.CreateObservableCounter("qrorleans.grain.turn.conflicts", () => stats.TurnConflicts,
            "{conflict}", "Grain calls on this silo refused for a stale ETag (InconsistentStateException) and sent again.");
    }

    public Meter Meter { get; }

    public Counter<long> Transitions { get; }

    public Counter<long> Rotations { get; }

    public Histogram<double> CeremonyDuration { get; }

    public Histogram<double> NotifyLatency { get; }

    public Counter<long> AuditAppends { get; }

    public void Dispose() => Meter.Dispose();
}
