using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using QrOrleans.Accounts;
using QrOrleans.Grains.Accounts;
using QrOrleans.Runtime;
using QrOrleans.Silo.Runtime;

namespace QrOrleans.Silo.Accounts;

/// <summary>
/// Runs the live side of linked accounts on this node: holds their leases and one <see cref="AccountWorker"/> per
/// held account. Every third of the lease time it renews what it holds (a lease it lost stops its worker), takes
/// over leases whose holder let them expire (a dead node's accounts move within the lease time), and takes free
/// ones up to its fair share (accounts ÷ active silos). On a clean stop it lets go at once.
/// </summary>
public sealed partial class AccountHost(
    ILeaseTable leases,
    IGrainFactory grains,
    IGrainStreams streams,
    PlatformConnectors connectors,
    IMembershipTable membership,
    SiloIdentity self,
    AccountOptions options,
    TimeProvider time,
    IServiceProvider services,
    ILogger<AccountHost> log) : BackgroundService
{
    private const string Type = AccountGrainTypes.Account;

    // Touched only by the tick loop, and by StopAsync after the loop has ended.
    private readonly Dictionary<string, Holding> _held = [];
    private CancellationToken _stopping;
    private volatile string[] _heldKeys = [];

    private sealed record Holding(LeaseGrant Grant, AccountWorker Worker, CancellationTokenSource Cancel, Task Run);

    /// <summary>The accounts whose lease this node holds now.</summary>
    public IReadOnlyCollection<string> HeldAccounts => _heldKeys;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        _stopping = stoppingToken;
        using var timer = new PeriodicTimer(options.LeaseTime / 3, time);
        try
        {
            do
            {
                try
                {
                    await TickAsync(stoppingToken).ConfigureAwait(false);
                }
                catch (Exception e) when (!stoppingToken.IsCancellationRequested)
                {
                    // The table is unreachable: keep running only what is still surely ours.
                    LogTickFailed(log, e);
                    foreach (var (key, h) in _held.Where(h => h.Value.Grant.ExpiresAt <= time.GetUtcNow()).ToArray())
                    {
                        Drop(key, h);
                    }
                }
                _heldKeys = [.. _held.Keys];
            }
            while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // stopping
        }
    }

    private async Task TickAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        if (_held.Count > 0)
        {
            var renewed = (await leases.RenewAsync(Type, self.Id, _held.Values.Select(h => h.Grant).ToArray(), now, options.LeaseTime, ct)
                .ConfigureAwait(false)).ToDictionary(g => g.Key);
            foreach (var (key, h) in _held.ToArray())
            {
                if (renewed.TryGetValue(key, out var grant))
                {
                    _held[key] = h with { Grant = grant };
                }
                else
                {
                    LogLost(log, key, h.Grant.Epoch);
                    Drop(key, h);
                }
            }
        }
        var active = Math.Max(1, (await membership.ListAsync(ct).ConfigureAwait(false)).Count(s => s.Status == SiloStatuses.Active));
        var total = await leases.CountAsync(Type, ct).ConfigureAwait(false);
        var share = (total + active - 1) / active;
        foreach (var grant in await leases.AcquireAsync(Type, self.Id, now, options.LeaseTime, share - _held.Count, ct).ConfigureAwait(false))
        {
            if (_held.TryGetValue(grant.Key, out var old))
            {
                Drop(grant.Key, old); // our own lease lapsed and came back with a new epoch
            }
            Start(grant);
        }
        foreach (var h in _held.Values)
        {
            h.Worker.Nudge(); // a look at the state now and then, in case a stream notification was lost
        }
    }

    private void Start(LeaseGrant grant)
    {
        LogAcquired(log, grant.Key, grant.Epoch);
        var cancel = CancellationTokenSource.CreateLinkedTokenSource(_stopping);
        var worker = new AccountWorker(grant.Key, new LeaseToken(self.Id, grant.Epoch), grains, streams, connectors,
            () => services.GetRequiredService<ICredentialVault>(), options, time, log);
        _held[grant.Key] = new Holding(grant, worker, cancel, Task.Run(() => worker.RunAsync(cancel.Token)));
    }

    private void Drop(string key, Holding h)
    {
        h.Cancel.Cancel();
        h.Run.ContinueWith(_ => h.Cancel.Dispose(), TaskScheduler.Default);
        _held.Remove(key);
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        var held = _held.Values.ToArray();
        _held.Clear();
        _heldKeys = [];
        foreach (var h in held)
        {
            await h.Cancel.CancelAsync().ConfigureAwait(false);
        }
        try
        {
            await Task.WhenAll(held.Select(h => h.Run)).WaitAsync(cancellationToken).ConfigureAwait(false);
            // Let go now rather than at expiry, so another node takes over at its next tick.
            foreach (var h in held)
            {
                await grains.GetGrain<ILinkedAccountGrain>(h.Grant.Key).DetachAsync(h.Worker.Lease, cancellationToken).ConfigureAwait(false);
            }
            await leases.ReleaseAsync(Type, self.Id, held.Select(h => h.Grant).ToArray(), cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            // An abrupt stop: the leases simply expire and another node takes over then.
            LogReleaseSkipped(log, e.Message);
        }
        foreach (var h in held)
        {
            h.Cancel.Dispose();
        }
    }

    [LoggerMessage(LogLevel.Information, "Holding account {Account} (lease epoch {Epoch})")]
    private static partial void LogAcquired(ILogger log, string account, long epoch);

    [LoggerMessage(LogLevel.Information, "No longer holds the lease of account {Account} (epoch {Epoch}: taken over or unregistered); stopped its live side")]
    private static partial void LogLost(ILogger log, string account, long epoch);

    [LoggerMessage(LogLevel.Warning, "Account lease tick failed")]
    private static partial void LogTickFailed(ILogger log, Exception e);

    [LoggerMessage(LogLevel.Information, "Account leases not released on stop ({Reason}); they expire instead")]
    private static partial void LogReleaseSkipped(ILogger log, string reason);
}
