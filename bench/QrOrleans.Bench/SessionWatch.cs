using System.Text.Json;

namespace QrOrleans.Bench;

/// <summary>A snapshot as the desktop received it, with the Stopwatch timestamp of its arrival.</summary>
public readonly record struct Seen(string State, long Version, string? NumberMatch, long ReceivedAt);

/// <summary>Where a desktop's connection delivers one session's snapshots, and says that it broke.</summary>
public interface ISessionSink
{
    string SessionId { get; }

    void OnSnapshot(Seen seen);

    void Fail(Exception e);
}

/// <summary>One desktop's view of one session: waiters for the states a ceremony goes through.</summary>
public sealed class SessionWatch(string sessionId) : ISessionSink
{
    private readonly TaskCompletionSource<Seen> _pending = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<Seen> _scanned = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource<Seen> _approved = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string SessionId { get; } = sessionId;

    public Task<Seen> Pending => _pending.Task;

    public Task<Seen> Scanned => _scanned.Task;

    public Task<Seen> Approved => _approved.Task;

    /// <summary>Reads sessionId/state/version/numberMatch from a snapshot object.</summary>
    public static bool TryRead(JsonElement snapshot, long receivedAt, out string sessionId, out Seen seen)
    {
        sessionId = "";
        seen = default;
        if (snapshot.ValueKind != JsonValueKind.Object
            || !snapshot.TryGetProperty("sessionId", out var id) || !snapshot.TryGetProperty("state", out var state))
        {
            return false;
        }
        sessionId = id.GetString() ?? "";
        var version = snapshot.TryGetProperty("version", out var v) && v.TryGetInt64(out var n) ? n : 0;
        var number = snapshot.TryGetProperty("numberMatch", out var nm) ? nm.GetString() : null;
        seen = new Seen(state.GetString() ?? "", version, number, receivedAt);
        return true;
    }

    public void OnSnapshot(Seen seen)
    {
        switch (seen.State)
        {
            case "pending":
                _pending.TrySetResult(seen); // a QR rotation re-sends pending: the first one counts
                break;
            case "scanned":
                _scanned.TrySetResult(seen);
                break;
            case "approved":
                _approved.TrySetResult(seen);
                break;
            case "completed":
                // Claimed: everything before it happened, even if a push was coalesced away.
                break;
            default:
                Fail(new BenchException($"desktop saw state {seen.State}"));
                break;
        }
    }

    public void Fail(Exception e)
    {
        _pending.TrySetException(e);
        _scanned.TrySetException(e);
        _approved.TrySetException(e);
        // Nobody may be waiting on the later ones: observe them so they never surface as unobserved.
        _ = _scanned.Task.Exception;
        _ = _approved.Task.Exception;
        _ = _pending.Task.Exception;
    }
}
