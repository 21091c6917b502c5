using System.Threading.Channels;
using QrOrleans.QrSessions;

namespace QrOrleans.Gateway.QrSessions;

/// <summary>
/// One waiting desktop's view of its session on this node (SSE and long-poll): snapshots in version order, newer
/// only. Changes come from the session's grain through <see cref="SessionWatches"/>; a resync is healed by
/// re-reading the snapshot from the grain.
/// </summary>
public sealed class SnapshotFeed : ISessionWatcher, IAsyncDisposable
{
    private readonly Channel<long> _signals = Channel.CreateBounded<long>(new BoundedChannelOptions(4) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true });
    private readonly IQrSessionGrain _grain;
    private readonly string _desktopToken;
    private IAsyncDisposable? _watch;
    private QrSessionSnapshot? _pending;

    private SnapshotFeed(IQrSessionGrain grain, string desktopToken)
    {
        _grain = grain;
        _desktopToken = desktopToken;
    }

    /// <summary>Listens and reads in one call, so no change after the snapshot is missed. Throws 401 for a bad token.</summary>
    public static async Task<(SnapshotFeed Feed, QrSessionSnapshot Snapshot)> OpenAsync(
        IGrainFactory grains, SessionWatches watches, string sessionId, string desktopToken, CancellationToken ct)
    {
        var feed = new SnapshotFeed(grains.Grain<IQrSessionGrain>(sessionId), desktopToken);
        var (watch, snapshot) = await watches.WatchAsync(sessionId, desktopToken, feed, ct).ConfigureAwait(false);
        feed._watch = watch;
        return (feed, snapshot);
    }

    /// <summary>
    /// The next snapshot newer than <paramref name="haveVersion"/>; null if the session is gone (deleted after its grace
    /// period) or the feed was closed (<see cref="Close"/>).
    /// </summary>
    public async Task<QrSessionSnapshot?> NextAsync(long haveVersion, CancellationToken ct)
    {
        while (true)
        {
            if (!await _signals.Reader.WaitToReadAsync(ct).ConfigureAwait(false))
            {
                return null;
            }
            if (!_signals.Reader.TryRead(out var version))
            {
                continue;
            }
            var pending = Volatile.Read(ref _pending);
            // The newest change seen so far answers for every older signal still queued.
            if (pending is not null && pending.Version > haveVersion)
            {
                return pending;
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
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    // The cluster flapped as we re-read (a silo died, storage restarted): wait and read again rather than drop the watcher.
                    await Task.Delay(TimeSpan.FromMilliseconds(250), ct).ConfigureAwait(false);
                    _signals.Writer.TryWrite(-1);
                    continue;
                }
                if (snapshot.Version > haveVersion)
                {
                    return snapshot;
                }
            }
        }
    }

    public void OnChanged(QrSessionChanged change)
    {
        QrSessionSnapshot? seen;
        do
        {
            seen = Volatile.Read(ref _pending);
            if (seen is not null && seen.Version >= change.Version)
            {
                break;
            }
        }
        while (Interlocked.CompareExchange(ref _pending, change.Snapshot, seen) != seen);
        _signals.Writer.TryWrite(change.Version);
    }

    public void OnResync() => _signals.Writer.TryWrite(-1);

    /// <summary>
    /// The desktop left: a waiting <see cref="NextAsync"/> answers null. An ordinary end, not an exception (thrown
    /// through every layer of the request, a cancellation cost each SSE ceremony more than its pushes).
    /// </summary>
    public void Close() => _signals.Writer.TryComplete();

    public ValueTask DisposeAsync() => _watch?.DisposeAsync() ?? ValueTask.CompletedTask;
}
