using QrOrleans.Grains.QrSessions;
using QrOrleans.QrSessions;

namespace QrOrleans.Gateway.Observability;

/// <summary>
/// The ceremony's figures. Transitions are counted from the commits of QR session grains on this silo (the grain
/// tells its <see cref="IQrSessionObserver"/>s), so every transition, including the rotations and expiries its timer
/// or reminder causes, is counted once, where it committed. "Desktop notified" is measured where the approved
/// snapshot leaves for a waiting desktop.
/// </summary>
public sealed class CeremonyTelemetry(QrTelemetry telemetry, NodeStats stats, QrSessionOptions options, TimeProvider time)
    : IQrSessionObserver
{
    public const string SignalR = "signalr";
    public const string ServerSentEvents = "sse";
    public const string LongPoll = "long_poll";

    /// <summary>Runs on the grain's turn: counters and an in-memory tally only, nothing that waits.</summary>
    public void OnCommitted(string sessionId, QrSessionState? previous, QrSessionState next)
    {
        if (previous?.State == next.State)
        {
            if (next.State == QrSessionStates.Pending)
            {
                telemetry.Rotations.Add(1);
            }
            return;
        }
        telemetry.Transitions.Add(1, new KeyValuePair<string, object?>("state", next.State));
        stats.Transition(next.State);
        if (next.State == QrSessionStates.Completed && next.EndedAt is { } ended)
        {
            var duration = ended - next.Requester.CreatedAt;
            telemetry.CeremonyDuration.Record(Math.Max(0, duration.TotalSeconds));
            stats.CeremonyCompleted(duration);
        }
    }

    /// <summary>A snapshot went to a desktop; if it is the approval, records how long after the approval that was.</summary>
    public void DesktopNotified(QrSessionSnapshot snapshot, string transport)
    {
        if (snapshot.State == QrSessionStates.Approved)
        {
            Approved(snapshot, transport);
        }
    }

    /// <summary>
    /// An approved snapshot's expiresAt is the claim deadline, set at approval to approval time + ClaimWindow; the
    /// nodes of a cluster share that setting, so the approval time is known here without another read.
    /// </summary>
    private void Approved(QrSessionSnapshot snapshot, string transport)
    {
        var approvedAt = snapshot.ExpiresAt - options.ClaimWindow;
        var latency = time.GetUtcNow() - approvedAt;
        if (latency < TimeSpan.Zero)
        {
            latency = TimeSpan.Zero; // clocks of two nodes disagree a little
        }
        telemetry.NotifyLatency.Record(latency.TotalSeconds, new KeyValuePair<string, object?>("transport", transport));
        stats.DesktopNotified(latency);
        CeremonyTrace.Record("notify", snapshot.TraceParent, approvedAt, [new("qrorleans.notify.transport", transport)]);
    }
}
