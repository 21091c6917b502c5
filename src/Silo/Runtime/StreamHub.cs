using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using QrOrleans.Runtime;

namespace QrOrleans.Silo.Runtime;

/// <summary>
/// This node's fan-out: reads the provider's stream and hands each event to the local observers of its grain
/// (SignalR connections, SSE responses, long-poll waiters). A resync goes to every observer.
/// </summary>
public sealed partial class StreamHub(IStreamSource source, ILogger<StreamHub> log) : BackgroundService, IGrainStreams
{
    private readonly ConcurrentDictionary<GrainId, IStreamObserver[]> _observers = new();

    public IDisposable Subscribe(GrainId grain, IStreamObserver observer)
    {
        _observers.AddOrUpdate(grain, static (_, o) => [o], static (_, list, o) => [.. list, o], observer);
        return new Subscription(this, grain, observer);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await foreach (var signal in source.ListenAsync(stoppingToken).ConfigureAwait(false))
        {
            if (signal.IsResync)
            {
                foreach (var list in _observers.Values)
                {
                    foreach (var o in list)
                    {
                        Notify(o, null);
                    }
                }
                continue;
            }
            if (_observers.TryGetValue(signal.Event!.Grain, out var observers))
            {
                foreach (var o in observers)
                {
                    Notify(o, signal.Event);
                }
            }
        }
    }

    private void Notify(IStreamObserver observer, StreamEvent? e)
    {
        try
        {
            if (e is null)
            {
                observer.OnResync();
            }
            else
            {
                observer.OnNext(e);
            }
        }
        catch (Exception ex)
        {
            LogObserverFailed(log, ex);
        }
    }

    private void Unsubscribe(GrainId grain, IStreamObserver observer)
    {
        while (_observers.TryGetValue(grain, out var list))
        {
            var remaining = list.Where(o => !ReferenceEquals(o, observer)).ToArray();
            var done = remaining.Length == 0
                ? _observers.TryRemove(new KeyValuePair<GrainId, IStreamObserver[]>(grain, list))
                : _observers.TryUpdate(grain, remaining, list);
            if (done)
            {
                return;
            }
        }
    }

    private sealed class Subscription(StreamHub hub, GrainId grain, IStreamObserver observer) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                hub.Unsubscribe(grain, observer);
            }
        }
    }

    [LoggerMessage(LogLevel.Warning, "A stream observer failed")]
    private static partial void LogObserverFailed(ILogger log, Exception e);
}
