using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Storage;
using Orleans.Streams;
using QrOrleans.Accounts;
using static QrOrleans.Accounts.AccountStates;

namespace QrOrleans.Grains.Accounts;

/// <summary>
/// A linked account: unlinked → pairing → connected, with pairing_timed_out, transient_disconnect,
/// cooling_down, bad_credentials and stopped. One method per transition, each checking the state it may start
/// from, one write each. The activation is the one holder of the account's live platform connection: while the
/// account needs one it runs an <see cref="AccountWorker"/> outside its turns (pairing loop, health checks), stays
/// active (a keep-alive timer), and keeps a durable "recovery" reminder that brings it back on another silo if
/// this one dies. Time-driven transitions (pairing limit, health interval, backoff retry, cool-down end) run on a
/// grain timer and, so that a late timer never lets a caller act past a deadline, at the start of every call.
/// Owner notices are made in the same write as the change they report and handed to the outbox grain after it.
/// </summary>
public sealed partial class LinkedAccountGrain(
    [PersistentState("account", OrleansNames.Storage)] IPersistentState<LinkedAccountDocument> state,
    ICredentialVault vault,
    AccountOptions options,
    AccountRecoveryOptions recovery,
    PlatformConnectors connectors,
    ActivationCensus census,
    ILocalSiloDetails silo,
    [FromKeyedServices(OrleansNames.Clock)] TimeProvider time,
    ILogger<LinkedAccountGrain> log)
    : Grain, ILinkedAccountGrain, IRemindable
{
    /// <summary>The state of an account that was deleted but still has notices to hand to its outbox.</summary>
    private const string Deleted = "deleted";

    private const string RecoveryReminder = "recovery";

    /// <summary>Below any collection age, so that the keep-alive ticks hold a live account in memory.</summary>
    private static readonly TimeSpan KeepAliveTick = TimeSpan.FromSeconds(20);

    /// <summary>A failed handoff to the outbox is tried again this soon (the reminder is the backstop).</summary>
    private static readonly TimeSpan HandoffRetry = TimeSpan.FromSeconds(1);

    private WorkerToken _token = null!;
    private IGrainTimer? _due;
    private IGrainTimer? _keepAlive;
    private AccountWorker? _worker;
    private CancellationTokenSource? _workerStop;

    /// <summary>Whether the recovery reminder is registered, as far as this activation knows (null: not known yet).</summary>
    private bool? _reminder;
    private Task _background = Task.CompletedTask;

    private string Key => this.GetPrimaryKeyString();

    private DateTimeOffset Now => time.GetUtcNow();

    /// <summary>The account, if it exists (a deleted one waiting for its notices to go does not).</summary>
    private LinkedAccountState? Live => state.State.Account is { State: not Deleted } s ? s : null;

    // ---- activation ----

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _token = new WorkerToken(silo.SiloAddress.ToString(), Secrets.NewHexId(8));
        if (Live is { State: Connected, CheckDue: false } s)
        {
            // A new holder checks a connected account's session at once instead of at the next interval.
            await CommitAsync(s with { CheckDue = true, CheckAt = null }, publish: false).ConfigureAwait(true);
            return;
        }
        if (state.State.Account is { Config.Owner.LegacyWebhookSecret: not null } legacy)
        {
            // State stored before webhook secrets were sealed: sealed now, in one write (CommitAsync seals it).
            await CommitAsync(legacy, publish: false).ConfigureAwait(true);
            return;
        }
        AfterChange();
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        StopWorker();
        census.Report(ActivationCensus.LinkedAccount, Key, null);
        return Task.CompletedTask;
    }

    // ---- operator ----

    public async Task<AccountConfigured> ConfigureAsync(AccountSettings settings, CancellationToken ct)
    {
        if (Live is not { } existing)
        {
            var tombstone = state.State.Account;
            if (settings.Platform is null || settings.WebhookUrl is null || settings.WebhookSecret is null)
            {
                throw AccountErrors.Validation("platform, owner.webhookUrl and owner.webhookSecret are required to create an account.");
            }
            var now = Now;
            var budget = settings.RateBudget ?? AccountDefaults.RateBudget;
            var created = new LinkedAccountState
            {
                State = Unlinked,
                StateSince = now,
                Config = new AccountConfig(settings.Platform, settings.DisplayName ?? Key,
                    new OwnerConfig(settings.WebhookUrl, WebhookSecrets.Seal(vault, Key, settings.WebhookSecret)), budget, settings.Pairing ?? AccountDefaults.Pairing, settings.Connector),
                Bucket = new TokenBucket(budget.Capacity, now),
                // A re-created account keeps the notices its deleted self has not handed off yet.
                Incarnation = tombstone?.Incarnation ?? Secrets.NewHexId(8),
                Notices = tombstone?.Notices ?? [],
                NextNoticeSeq = tombstone?.NextNoticeSeq ?? 1,
            };
            // Listed first: an account that exists is always in the directory (a listed one that does not is skipped).
            await Directory.AddAsync(Key, ct).ConfigureAwait(true);
            return new AccountConfigured(await CommitAsync(created).ConfigureAwait(true), true, Target(state.State.Account!));
        }
        var platform = settings.Platform ?? existing.Config.Platform;
        if (platform != existing.Config.Platform && (existing.SealedCredentials is not null || existing.State == Pairing))
        {
            throw AccountErrors.InvalidState(existing.State, $"move to platform '{platform}' (unlink it first)");
        }
        var old = existing.Config;
        var config = old with
        {
            Platform = platform,
            DisplayName = settings.DisplayName ?? old.DisplayName,
            Owner = settings.WebhookSecret is { } secret
                ? new OwnerConfig(settings.WebhookUrl ?? old.Owner.WebhookUrl, WebhookSecrets.Seal(vault, Key, secret))
                : old.Owner with { WebhookUrl = settings.WebhookUrl ?? old.Owner.WebhookUrl },
            RateBudget = settings.RateBudget ?? old.RateBudget,
            Pairing = settings.Pairing ?? old.Pairing,
            Connector = settings.Connector ?? (platform == old.Platform ? old.Connector : null),
        };
        var bucket = existing.Bucket.Refill(old.RateBudget, Now);
        var s = existing with { Config = config, Bucket = bucket with { Tokens = Math.Min(bucket.Tokens, config.RateBudget.Capacity) } };
        return new AccountConfigured(await CommitAsync(s).ConfigureAwait(true), false, Target(state.State.Account!));
    }

    public async Task<AccountView?> GetAsync(CancellationToken ct) =>
        Live is null ? null : View(await RequireAsync().ConfigureAwait(true));

    public async Task<OwnerQr?> GetOwnerQrAsync(CancellationToken ct) =>
        Live is null ? null : CurrentQr(await RequireAsync().ConfigureAwait(true));

    public async Task<AccountView> RequestPairingAsync(CancellationToken ct)
    {
        var s = await RequireAsync().ConfigureAwait(true);
        switch (s.State)
        {
            case Pairing:
                return View(s); // already running: asking again changes nothing
            case CoolingDown:
                throw AccountErrors.CoolingDown(s.CooldownUntil!.Value);
            case Stopped or Unlinked when s.CooldownUntil > Now: // a cool-down kept through a stop or an unlink
                throw AccountErrors.CoolingDown(s.CooldownUntil.Value);
            case Connected or TransientDisconnect:
                throw AccountErrors.InvalidState(s.State, "pair (unlink it first to link it anew)");
        }
        var p = s.Config.Pairing;
        var attempt = s.PairingAttempts + 1;
        var deadline = Now + TimeSpan.FromSeconds((double)p.MaxCycles * p.QrTtlSeconds) + options.PairingSlack;
        var run = new PairingRun(attempt, 0, p.MaxCycles, p.QrTtlSeconds, null, deadline, false);
        return await CommitAsync(Enter(s with { Pairing = run, PairingAttempts = attempt, LastError = null }, Pairing)).ConfigureAwait(true);
    }

    public async Task<AccountView> StopAsync(CancellationToken ct)
    {
        var s = await RequireAsync().ConfigureAwait(true);
        if (s.State == Stopped)
        {
            return View(s);
        }
        // A cool-down in progress is kept: starting again must not call the platform before its end.
        s = WithdrawQr(s);
        return await CommitAsync(Enter(s with { CooldownUntil = s.State == CoolingDown ? s.CooldownUntil : null }, Stopped)).ConfigureAwait(true);
    }

    public async Task<AccountView> StartAsync(CancellationToken ct)
    {
        var s = await RequireAsync().ConfigureAwait(true);
        if (s.State != Stopped)
        {
            throw AccountErrors.InvalidState(s.State, "start");
        }
        if (s.CooldownUntil > Now)
        {
            return await CommitAsync(Enter(s, CoolingDown)).ConfigureAwait(true);
        }
        s = s with { CooldownUntil = null };
        return await CommitAsync(s.SealedCredentials is null ? Enter(s, Unlinked) : Enter(s, Connected) with { CheckDue = true, CheckAt = null })
            .ConfigureAwait(true);
    }

    public async Task<SendGrant> BeginSendAsync(CancellationToken ct)
    {
        var s = await RequireAsync().ConfigureAwait(true);
        var now = Now;
        if (s.State == CoolingDown)
        {
            throw AccountErrors.CoolingDown(s.CooldownUntil!.Value);
        }
        if (s.State != Connected)
        {
            throw AccountErrors.NotConnected(s.State);
        }
        if (s.NotBefore > now)
        {
            throw AccountErrors.PlatformRateLimited(s.NotBefore.Value);
        }
        var bucket = s.Bucket.Refill(s.Config.RateBudget, now);
        if (bucket.Tokens < 1)
        {
            throw AccountErrors.RateBudgetExhausted(now + bucket.UntilNextToken(s.Config.RateBudget));
        }
        // A budget change alone is not news to watchers: saved, not published.
        await CommitAsync(s with { Bucket = bucket with { Tokens = bucket.Tokens - 1 } }, publish: false).ConfigureAwait(true);
        return new SendGrant(Binding(s), s.SealedCredentials!, s.CredentialGeneration);
    }

    public async Task<GrainException> SendFailedAsync(long credentialGeneration, PlatformFailure failure, CancellationToken ct)
    {
        var s = await RequireAsync().ConfigureAwait(true);
        if (s.CredentialGeneration != credentialGeneration || s.State is not (Connected or TransientDisconnect))
        {
            return Answer(failure, Now); // the account moved on meanwhile: change nothing
        }
        var (next, answer) = Classify(s, failure);
        await CommitAsync(next).ConfigureAwait(true);
        return answer;
    }

    public async Task<string> GetSealedCredentialsAsync(CancellationToken ct)
    {
        var s = await RequireAsync().ConfigureAwait(true);
        return s.SealedCredentials ?? throw AccountErrors.NoCredentials(s.State);
    }

    public async Task<bool> ResealCredentialsAsync(CancellationToken ct)
    {
        if (Live is not { } s)
        {
            return false;
        }
        // The plaintexts exist only inside this call; what is stored is the new sealed strings.
        var credentials = s.SealedCredentials is { } c && vault.NeedsResealing(c) ? vault.Seal(Key, vault.Unseal(Key, c)) : s.SealedCredentials;
        var owner = WebhookSecrets.Sealed(vault, Key, s.Config.Owner);
        if (owner.SealedWebhookSecret is { } w)
        {
            owner = owner with { SealedWebhookSecret = WebhookSecrets.Reseal(vault, Key, w) };
        }
        if (credentials == s.SealedCredentials && owner == s.Config.Owner)
        {
            return false;
        }
        var next = s with { SealedCredentials = credentials, Config = s.Config with { Owner = owner } };
        await CommitAsync(next, publish: false).ConfigureAwait(true);
        if (owner != s.Config.Owner)
        {
            // The outbox keeps its own copy of the sealed secret: it gets the resealed one, so the old key can go.
            await GrainFactory.GetGrain<IOutboxGrain>(Key).AcceptAsync(Target(next), [], ct).ConfigureAwait(true);
        }
        return true;
    }

    public async Task<ConnectorBinding> BeginImportAsync(CancellationToken ct)
    {
        var s = await RequireAsync().ConfigureAwait(true);
        if (s.State == CoolingDown || s.CooldownUntil > Now)
        {
            throw AccountErrors.CoolingDown(s.CooldownUntil!.Value);
        }
        return Binding(s);
    }

    public async Task<AccountView> CompleteImportAsync(string credentials, PlatformFailure? check, CancellationToken ct)
    {
        var s = await RequireAsync().ConfigureAwait(true);
        if (s.State == CoolingDown || s.CooldownUntil > Now)
        {
            throw AccountErrors.CoolingDown(s.CooldownUntil!.Value);
        }
        var now = Now;
        s = Linked(s, credentials, now);
        if (check is null)
        {
            s = Notify(s, WebhookEvents.AccountConnected, new AccountEvent(WebhookEvents.AccountConnected, Key, now, Connected, LinkedAt: now));
        }
        else
        {
            (s, _) = Classify(s, check);
        }
        return await CommitAsync(s).ConfigureAwait(true);
    }

    public async Task<UnlinkResult> UnlinkAsync(CancellationToken ct)
    {
        var s = await RequireAsync().ConfigureAwait(true);
        if (s is { State: Unlinked, SealedCredentials: null })
        {
            return new UnlinkResult(Binding(s), null, View(s));
        }
        var forgotten = s.SealedCredentials;
        var now = Now;
        // A cool-down in progress is kept (as by stop): pairing or importing again must not call the platform before its end.
        s = Forget(WithdrawQr(s)) with
        {
            CooldownUntil = s.CooldownUntil > now ? s.CooldownUntil : null,
            RetryAttempt = 0,
            DisconnectedSince = null,
            DisconnectNoticeSent = false,
            NotBefore = null,
        };
        s = Notify(Enter(s, Unlinked), WebhookEvents.AccountUnlinked, new AccountEvent(WebhookEvents.AccountUnlinked, Key, now, Unlinked));
        // Leaving the live states stops the worker (AfterChange); a late report of it finds another generation.
        var view = await CommitAsync(s).ConfigureAwait(true);
        return new UnlinkResult(Binding(s), forgotten, view);
    }

    public async Task<UnlinkResult> DeleteAsync(CancellationToken ct)
    {
        var s = await RequireAsync().ConfigureAwait(true);
        var result = new UnlinkResult(Binding(s), s.SealedCredentials);
        s = Notify(Enter(Forget(WithdrawQr(s)), Deleted), WebhookEvents.AccountUnlinked, new AccountEvent(WebhookEvents.AccountUnlinked, Key, Now, Unlinked));
        await CommitAsync(s, publish: false).ConfigureAwait(true);
        return result;
    }

    // ---- recovery ----

    public Task EnsureLiveAsync(CancellationToken ct) => Task.CompletedTask; // activating is the point

    public Task ReceiveReminder(string reminderName, TickStatus status) => OnDueAsync(CancellationToken.None);

    // ---- the activation's worker ----

    public async Task<HostView?> GetHostViewAsync(CancellationToken ct) =>
        Live is null ? null : ToHostView(await RequireAsync().ConfigureAwait(true));

    public async Task<int> PairingCodeIssuedAsync(WorkerToken worker, long attempt, string qrContent, DateTimeOffset expiresAt, CancellationToken ct)
    {
        if (await CeremonyAsync(worker, attempt).ConfigureAwait(true) is not { } s)
        {
            throw AccountErrors.InvalidState(Live?.State ?? Unlinked, "relay a QR code for");
        }
        var p = s.Pairing!;
        if (p.Cycle >= p.MaxCycles)
        {
            throw AccountErrors.InvalidState("out of pairing cycles", "relay another QR code for");
        }
        var now = Now;
        var cycle = p.Cycle + 1;
        var seconds = (int)Math.Max(1, Math.Round((expiresAt - now).TotalSeconds));
        var caption = OwnerNotices.Caption(s.Config.DisplayName, s.Config.Platform, seconds, cycle, p.MaxCycles);
        s = s with { Pairing = p with { Cycle = cycle, QrExpiresAt = expiresAt, Scanned = false, QrContent = qrContent, Caption = caption } };
        s = Notify(s, WebhookEvents.PairingQr, new PairingQrEvent(
            WebhookEvents.PairingQr, Key, now, cycle, p.MaxCycles, expiresAt, caption, qrContent, OwnerNotices.QrPngBase64(qrContent)));
        await CommitAsync(s).ConfigureAwait(true);
        return cycle;
    }

    public async Task PairingScannedAsync(WorkerToken worker, long attempt, int cycle, string? numberMatch, CancellationToken ct)
    {
        if (await CeremonyAsync(worker, attempt).ConfigureAwait(true) is not { } s || s.Pairing!.Cycle != cycle || s.Pairing.Scanned)
        {
            return;
        }
        s = s with { Pairing = s.Pairing with { Scanned = true } };
        await CommitAsync(Notify(s, WebhookEvents.PairingScanned,
            new PairingScannedEvent(WebhookEvents.PairingScanned, Key, Now, cycle, numberMatch))).ConfigureAwait(true);
    }

    public async Task PairingConfirmedAsync(WorkerToken worker, long attempt, string credentials, CancellationToken ct)
    {
        if (await CeremonyAsync(worker, attempt).ConfigureAwait(true) is not { } s)
        {
            return;
        }
        var now = Now;
        s = Linked(s, credentials, now);
        await CommitAsync(Notify(s, WebhookEvents.AccountConnected,
            new AccountEvent(WebhookEvents.AccountConnected, Key, now, Connected, LinkedAt: now))).ConfigureAwait(true);
    }

    public async Task PairingTimedOutAsync(WorkerToken worker, long attempt, CancellationToken ct)
    {
        if (await CeremonyAsync(worker, attempt).ConfigureAwait(true) is { } s)
        {
            await CommitAsync(TimeOutPairing(s)).ConfigureAwait(true);
        }
    }

    public async Task<DateTimeOffset?> PairingFailedAsync(WorkerToken worker, long attempt, PlatformFailure failure, CancellationToken ct)
    {
        if (await CeremonyAsync(worker, attempt).ConfigureAwait(true) is not { } s)
        {
            return null;
        }
        var now = Now;
        switch (failure.Class)
        {
            case ErrorClass.Transient or ErrorClass.RateLimited:
                // The ceremony goes on within its wall-clock limit; the worker waits and asks again.
                await CommitAsync(s with { LastError = Error(failure, now) }).ConfigureAwait(true);
                return now + (failure.Class == ErrorClass.RateLimited ? RetryAfter(failure, now) : options.RetryBase);
            default:
                await CommitAsync(Classify(WithdrawQr(s), failure).Next).ConfigureAwait(true);
                return null;
        }
    }

    public async Task HealthyAsync(WorkerToken worker, long credentialGeneration, string? credentials, CancellationToken ct)
    {
        if (await FencedAsync(worker).ConfigureAwait(true) is not { } s
            || s.CredentialGeneration != credentialGeneration || s.SealedCredentials is null)
        {
            return;
        }
        if (credentials is not null)
        {
            s = s with { SealedCredentials = vault.Seal(Key, credentials), CredentialGeneration = s.CredentialGeneration + 1 };
        }
        var now = Now;
        switch (s.State)
        {
            case Connected:
                s = s with { CheckDue = false, CheckAt = now + options.HealthInterval };
                break;
            case TransientDisconnect:
                var told = s.DisconnectNoticeSent;
                s = Enter(Reconnected(s), Connected);
                if (told) // the owner heard it was down, so they hear it is back; otherwise a blip stays silent
                {
                    s = Notify(s, WebhookEvents.AccountConnected, new AccountEvent(WebhookEvents.AccountConnected, Key, now, Connected, LinkedAt: s.LinkedAt));
                }
                break;
            default:
                return;
        }
        await CommitAsync(s).ConfigureAwait(true);
    }

    public async Task HealthFailedAsync(WorkerToken worker, long credentialGeneration, PlatformFailure failure, CancellationToken ct)
    {
        if (await FencedAsync(worker).ConfigureAwait(true) is not { } s
            || s.CredentialGeneration != credentialGeneration || s.State is not (Connected or TransientDisconnect))
        {
            return;
        }
        await CommitAsync(Classify(s, failure).Next).ConfigureAwait(true);
    }

    // ---- time ----

    /// <summary>The due timer and the recovery reminder: overdue transitions, then notices to the outbox.</summary>
    private async Task OnDueAsync(CancellationToken ct)
    {
        if (Live is { } s && CatchUp(s) is var next && !ReferenceEquals(next, s))
        {
            await CommitAsync(next).ConfigureAwait(true);
        }
        if (state.State.Account is { Notices.Count: > 0 })
        {
            await HandOffNoticesAsync(ct).ConfigureAwait(true);
            return;
        }
        // A timer may fire a little early by this clock: when nothing was due yet, it is set again.
        var now = Now;
        ArmDue(NextDue(state.State.Account, now) is { } due ? due - now : null);
    }

    /// <summary>
    /// Hands pending notices to the outbox grain, then drops them here. A crash in between hands them again;
    /// the outbox ignores sequence numbers it has already accepted. A deleted account goes once they are handed.
    /// </summary>
    private async Task HandOffNoticesAsync(CancellationToken ct)
    {
        var s = state.State.Account!;
        var outbox = GrainFactory.GetGrain<IOutboxGrain>(Key);
        try
        {
            await outbox.AcceptAsync(Target(s), s.Notices.ToArray(), ct).ConfigureAwait(true);
        }
        catch (Exception e) when (e is not InconsistentStateException)
        {
            LogHandoffFailed(log, Key, e);
            ArmDue(HandoffRetry);
            return;
        }
        var handed = s.Notices[^1].Seq;
        var current = state.State.Account!;
        var remaining = current.Notices.Where(n => n.Seq > handed).ToArray();
        if (current.State == Deleted && remaining.Length == 0)
        {
            await Directory.RemoveAsync(Key, ct).ConfigureAwait(true);
            await state.DeleteAsync(this).ConfigureAwait(true);
            AfterChange();
            await outbox.RetireAsync(ct).ConfigureAwait(true);
            this.DeactivateOnIdle();
            return;
        }
        await CommitAsync(current with { Notices = remaining }, publish: false).ConfigureAwait(true);
    }

    /// <summary>Applies what time alone causes: the end of a cool-down, the pairing limit, a health check falling due.</summary>
    private LinkedAccountState CatchUp(LinkedAccountState s)
    {
        var now = Now;
        if (s.State == CoolingDown && now >= s.CooldownUntil)
        {
            // Back to work; a health check first tells whether the platform agrees.
            return s.SealedCredentials is null
                ? Enter(s with { CooldownUntil = null }, Unlinked)
                : Enter(s with { CooldownUntil = null }, Connected) with { CheckDue = true, CheckAt = null };
        }
        if (s.State == Pairing && now >= s.Pairing!.Deadline)
        {
            return TimeOutPairing(s);
        }
        if (s.State is Connected or TransientDisconnect && now >= s.CheckAt && !(s.NotBefore > now))
        {
            return s with { CheckDue = true, CheckAt = null, NotBefore = null };
        }
        return s;
    }

    /// <summary>When the due timer must fire next, if at all.</summary>
    private static DateTimeOffset? NextDue(LinkedAccountState? s, DateTimeOffset now) => s switch
    {
        null => null,
        { Notices.Count: > 0 } => now,
        { State: Pairing, Pairing: { } p } => p.Deadline,
        { State: CoolingDown, CooldownUntil: { } until } => until,
        { State: Connected or TransientDisconnect, CheckAt: { } at } => at,
        _ => null,
    };

    // ---- classification ----

    /// <summary>What a platform failure does to a live account, and what the caller who saw it is answered.</summary>
    private (LinkedAccountState Next, GrainException Answer) Classify(LinkedAccountState s, PlatformFailure failure)
    {
        var now = Now;
        var error = Error(failure, now);
        switch (failure.Class)
        {
            case ErrorClass.Auth:
                s = Enter(s with { SealedCredentials = null, CredentialGeneration = s.CredentialGeneration + 1, LinkedAt = null, LastError = error }, BadCredentials);
                s = Notify(s, WebhookEvents.AccountBadCredentials, new AccountEvent(
                    WebhookEvents.AccountBadCredentials, Key, now, BadCredentials, failure.Message, OwnerNotices.RePair(Key)));
                return (s, AccountErrors.BadCredentials(Key));
            case ErrorClass.Cooldown:
                var until = CooldownEnd(failure, now);
                s = Enter(s with { CooldownUntil = until, LastError = error }, CoolingDown);
                s = Notify(s, WebhookEvents.AccountCoolingDown, new AccountEvent(
                    WebhookEvents.AccountCoolingDown, Key, now, CoolingDown, failure.Message, Until: until));
                return (s, AccountErrors.CoolingDown(until));
            case ErrorClass.RateLimited:
                var at = now + RetryAfter(failure, now);
                return (s with { NotBefore = at, CheckAt = at, LastError = error, CheckDue = false }, AccountErrors.PlatformRateLimited(at));
            default:
                var attempt = s.State == TransientDisconnect ? s.RetryAttempt + 1 : 1;
                var since = s.State == TransientDisconnect ? s.DisconnectedSince ?? now : now;
                var retryAt = now + AccountOptions.Backoff(options.RetryBase, options.RetryMax, attempt);
                s = Enter(s with { RetryAttempt = attempt, DisconnectedSince = since, LastError = error }, TransientDisconnect) with { CheckAt = retryAt };
                if (now - since >= options.TransientNoticeAfter && !s.DisconnectNoticeSent)
                {
                    s = Notify(s with { DisconnectNoticeSent = true }, WebhookEvents.AccountDisconnected, new AccountEvent(
                        WebhookEvents.AccountDisconnected, Key, now, TransientDisconnect, failure.Message));
                }
                return (s, AccountErrors.PlatformUnavailable(retryAt));
        }
    }

    /// <summary>The refusal for a failure that changed nothing here.</summary>
    private GrainException Answer(PlatformFailure failure, DateTimeOffset now) => failure.Class switch
    {
        ErrorClass.Auth => AccountErrors.BadCredentials(Key),
        ErrorClass.Cooldown => AccountErrors.CoolingDown(CooldownEnd(failure, now)),
        ErrorClass.RateLimited => AccountErrors.PlatformRateLimited(now + RetryAfter(failure, now)),
        _ => AccountErrors.PlatformUnavailable(now + options.RetryBase),
    };

    private DateTimeOffset CooldownEnd(PlatformFailure failure, DateTimeOffset now) =>
        failure.Until > now ? failure.Until.Value : now + (failure.RetryAfter ?? options.DefaultCooldown);

    private TimeSpan RetryAfter(PlatformFailure failure, DateTimeOffset now) =>
        failure.RetryAfter ?? (failure.Until > now ? failure.Until.Value - now : options.DefaultRetryAfter);

    private static LastError Error(PlatformFailure failure, DateTimeOffset now) =>
        new(failure.Code, PlatformFailure.ClassName(failure.Class), now, failure.Message);

    // ---- transitions' building blocks ----

    /// <summary>Moves to <paramref name="next"/> (nothing if already there); a connected account's first check is an interval away.</summary>
    private LinkedAccountState Enter(LinkedAccountState s, string next) =>
        s.State == next
            ? s
            : s with { State = next, StateSince = Now, CheckDue = false, CheckAt = next == Connected ? Now + options.HealthInterval : null };

    /// <summary>No credentials any more; a report about the old ones finds another generation and is ignored.</summary>
    private static LinkedAccountState Forget(LinkedAccountState s) =>
        s with { SealedCredentials = null, CredentialGeneration = s.CredentialGeneration + 1, LinkedAt = null };

    private static LinkedAccountState Reconnected(LinkedAccountState s) =>
        s with { RetryAttempt = 0, DisconnectedSince = null, DisconnectNoticeSent = false, CooldownUntil = null };

    private LinkedAccountState TimeOutPairing(LinkedAccountState s)
    {
        var p = s.Pairing!;
        s = Enter(s with { Pairing = p with { QrExpiresAt = null, QrContent = null } }, PairingTimedOut);
        return Notify(s, WebhookEvents.PairingTimedOut, new PairingEndedEvent(
            WebhookEvents.PairingTimedOut, Key, Now, p.Cycle, p.MaxCycles, $"ask again with POST /v1/accounts/{Key}/pair"));
    }

    /// <summary>A ceremony that showed the owner a QR code withdraws it when it ends other than by timing out.</summary>
    private LinkedAccountState WithdrawQr(LinkedAccountState s)
    {
        if (s.State != Pairing || s.Pairing is not { Cycle: > 0 } p)
        {
            return s;
        }
        return Notify(s with { Pairing = p with { QrExpiresAt = null, QrContent = null } }, WebhookEvents.PairingWithdrawn,
            new PairingEndedEvent(WebhookEvents.PairingWithdrawn, Key, Now, p.Cycle, p.MaxCycles));
    }

    /// <summary>Queues an owner notice in this transition's write; the due timer hands it to the outbox right after.</summary>
    private LinkedAccountState Notify<T>(LinkedAccountState s, string @event, T body)
    {
        var notice = new WebhookNotice(s.Incarnation, s.NextNoticeSeq, "dlv_" + Secrets.NewHexId(12), @event,
            JsonSerializer.Serialize(body, GrainJson.Options), Now);
        return s with { Notices = [.. s.Notices, notice], NextNoticeSeq = s.NextNoticeSeq + 1 };
    }

    /// <summary>The account after overdue transitions (written if there were any); not_found if there is none.</summary>
    private async Task<LinkedAccountState> RequireAsync()
    {
        var s = Live ?? throw AccountErrors.NotFound(Key);
        var next = CatchUp(s);
        if (!ReferenceEquals(next, s))
        {
            await CommitAsync(next).ConfigureAwait(true);
        }
        return next;
    }

    /// <summary>
    /// The fencing rule: only this activation's worker may report. Any other token belongs to a worker of an older
    /// activation (or of a duplicate): refused, and that worker stops. Null when there is no account.
    /// </summary>
    private async Task<LinkedAccountState?> FencedAsync(WorkerToken worker)
    {
        if (worker != _token)
        {
            LogStaleWorker(log, Key, worker.Silo);
            throw AccountErrors.StaleWorker();
        }
        return Live is null ? null : await RequireAsync().ConfigureAwait(true);
    }

    /// <summary>The account if ceremony <paramref name="attempt"/> is the one running; else null.</summary>
    private async Task<LinkedAccountState?> CeremonyAsync(WorkerToken worker, long attempt) =>
        await FencedAsync(worker).ConfigureAwait(true) is { State: Pairing } s && s.Pairing?.Attempt == attempt ? s : null;

    /// <summary>
    /// The one write of a transition, then what follows from the new state: the census, the live side, the due
    /// timer, the recovery reminder, and (unless <paramref name="publish"/> is false) the event on the stream.
    /// </summary>
    private async Task<AccountView> CommitAsync(LinkedAccountState s, bool publish = true)
    {
        if (s.Config.Owner.LegacyWebhookSecret is not null)
        {
            s = s with { Config = s.Config with { Owner = WebhookSecrets.Sealed(vault, Key, s.Config.Owner) } };
        }
        var version = state.State.Version + 1;
        state.State = new LinkedAccountDocument { Account = s, Version = version };
        await state.PersistAsync(this).ConfigureAwait(true);
        AfterChange();
        var view = View(s);
        if (publish && s.State != Deleted)
        {
            var changed = new LinkedAccountChanged(version, view, CurrentQr(s));
            InBackground(() => PublishAsync(changed));
        }
        return view;
    }

    private async Task PublishAsync(LinkedAccountChanged changed)
    {
        try
        {
            await this.GetStreamProvider(OrleansNames.Streams)
                .GetStream<LinkedAccountChanged>(StreamId.Create(AccountStreams.Namespace, Key))
                .OnNextAsync(changed).ConfigureAwait(true);
        }
        catch (Exception e)
        {
            // Watchers re-read on their own; a lost event delays an update, it does not undo the change.
            LogPublishFailed(log, Key, e);
        }
    }

    /// <summary>
    /// Runs <paramref name="work"/> on this activation after the background work queued before it, without the
    /// caller waiting: the stream and the reminder service may sit on a silo that just died (their grains come back
    /// elsewhere after a while), and no transition of the account may wait for that. Order is kept.
    /// </summary>
    private void InBackground(Func<Task> work) => _background = After(_background, work);

    private static async Task After(Task previous, Func<Task> work)
    {
        await previous.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing | ConfigureAwaitOptions.ContinueOnCapturedContext);
        await work().ConfigureAwait(true);
    }

    private void AfterChange()
    {
        var s = state.State.Account;
        census.Report(ActivationCensus.LinkedAccount, Key, s is { State: not Deleted } ? s.State : null);
        var live = NeedsLive(s);
        if (live && _worker is null)
        {
            StartWorker();
        }
        else if (!live && _worker is not null)
        {
            StopWorker();
        }
        var now = Now;
        ArmDue(NextDue(s, now) is { } due ? due - now : null);
        var needed = live || s is { Notices.Count: > 0 };
        if (_reminder != needed)
        {
            InBackground(() => SyncReminderAsync(needed));
        }
        _worker?.Nudge();
    }

    /// <summary>
    /// Sets the one-shot due timer (none when <paramref name="wait"/> is null): a fresh timer each time, so that
    /// setting it from inside its own callback never depends on how a running timer treats a change.
    /// </summary>
    private void ArmDue(TimeSpan? wait)
    {
        _due?.Dispose();
        _due = wait is { } w
            ? this.RegisterGrainTimer(OnDueAsync, new GrainTimerCreationOptions(w > TimeSpan.Zero ? w : TimeSpan.Zero, Timeout.InfiniteTimeSpan))
            : null;
    }

    /// <summary>States in which the account holds (or is about to hold again) a live platform connection.</summary>
    private static bool NeedsLive(LinkedAccountState? s) => s is { State: Pairing or Connected or TransientDisconnect or CoolingDown };

    private async Task SyncReminderAsync(bool needed)
    {
        if (_reminder == needed)
        {
            return;
        }
        try
        {
            await this.KeepReminderAsync(RecoveryReminder, recovery.ReminderPeriod, needed).ConfigureAwait(true);
            _reminder = needed;
        }
        catch (Exception e) when (e is not InconsistentStateException)
        {
            // Tried again after the next change; meanwhile the timers of this activation do the work.
            LogReminderFailed(log, Key, e);
        }
    }

    private void StartWorker()
    {
        _workerStop = new CancellationTokenSource();
        _worker = new AccountWorker(Key, _token, GrainFactory, connectors, vault, options, time, log);
        var worker = _worker;
        var stop = _workerStop.Token;
        // Outside the grain's scheduler: platform I/O never runs inside a turn, and the worker calls in like anyone else.
        _ = Task.Run(() => worker.RunAsync(stop), CancellationToken.None);
        _keepAlive = this.RegisterGrainTimer(static _ => Task.CompletedTask,
            new GrainTimerCreationOptions(KeepAliveTick, KeepAliveTick) { KeepAlive = true, Interleave = true });
        LogHolding(log, Key, _token.Silo);
    }

    private void StopWorker()
    {
        _workerStop?.Cancel();
        _workerStop?.Dispose();
        _workerStop = null;
        _worker = null;
        _keepAlive?.Dispose();
        _keepAlive = null;
    }

    // ---- views ----

    private IAccountDirectoryGrain Directory => GrainFactory.GetGrain<IAccountDirectoryGrain>(AccountStreams.Directory);

    private AccountView View(LinkedAccountState s)
    {
        var c = s.Config;
        return new AccountView(
            Key,
            c.Platform,
            c.DisplayName,
            s.State,
            s.StateSince,
            s.Pairing is { } p && s.State is Pairing or PairingTimedOut ? new PairingView(p.Cycle, p.MaxCycles, s.State == Pairing ? p.QrExpiresAt : null) : null,
            s.State == CoolingDown ? s.CooldownUntil : null,
            s.LastError is { } e ? new LastErrorView(e.Code, e.Class, e.At, e.Message) : null,
            new RateBudgetView((int)Math.Floor(s.Bucket.Refill(c.RateBudget, Now).Tokens), c.RateBudget.Capacity, c.RateBudget.RefillPerMinute),
            s.LinkedAt,
            NeedsLive(s) ? _token.Silo : null,
            new OwnerView(c.Owner.WebhookUrl),
            state.State.Version);
    }

    private OwnerQr? CurrentQr(LinkedAccountState s) =>
        s is { State: Pairing, Pairing: { QrExpiresAt: { } expiresAt, QrContent: { } content } p } && expiresAt > Now
            ? new OwnerQr(p.Cycle, p.MaxCycles, expiresAt, p.Caption ?? "", content)
            : null;

    private HostView ToHostView(LinkedAccountState s) => new(
        s.State,
        _token,
        Binding(s),
        s.SealedCredentials,
        s.CredentialGeneration,
        s is { State: Pairing, Pairing: { } p } ? new PairingTask(p.Attempt, p.Cycle, p.MaxCycles, p.QrTtlSeconds, p.Deadline, p.Scanned) : null,
        s.CheckDue,
        s.NotBefore);

    /// <summary>New credentials took (a confirmed pairing or an accepted import): sealed, and the account connected.</summary>
    private LinkedAccountState Linked(LinkedAccountState s, string credentials, DateTimeOffset now) =>
        Enter(Reconnected(WithdrawQr(s) with
        {
            SealedCredentials = vault.Seal(Key, credentials),
            CredentialGeneration = s.CredentialGeneration + 1,
            LinkedAt = now,
            LastError = null,
            NotBefore = null,
        }), Connected);

    private ConnectorBinding Binding(LinkedAccountState s) => new(Key, s.Config.Platform, s.Config.DisplayName, s.Config.Connector);

    /// <summary>The outbox's copy of the owner's channel: the secret as stored, sealed (a legacy one is sealed by every write).</summary>
    private static WebhookTarget Target(LinkedAccountState s) =>
        new(s.Config.Owner.WebhookUrl, s.Config.Owner.SealedWebhookSecret, s.Config.Owner.LegacyWebhookSecret);

    [LoggerMessage(LogLevel.Information, "Account {Account}: this activation on {Silo} holds the live connection")]
    private static partial void LogHolding(ILogger log, string account, string silo);

    [LoggerMessage(LogLevel.Warning, "Account {Account}: refused a report from a worker on {Silo} that is not the current activation's")]
    private static partial void LogStaleWorker(ILogger log, string account, string silo);

    [LoggerMessage(LogLevel.Warning, "Account {Account}: handing notices to the outbox failed; retrying")]
    private static partial void LogHandoffFailed(ILogger log, string account, Exception e);

    [LoggerMessage(LogLevel.Warning, "Account {Account}: publishing the state change failed")]
    private static partial void LogPublishFailed(ILogger log, string account, Exception e);

    [LoggerMessage(LogLevel.Warning, "Account {Account}: the recovery reminder could not be updated")]
    private static partial void LogReminderFailed(ILogger log, string account, Exception e);
}
