using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Security.Cryptography;
using System.Text;

namespace QrOrleans.Gateway.Observability;

/// <summary>
/// The one Meter and the one ActivitySource of the system, both named "QrOrleans". Instrument names follow the
/// OpenTelemetry conventions: dotted lower-case namespaces, UCUM units, durations in seconds.
/// </summary>
public sealed class QrTelemetry : IDisposable
{
    public const string Name = "QrOrleans";

    /// <summary>Shared by every node of the process: an ActivitySource is only a name that listeners pick up.</summary>
    public static readonly ActivitySource Source = new(Name);

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

    /// <summary>
    /// The trace every step of one QR session belongs to, on whichever node it runs: its trace id and parent span id
    /// are derived from the session id (one-way), so nodes agree without storing anything. The parent is a virtual
    /// root that no node exports; backends group the steps by the trace id.
    /// </summary>
    public static ActivityContext SessionTrace(string sessionId)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes("qrorleans.trace/" + sessionId), hash);
        return new ActivityContext(ActivityTraceId.CreateFromBytes(hash[..16]), ActivitySpanId.CreateFromBytes(hash[16..24]),
            ActivityTraceFlags.Recorded, isRemote: true);
    }

    /// <summary>
    /// Records a finished ceremony step as a span of the session's trace, linked to the HTTP request span that
    /// caused it (which carries the caller's traceparent). Nothing is made when no exporter listens.
    /// </summary>
    public static void Step(string step, string? sessionId, DateTimeOffset startedAt, string? errorCode, IEnumerable<KeyValuePair<string, object?>>? tags = null)
    {
        if (sessionId is null || !Source.HasListeners())
        {
            return;
        }
        var caller = Activity.Current;
        ActivityLink[]? links = caller is null ? null : [new ActivityLink(caller.Context)];
        using var activity = Source.StartActivity("qr_session." + step, ActivityKind.Internal, SessionTrace(sessionId), tags, links, startedAt);
        if (activity is null)
        {
            return;
        }
        activity.SetTag("qrorleans.qr_session.step", step);
        if (errorCode is not null)
        {
            activity.SetTag("error.type", errorCode);
            activity.SetStatus(ActivityStatusCode.Error, errorCode);
        }
        activity.Stop();
        Activity.Current = caller;
    }

    public void Dispose() => Meter.Dispose();
}
