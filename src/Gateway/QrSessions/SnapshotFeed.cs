using System.Threading.Channels;
using QrOrleans.QrSessions;
using QrOrleans.Runtime;

namespace QrOrleans.Gateway.QrSessions;

/// <summary>
/// One waiting desktop's view of its session on this node: snapshots in version order, newer only. Events
/// come from the grain's stream; a resync (or anything missed) is healed by re-reading the snapshot.
/// </summary>
public sealed class SnapshotFeed : IStreamObserver, IDisposable
{
    private readonly Channel<long> _signals = Channel.CreateBounded<long>(new BoundedChannelOptions(4) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
    private readonly IQrSessionGrain _grain;
    private readonly string _desktopToken;
    private readonly IDisposable _subscription;
    private string? _pendingPayload;
    private long _pendingVersion;

    private SnapshotFeed(IQrSessionGrain grain, string desktopToken, IGrainStreams streams, string sessionId)
    {
        _grain = grain;
        _desktopToken = desktopToken;
        _subscription = streams.Subscribe(GrainTypes.QrSessionId(sessionId), this);
    }

    /// <summary>Subscribes first, then reads, so no change between the two is missed. Throws 401 for a bad token.</summary>
    public static async Task<(SnapshotFeed Feed, QrSessionSnapshot Snapshot)> OpenAsync(
        IGrainFactory grains, IGrainStreams streams, string sessionId, string desktopToken, CancellationToken ct)
    {
        var grain = grains.GetGrain<IQrSessionGrain>(sessionId);
        var feed = new SnapshotFeed(grain, desktopToken, streams, sessionId);
        try
        {
            return (feed, await grain.GetSnapshotAsync(desktopToken, ct).ConfigureAwait(false));
        }
        catch
        {
            feed.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The next snapshot newer than <paramref name="haveVersion"/>, as JSON: the stream's payload when it has
    /// one, else a fresh read. Null if the session is gone (deleted after its grace period).
    /// </summary>
    public async Task<(long Version, string Json)?> NextAsync(long haveVersion, CancellationToken ct)
    {
        while (true)
        {
            var version = await _signals.Reader.ReadAsync(ct).ConfigureAwait(false);
            string? payload;
            long pendingVersion;
            lock (_signals)
            {
                (payload, pendingVersion) = (_pendingPayload, _pendingVersion);
            }
            // The newest event seen so far answers for every older signal still queued.
            if (pendingVersion > haveVersion && payload is not null)
            {
                return (pendingVersion, payload);
            }
            if (version < 0 || version > haveVersion)
            {
                QrSessionSnapshot snapshot;
                try
                {
                    snapshot = await _grain.GetSnapshotAsync(_desktopToken, ct).ConfigureAwait(false);
                }
                catch (GrainException)
                {
                    return null;
                }
                catch (System.Data.Common.DbException)
                {
                    // The database flapped as we re-read: wait a moment and read again rather than drop the watcher.
                    await Task.Delay(TimeSpan.FromMilliseconds(250), ct).ConfigureAwait(false);
                    _signals.Writer.TryWrite(-1);
                    continue;
                }
                if (snapshot.Version > haveVersion)
                {
                    return (snapshot.Version, System.Text.Json.JsonSerializer.Serialize(snapshot, GrainJson.Options));
                }
            }
        }
    }

    public void OnNext(StreamEvent e)
    {
        lock (_signals)
        {
            if (e.Version > _pendingVersion)
            {
                _pendingVersion = e.Version;
                _pendingPayload = e.Payload.Length == 0 ? null : e.Payload; // empty: too big to notify, read it
            }
        }
        _signals.Writer.TryWrite(e.Version);
    }

    public void OnResync() => _signals.Writer.TryWrite(-1);

    public void Dispose() => _subscription.Dispose();
}
