using System.Diagnostics;

namespace QrOrleans.Grains.QrSessions;

/// <summary>
/// One trace per QR session. Its root span is started when the session is created and its W3C traceparent is kept
/// in the session's state, so every later step, on whichever silo the grain is active and whichever gateway
/// delivers the approval, is a child of an exported span. Each step links to the span of the call that caused it
/// (the caller's HTTP request, through Orleans' activity propagation), which lives in the caller's own trace.
/// </summary>
public static class CeremonyTrace
{
    /// <summary>The system's one ActivitySource, shared with the gateway's telemetry.</summary>
    public const string Name = "QrOrleans";

    public static readonly ActivitySource Source = new(Name);

    /// <summary>
    /// The root span of a new ceremony ("qr_session.create"), never a child of the caller's trace: a desktop's
    /// request is one of many that make up the ceremony, so it is linked instead. Null when nothing listens.
    /// </summary>
    public static Activity? StartRoot()
    {
        if (!Source.HasListeners())
        {
            return null;
        }
        var caller = Activity.Current;
        // A default parent context means "Activity.Current": clearing it is how a fresh root is made.
        Activity.Current = null;
        var root = Source.StartActivity("qr_session.create", ActivityKind.Internal, default(ActivityContext), Tags("create"), Links(caller));
        if (root is null)
        {
            Activity.Current = caller;
        }
        return root;
    }

    /// <summary>
    /// A step of the session whose root is <paramref name="traceParent"/>, running now; null when nothing
    /// listens. A session created while nothing listened has no root: its steps are then roots of their own.
    /// </summary>
    public static Activity? StartStep(string step, string? traceParent)
    {
        if (!Source.HasListeners())
        {
            return null;
        }
        var caller = Activity.Current;
        if (!ActivityContext.TryParse(traceParent, null, isRemote: true, out var parent))
        {
            Activity.Current = null;
            parent = default;
        }
        var activity = Source.StartActivity("qr_session." + step, ActivityKind.Internal, parent, Tags(step), Links(caller));
        if (activity is null)
        {
            Activity.Current = caller;
        }
        return activity;
    }

    /// <summary>A step that already happened (e.g. the approval reaching a desktop), as a finished span.</summary>
    public static void Record(string step, string? traceParent, DateTimeOffset startedAt, IEnumerable<KeyValuePair<string, object?>> tags)
    {
        if (!Source.HasListeners())
        {
            return;
        }
        var caller = Activity.Current;
        try
        {
            using var activity = StartStep(step, traceParent);
            if (activity is not null)
            {
                activity.SetStartTime(startedAt.UtcDateTime);
                foreach (var (key, value) in tags)
                {
                    activity.SetTag(key, value);
                }
            }
        }
        finally
        {
            Activity.Current = caller;
        }
    }

    /// <summary>Ends a step; a refusal is recorded with its error code (the problem's <c>code</c>).</summary>
    public static void End(Activity? activity, Activity? caller, string? errorCode)
    {
        if (activity is null)
        {
            return;
        }
        if (errorCode is not null)
        {
            activity.SetTag("error.type", errorCode);
            activity.SetStatus(ActivityStatusCode.Error, errorCode);
        }
        activity.Stop();
        activity.Dispose();
        // A step's parent is a stored context, not the caller's activity: put the caller's back.
        Activity.Current = caller;
    }

    private static KeyValuePair<string, object?>[] Tags(string step) => [new("qrorleans.qr_session.step", step)];

    private static ActivityLink[]? Links(Activity? caller) => caller is null ? null : [new ActivityLink(caller.Context)];
}
