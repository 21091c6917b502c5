using System.Collections.Concurrent;
using Orleans.Streams;
using QrOrleans.Users;

namespace QrOrleans.Gateway.Auth;

/// <summary>
/// Whether a device may still use its access tokens, asked on every phone call. The device grain's "active" answer
/// is kept on this node for <see cref="Fresh"/>, so a phone's run of calls costs one grain call, not one each; a
/// revocation reaches every node at once on the <see cref="DeviceStreams"/> stream, which this node
/// follows with one subscription, and drops the kept answer. A notice that is lost delays a revocation here by at
/// most <see cref="Fresh"/>. Only "active" is kept: a refusal is asked again, and is cheap for the phone that gets it.
/// </summary>
public sealed partial class DeviceStatus(IClusterClient cluster, ILogger<DeviceStatus> log) : BackgroundService
{
    public static readonly TimeSpan Fresh = TimeSpan.FromSeconds(5);

    private readonly ConcurrentDictionary<string, Kept> _active = new(StringComparer.Ordinal);

    /// <summary>Counts notices: an answer fetched while one arrived may predate it, so it is not kept.</summary>
    private long _notices;

    /// <summary>Answers are kept only while this node follows the notices that would drop them.</summary>
    private volatile bool _following;

    private readonly record struct Kept(string UserId, long Until);

    public async ValueTask<bool> IsActiveAsync(string userId, string deviceId, CancellationToken ct)
    {
        var now = Environment.TickCount64;
        if (_active.TryGetValue(deviceId, out var kept) && kept.Until > now && kept.UserId == userId)
        {
            return true;
        }
        var notices = Interlocked.Read(ref _notices);
        var active = await cluster.Grain<IDeviceGrain>(deviceId).IsActiveAsync(userId, ct).ConfigureAwait(false);
        if (active && _following && Interlocked.Read(ref _notices) == notices)
        {
            _active[deviceId] = new Kept(userId, now + (long)Fresh.TotalMilliseconds);
        }
        else
        {
            _active.TryRemove(deviceId, out _);
        }
        return active;
    }

    /// <summary>The device was signed out (here, or the cluster says so): its next call asks its grain.</summary>
    public void Forget(string deviceId)
    {
        Interlocked.Increment(ref _notices);
        _active.TryRemove(deviceId, out _);
    }

    /// <summary>Follows the revocations (subscribing again if the cluster was away), and forgets answers that ran out.</summary>
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        StreamSubscriptionHandle<DeviceRevoked>? subscription = null;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                if (subscription is null)
                {
                    try
                    {
                        subscription = await cluster.GetStreamProvider(OrleansNames.Streams)
                            .GetStream<DeviceRevoked>(StreamId.Create(DeviceStreams.Namespace, DeviceStreams.Key))
                            .SubscribeAsync((notice, _) =>
                            {
                                Forget(notice.DeviceId);
                                return Task.CompletedTask;
                            }).ConfigureAwait(false);
                    }
                    catch (Exception e) when (e is not OperationCanceledException)
                    {
                        // The cluster is not reachable yet (a client gateway starting before its silos): nothing is kept
                        // meanwhile, so every call asks the grain.
                        LogSubscribeFailed(log, e.GetType().Name);
                    }
                    _following = subscription is not null;
                }
                await Task.Delay(subscription is null ? TimeSpan.FromSeconds(1) : Fresh * 6, stoppingToken).ConfigureAwait(false);
                var now = Environment.TickCount64;
                foreach (var (deviceId, kept) in _active)
                {
                    if (kept.Until <= now)
                    {
                        _active.TryRemove(new KeyValuePair<string, Kept>(deviceId, kept));
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping
        }
        finally
        {
            if (subscription is not null)
            {
                try
                {
                    // A clean stop leaves no subscription behind for the stream to deliver to.
                    await subscription.UnsubscribeAsync().ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    LogUnsubscribeFailed(log, e.GetType().Name);
                }
            }
        }
    }

    [LoggerMessage(LogLevel.Warning, "Following device revocations failed ({Error}); every phone call asks its device until it works")]
    private static partial void LogSubscribeFailed(ILogger log, string error);

    [LoggerMessage(LogLevel.Debug, "Leaving the device revocation stream failed ({Error})")]
    private static partial void LogUnsubscribeFailed(ILogger log, string error);
}
