using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using QrOrleans.Accounts;

namespace QrOrleans.Grains.Accounts;

/// <summary>
/// The live side of one account, run by its activation outside the grain's turns: reads what the account needs
/// (its state, a due health check) and does the platform I/O — the pairing loop, health checks — reporting each
/// outcome to the grain through an ordinary grain call carrying the activation's <see cref="WorkerToken"/>. The
/// grain nudges it after every change; it never decides what time it is for the account (the grain does). It stops
/// when cancelled (the activation went) or when the grain says it is not the current activation's worker.
/// </summary>
internal sealed partial class AccountWorker(
    string accountId,
    WorkerToken token,
    IGrainFactory grains,
    PlatformConnectors connectors,
    ICredentialVault vault,
    AccountOptions options,
    TimeProvider time,
    ILogger log)
{
    /// <summary>A look at the state now and then, in case a nudge was missed.</summary>
    private static readonly TimeSpan IdleLook = TimeSpan.FromSeconds(30);

    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    public void Nudge() => _wake.Writer.TryWrite(true);

    public async Task RunAsync(CancellationToken ct)
    {
        var grain = grains.GetGrain<ILinkedAccountGrain>(accountId);
        while (!ct.IsCancellationRequested)
        {
            try
            {
                var view = await grain.GetHostViewAsync(ct).ConfigureAwait(false);
                if (view is not null && view.Worker != token)
                {
                    LogFenced(log, accountId, token.Silo);
                    return; // another activation holds the account now
                }
                if (view is null || !await ActAsync(grain, view, ct).ConfigureAwait(false))
                {
                    await WaitAsync(IdleLook, ct).ConfigureAwait(false);
                }
            }
            catch (GrainException e) when (e.Code == "stale_epoch")
            {
                LogFenced(log, accountId, token.Silo);
                return;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                if (ct.IsCancellationRequested)
                {
                    return;
                }
                LogFailed(log, accountId, e);
                await WaitAsync(options.RetryBase, ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>Does what the account needs now; false when it needs nothing.</summary>
    private async Task<bool> ActAsync(ILinkedAccountGrain grain, HostView view, CancellationToken ct)
    {
        switch (view)
        {
            case { Connector.Platform: var platform } when !connectors.TryGet(platform, out _):
                return false; // no connector for this platform on this node: nothing to drive
            case { State: AccountStates.Pairing, Pairing: { } pairing }:
                await PairAsync(grain, view, pairing, ct).ConfigureAwait(false);
                return true;
            case { State: AccountStates.Connected or AccountStates.TransientDisconnect, CheckDue: true, SealedCredentials: { } sealedCredentials }
                when !(view.NotBefore > time.GetUtcNow()):
                await CheckHealthAsync(grain, view, sealedCredentials, ct).ConfigureAwait(false);
                return true;
            default:
                return false;
        }
    }

    // ---- pairing ----

    /// <summary>
    /// The bounded refresh loop: a code, relayed; polled until scanned, confirmed or expired; then the next code,
    /// until <see cref="PairingTask.MaxCycles"/> codes or the wall-clock limit. Returns when the ceremony ends,
    /// here or elsewhere (the operator deleted or stopped the account, the deadline reminder fired).
    /// </summary>
    private async Task PairAsync(ILinkedAccountGrain grain, HostView view, PairingTask pairing, CancellationToken ct)
    {
        var connector = connectors.Get(view.Connector.Platform);
        var context = view.Connector.ToContext();
        var attempt = pairing.Attempt;
        var cycle = pairing.Cycle;
        while (true)
        {
            if (cycle >= pairing.MaxCycles || time.GetUtcNow() >= pairing.Deadline)
            {
                await grain.PairingTimedOutAsync(token, attempt, ct).ConfigureAwait(false);
                return;
            }
            PairingCode code;
            try
            {
                code = await CallAsync(c => connector.BeginPairingAsync(context, c), ct).ConfigureAwait(false);
            }
            catch (PlatformException e)
            {
                if (await grain.PairingFailedAsync(token, attempt, PlatformFailure.From(e), ct).ConfigureAwait(false) is not { } retryAt
                    || !await PauseInCeremonyAsync(grain, attempt, retryAt, ct).ConfigureAwait(false))
                {
                    return;
                }
                continue;
            }
            var ttl = time.GetUtcNow() + TimeSpan.FromSeconds(pairing.QrTtlSeconds);
            var expiresAt = code.ExpiresAt < ttl ? code.ExpiresAt : ttl;
            try
            {
                cycle = await grain.PairingCodeIssuedAsync(token, attempt, code.QrContent, expiresAt, ct).ConfigureAwait(false);
            }
            catch (GrainException e) when (e.Code == "invalid_state")
            {
                return; // the ceremony ended meanwhile
            }
            if (!await WatchCodeAsync(grain, connector, context, code, attempt, cycle, expiresAt, ct).ConfigureAwait(false))
            {
                return;
            }
        }
    }

    /// <summary>Polls one code until it expires (true: next cycle) or the ceremony ends (false).</summary>
    private async Task<bool> WatchCodeAsync(
        ILinkedAccountGrain grain, IPlatformConnector connector, ConnectorContext context, PairingCode code,
        long attempt, int cycle, DateTimeOffset expiresAt, CancellationToken ct)
    {
        while (true)
        {
            var left = expiresAt - time.GetUtcNow();
            if (left <= TimeSpan.Zero)
            {
                return true;
            }
            if (_wake.Reader.TryRead(out _) && !await StillPairingAsync(grain, attempt, ct).ConfigureAwait(false))
            {
                return false;
            }
            PairingStatus status;
            try
            {
                var wait = left < options.PairingPollWait ? left : options.PairingPollWait;
                status = await CallAsync(c => connector.PollPairingAsync(context, code, wait, c), ct).ConfigureAwait(false);
            }
            catch (PlatformException e)
            {
                if (await grain.PairingFailedAsync(token, attempt, PlatformFailure.From(e), ct).ConfigureAwait(false) is not { } retryAt)
                {
                    return false;
                }
                if (!await PauseInCeremonyAsync(grain, attempt, retryAt < expiresAt ? retryAt : expiresAt, ct).ConfigureAwait(false))
                {
                    return false;
                }
                continue;
            }
            switch (status.Progress)
            {
                case PairingProgress.Scanned:
                    await grain.PairingScannedAsync(token, attempt, cycle, status.NumberMatch, ct).ConfigureAwait(false);
                    break;
                case PairingProgress.Confirmed when status.Credentials is { } credentials:
                    await grain.PairingConfirmedAsync(token, attempt, credentials, ct).ConfigureAwait(false);
                    return false;
                case PairingProgress.Expired:
                    return true;
            }
        }
    }

    private async Task<bool> StillPairingAsync(ILinkedAccountGrain grain, long attempt, CancellationToken ct) =>
        await grain.GetHostViewAsync(ct).ConfigureAwait(false) is { State: AccountStates.Pairing, Pairing.Attempt: var a } && a == attempt;

    /// <summary>Waits until <paramref name="until"/> (the platform asked us to), unless the ceremony ends first.</summary>
    private async Task<bool> PauseInCeremonyAsync(ILinkedAccountGrain grain, long attempt, DateTimeOffset until, CancellationToken ct)
    {
        while (time.GetUtcNow() < until)
        {
            await WaitAsync(until - time.GetUtcNow(), ct).ConfigureAwait(false);
            if (!await StillPairingAsync(grain, attempt, ct).ConfigureAwait(false))
            {
                return false;
            }
        }
        return true;
    }

    // ---- health ----

    private async Task CheckHealthAsync(ILinkedAccountGrain grain, HostView view, string sealedCredentials, CancellationToken ct)
    {
        var connector = connectors.Get(view.Connector.Platform);
        var credentialVault = vault;
        string credentials;
        try
        {
            credentials = credentialVault.Unseal(accountId, sealedCredentials);
        }
        catch (GrainException e)
        {
            // Unreadable credentials are as good as revoked ones: the owner must pair again.
            await grain.HealthFailedAsync(token, view.CredentialGeneration,
                new PlatformFailure(ErrorClass.Auth, e.Code, "The stored credentials could not be unsealed."), ct).ConfigureAwait(false);
            return;
        }
        PlatformFailure failure;
        try
        {
            var result = await CallAsync(c => connector.CheckHealthAsync(view.Connector.ToContext(), credentials, c), ct).ConfigureAwait(false);
            var reseal = result.Credentials ?? (credentialVault.NeedsResealing(sealedCredentials) ? credentials : null);
            await grain.HealthyAsync(token, view.CredentialGeneration, reseal, ct).ConfigureAwait(false);
            return;
        }
        catch (PlatformException e)
        {
            failure = PlatformFailure.From(e);
        }
        await grain.HealthFailedAsync(token, view.CredentialGeneration, failure, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// One connector call, bounded by <see cref="AccountOptions.ConnectorTimeout"/>. A timeout or an unclassified
    /// error from a connector counts as transient.
    /// </summary>
    private async Task<T> CallAsync<T>(Func<CancellationToken, Task<T>> call, CancellationToken ct)
    {
        using var timeout = new CancellationTokenSource(options.ConnectorTimeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeout.Token);
        try
        {
            return await call(linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw new PlatformException(ErrorClass.Transient, "timeout", "The platform did not answer in time.");
        }
        catch (Exception e) when (e is not (PlatformException or OperationCanceledException))
        {
            LogConnectorError(log, accountId, e);
            throw new PlatformException(ErrorClass.Transient, "connector_error", "The connector failed: " + e.GetType().Name);
        }
    }

    private async Task WaitAsync(TimeSpan max, CancellationToken ct)
    {
        if (max <= TimeSpan.Zero)
        {
            return;
        }
        using var timeout = new CancellationTokenSource(max, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(ct, timeout.Token);
        try
        {
            await _wake.Reader.WaitToReadAsync(linked.Token).ConfigureAwait(false);
            _wake.Reader.TryRead(out _);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            // waited long enough
        }
    }

    [LoggerMessage(LogLevel.Information, "Account {Account}: the worker on {Silo} is no longer the current activation's; it stops")]
    private static partial void LogFenced(ILogger log, string account, string silo);

    [LoggerMessage(LogLevel.Warning, "Account {Account}: live side failed; retrying")]
    private static partial void LogFailed(ILogger log, string account, Exception e);

    [LoggerMessage(LogLevel.Warning, "Account {Account}: connector error")]
    private static partial void LogConnectorError(ILogger log, string account, Exception e);
}
