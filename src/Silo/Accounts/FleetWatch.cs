using Microsoft.Extensions.Logging;
using QrOrleans.Accounts;

namespace QrOrleans.Silo.Accounts;

/// <summary>
/// The fast path of the fleet's recovery, on every silo. An account's live connection is held by its activation;
/// when a silo dies, its accounts are only activated again by their next recovery reminder, which Orleans does not
/// let fire more often than once a minute. So every silo follows Orleans membership and, whenever a silo is
/// declared Dead (and once when this silo becomes active, in case the whole cluster restarted), wakes every account
/// of the directory and its outbox: those that were on the dead silo activate on a survivor at once, the others
/// answer from where they are. Waking is idempotent, so several survivors doing it at once is harmless.
/// </summary>
public sealed partial class FleetWatch(IClusterMembershipService membership, IGrainFactory grains, ILogger<FleetWatch> log)
    : ILifecycleParticipant<ISiloLifecycle>
{
    private const int Parallel = 32;
    private static readonly TimeSpan[] RetryAfter = [TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(4)];

    private readonly CancellationTokenSource _stop = new();
    private Task _run = Task.CompletedTask;

    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(FleetWatch), ServiceLifecycleStage.Active, OnStartAsync, OnStopAsync);

    private Task OnStartAsync(CancellationToken ct)
    {
        _run = Task.Run(() => RunAsync(_stop.Token), CancellationToken.None);
        return Task.CompletedTask;
    }

    private async Task OnStopAsync(CancellationToken ct)
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        await _run.WaitAsync(ct).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    private async Task RunAsync(CancellationToken ct)
    {
        var sweep = Task.Run(() => WakeAllAsync("this silo started", ct), CancellationToken.None);
        ClusterMembershipSnapshot? previous = null;
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(ct).ConfigureAwait(false))
            {
                if (previous is not null)
                {
                    var dead = snapshot.CreateUpdate(previous).Changes.Where(c => c.Status == SiloStatus.Dead).Select(c => c.SiloAddress.ToString()).ToArray();
                    if (dead.Length > 0)
                    {
                        LogSiloDead(log, string.Join(", ", dead));
                        await sweep.ConfigureAwait(false);
                        sweep = Task.Run(() => WakeAllAsync("a silo died", ct), CancellationToken.None);
                    }
                }
                previous = snapshot;
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // the silo stops
        }
        await sweep.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    /// <summary>Wakes every account and outbox; what fails (the cluster is still settling) is tried again a few times.</summary>
    private async Task WakeAllAsync(string why, CancellationToken ct)
    {
        IReadOnlyList<string> pending = [];
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                if (attempt == 0 || pending.Count == 0)
                {
                    pending = await grains.GetGrain<IAccountDirectoryGrain>(AccountStreams.Directory).ListAsync(ct).ConfigureAwait(false);
                }
                var failed = new System.Collections.Concurrent.ConcurrentBag<string>();
                await System.Threading.Tasks.Parallel.ForEachAsync(pending, new ParallelOptions { MaxDegreeOfParallelism = Parallel, CancellationToken = ct },
                    async (id, token) =>
                    {
                        try
                        {
                            await Task.WhenAll(
                                grains.GetGrain<ILinkedAccountGrain>(id).EnsureLiveAsync(token),
                                grains.GetGrain<IOutboxGrain>(id).ResumeAsync(token)).ConfigureAwait(false);
                        }
                        catch (Exception) when (!token.IsCancellationRequested)
                        {
                            failed.Add(id);
                        }
                    }).ConfigureAwait(false);
                if (attempt == 0)
                {
                    LogWoken(log, pending.Count, why);
                }
                if (failed.IsEmpty)
                {
                    return;
                }
                pending = [.. failed];
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogWakeFailed(log, e);
            }
            if (attempt >= RetryAfter.Length)
            {
                LogGaveUp(log, pending.Count);
                return;
            }
            await Task.Delay(RetryAfter[attempt], ct).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (ct.IsCancellationRequested)
            {
                return;
            }
        }
    }

    [LoggerMessage(LogLevel.Information, "Silo(s) {Silos} declared dead: waking the fleet's accounts on the survivors")]
    private static partial void LogSiloDead(ILogger log, string silos);

    [LoggerMessage(LogLevel.Information, "Woke {Count} linked accounts ({Why})")]
    private static partial void LogWoken(ILogger log, int count, string why);

    [LoggerMessage(LogLevel.Warning, "Waking the fleet's accounts failed; trying again")]
    private static partial void LogWakeFailed(ILogger log, Exception e);

    [LoggerMessage(LogLevel.Warning, "{Count} linked accounts could not be woken; their recovery reminders will bring them back")]
    private static partial void LogGaveUp(ILogger log, int count);
}
