using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;
using QrOrleans.Gateway.QrSessions;
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
            Approved(snapshot.SessionId, snapshot.ExpiresAt, transport);
        }
    }

    public void DesktopNotified(string sessionId, JsonElement snapshot, string transport)
    {
        if (snapshot.ValueKind == JsonValueKind.Object
            && snapshot.TryGetProperty("state", out var s) && s.ValueEquals(QrSessionStates.Approved)
            && snapshot.TryGetProperty("expiresAt", out var e) && e.TryGetDateTimeOffset(out var claimBefore))
        {
            Approved(sessionId, claimBefore, transport);
        }
    }

    public void DesktopNotified(string sessionId, string snapshotJson, string transport)
    {
        if (snapshotJson.Contains("\"approved\"", StringComparison.Ordinal))
        {
            using var doc = JsonDocument.Parse(snapshotJson);
            DesktopNotified(sessionId, doc.RootElement, transport);
        }
    }

    /// <summary>
    /// An approved snapshot's expiresAt is the claim deadline, set at approval to approval time + ClaimWindow; the
    /// nodes of a cluster share that setting, so the approval time is known here without another read.
    /// </summary>
    private void Approved(string sessionId, DateTimeOffset claimBefore, string transport)
    {
        var approvedAt = claimBefore - options.ClaimWindow;
        var latency = time.GetUtcNow() - approvedAt;
        if (latency < TimeSpan.Zero)
        {
            latency = TimeSpan.Zero; // clocks of two nodes disagree a little
        }
        telemetry.NotifyLatency.Record(latency.TotalSeconds, new KeyValuePair<string, object?>("transport", transport));
        stats.DesktopNotified(latency);
        QrTelemetry.Step("notify", sessionId, approvedAt, null, [new("qrorleans.notify.transport", transport)]);
    }

    /// <summary>
    /// Endpoint filter of the ceremony's POST calls: each becomes a span of the session's trace (create, scan,
    /// approve, reject, cancel, claim), with the error code when it was refused.
    /// </summary>
    public static async ValueTask<object?> StepFilter(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var http = context.HttpContext;
        if (!HttpMethods.IsPost(http.Request.Method) || !QrTelemetry.Source.HasListeners())
        {
            return await next(context).ConfigureAwait(false);
        }
        var startedAt = DateTimeOffset.UtcNow;
        var pattern = (http.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "";
        var step = pattern.TrimEnd('/').EndsWith("/sessions", StringComparison.Ordinal) ? "create" : pattern[(pattern.LastIndexOf('/') + 1)..];
        var sessionId = http.GetRouteValue("id") as string;
        if (sessionId is null && context.Arguments.OfType<ScanRequest>().FirstOrDefault() is { } scan
            && SessionIds.TryParseQr(scan.Url ?? scan.Token, out var scanned, out _))
        {
            sessionId = scanned;
        }
        try
        {
            var result = await next(context).ConfigureAwait(false);
            if (result is Created<CreateSessionResponse> { Value: { } created })
            {
                sessionId = created.SessionId;
            }
            QrTelemetry.Step(step, sessionId, startedAt, null);
            return result;
        }
        catch (GrainException e)
        {
            QrTelemetry.Step(step, sessionId, startedAt, e.Code);
            throw;
        }
    }
}
