using System.Text.Json;
using QrOrleans.Accounts;
using QrOrleans.Runtime;
using static QrOrleans.Accounts.AccountStates;

namespace QrOrleans.Grains.Accounts;

/// <summary>One pairing ceremony: which code of how many, until when, and the wall-clock limit.</summary>
public sealed record PairingRun(
    long Attempt, int Cycle, int MaxCycles, int QrTtlSeconds, DateTimeOffset? QrExpiresAt, DateTimeOffset Deadline, bool Scanned);

public sealed record LastError(string Code, string Class, DateTimeOffset At, string? Message);

/// <summary>The per-account rate budget: refilled continuously, one token per send.</summary>
public sealed record TokenBucket(double Tokens, DateTimeOffset UpdatedAt)
{
    public TokenBucket Refill(RateBudgetConfig budget, DateTimeOffset now) =>
        now <= UpdatedAt
            ? this
            : new TokenBucket(Math.Min(budget.Capacity, Tokens + (now - UpdatedAt).TotalMinutes * budget.RefillPerMinute), now);

    public TimeSpan UntilNextToken(RateBudgetConfig budget) =>
        Tokens >= 1 ? TimeSpan.Zero : TimeSpan.FromMinutes((1 - Tokens) / budget.RefillPerMinute);
}

/// <summary>
/// Persisted state of a linked account. Credentials are only ever the vault's sealed string. <see cref="Notices"/>
/// are owner notices made by transitions and not yet handed to the outbox grain (the "handoff" reminder does it).
/// </summary>
public sealed record LinkedAccountState
{
    public required string State { get; init; }
    public required DateTimeOffset StateSince { get; init; }
    public required AccountConfig Config { get; init; }

    /// <summary>Identifies this life of the account; notice sequence numbers count within it.</summary>
    public required string Incarnation { get; init; }

    public required TokenBucket Bucket { get; init; }
    public string? SealedCredentials { get; init; }

    /// <summary>Bumped whenever the credentials change, so a late report about older credentials is ignored.</summary>
    public long CredentialGeneration { get; init; }

    public DateTimeOffset? LinkedAt { get; init; }
    public PairingRun? Pairing { get; init; }
    public long PairingAttempts { get; init; }
    public DateTimeOffset? CooldownUntil { get; init; }

    /// <summary>The platform rate-limited the account: no calls before this.</summary>
    public DateTimeOffset? NotBefore { get; init; }

    public LastError? LastError { get; init; }
    public bool CheckDue { get; init; }
    public int RetryAttempt { get; init; }
    public DateTimeOffset? DisconnectedSince { get; init; }
    public bool DisconnectNoticeSent { get; init; }

    /// <summary>The highest lease epoch that wrote here, and its holder (null once it let go).</summary>
    public long Epoch { get; init; }

    public string? Holder { get; init; }
    public IReadOnlyList<WebhookNotice> Notices { get; init; } = [];
    public long NextNoticeSeq { get; init; } = 1;
}

/// <summary>
/// A linked account: unlinked → pairing → connected, with pairing_timed_out, transient_disconnect,
/// cooling_down, bad_credentials and stopped. One method per transition, each checking the state it may start
/// from. Time lives in durable reminders (pairing limit, health interval, backoff retry, cool-down end); I/O
/// lives with the lease holder, which learns what is due from the state (<see cref="HostView.CheckDue"/>) and
/// whose writes carry its lease epoch. Owner notices are made in the same turn as the change they report.
/// </summary>
public sealed class LinkedAccountGrain(
    GrainId id, IGrainRuntime runtime, IGrainFactory grains, ICredentialVault vault, AccountOptions options)
    : Grain<LinkedAccountState>(id, runtime), ILinkedAccountGrain, IRemindable
{
    /// <summary>The state of an account that was deleted but still has notices to hand to its outbox.</summary>
    private const string Deleted = "deleted";

    private const string HealthReminder = "health";
    private const string RetryReminder = "retry";
    private const string CooldownReminder = "cooldown";
    private const string PairingDeadlineReminder = "pairing-deadline";
    private const string HandoffReminder = "handoff";

    private static readonly string[] StateReminders = [HealthReminder, RetryReminder, CooldownReminder, PairingDeadlineReminder];

    // ---- operator ----

    public Task<AccountConfigured> ConfigureAsync(AccountSettings settings, CancellationToken ct) =>
        Transition<AccountConfigured>(turn =>
        {
            if (turn.State is not { State: not Deleted } existing)
            {
                var tombstone = turn.State;
                if (settings.Platform is null || settings.WebhookUrl is null || settings.WebhookSecret is null)
                {
                    return AccountErrors.Validation("platform, owner.webhookUrl and owner.webhookSecret are required to create an account.");
                }
                var budget = settings.RateBudget ?? AccountDefaults.RateBudget;
                var created = new LinkedAccountState
                {
                    State = Unlinked,
                    StateSince = turn.Now,
                    Config = new AccountConfig(settings.Platform, settings.DisplayName ?? Id.Key,
                        new OwnerConfig(settings.WebhookUrl, settings.WebhookSecret), budget, settings.Pairing ?? AccountDefaults.Pairing, settings.Connector),
                    Bucket = new TokenBucket(budget.Capacity, turn.Now),
                    // A re-created account keeps the notices its deleted self has not handed off yet, and the epoch.
                    Incarnation = tombstone?.Incarnation ?? Secrets.NewHexId(8),
                    Notices = tombstone?.Notices ?? [],
                    NextNoticeSeq = tombstone?.NextNoticeSeq ?? 1,
                    Epoch = tombstone?.Epoch ?? 0,
                };
                return new AccountConfigured(Commit(turn, created), true, Target(created));
            }
            var platform = settings.Platform ?? existing.Config.Platform;
            if (platform != existing.Config.Platform && (existing.SealedCredentials is not null || existing.State == Pairing))
            {
                return AccountErrors.InvalidState(existing.State, $"move to platform '{platform}' (delete it first)");
            }
            var old = existing.Config;
            var config = old with
            {
                Platform = platform,
                DisplayName = settings.DisplayName ?? old.DisplayName,
                Owner = new OwnerConfig(settings.WebhookUrl ?? old.Owner.WebhookUrl, settings.WebhookSecret ?? old.Owner.WebhookSecret),
                RateBudget = settings.RateBudget ?? old.RateBudget,
                Pairing = settings.Pairing ?? old.Pairing,
                Connector = settings.Connector ?? (platform == old.Platform ? old.Connector : null),
            };
            var bucket = existing.Bucket.Refill(old.RateBudget, turn.Now);
            var s = existing with { Config = config, Bucket = bucket with { Tokens = Math.Min(bucket.Tokens, config.RateBudget.Capacity) } };
            return new AccountConfigured(Commit(turn, s), false, Target(s));
        }, ct);

    public async Task<AccountView?> GetAsync(CancellationToken ct) =>
        await ReadAsync(ct).ConfigureAwait(false) is { State.State: not Deleted } r ? View(r.State, r.Version, Runtime.Time.GetUtcNow()) : null;

    public Task<AccountView> RequestPairingAsync(CancellationToken ct) =>
        Transition<AccountView>(turn =>
        {
            var s = CatchUp(turn, Require(turn));
            switch (s.State)
            {
                case Pairing:
                    return Commit(turn, s); // already running: asking again changes nothing
                case CoolingDown:
                    return AccountErrors.CoolingDown(s.CooldownUntil!.Value);
                case Connected or TransientDisconnect:
                    return AccountErrors.InvalidState(s.State, "pair (delete it first to link it anew)");
            }
            var p = s.Config.Pairing;
            var attempt = s.PairingAttempts + 1;
            var deadline = turn.Now + TimeSpan.FromSeconds((double)p.MaxCycles * p.QrTtlSeconds) + options.PairingSlack;
            var run = new PairingRun(attempt, 0, p.MaxCycles, p.QrTtlSeconds, null, deadline, false);
            return Commit(turn, Enter(turn, s with { Pairing = run, PairingAttempts = attempt, LastError = null }, Pairing));
        }, ct);

    public Task<AccountView> StopAsync(CancellationToken ct) =>
        Transition<AccountView>(turn =>
        {
            var s = Require(turn);
            if (s.State == Stopped)
            {
                return View(s, turn.Version, turn.Now);
            }
            // A cool-down in progress is kept: starting again must not call the platform before its end.
            s = WithdrawQr(turn, s);
            return Commit(turn, Enter(turn, s with { CooldownUntil = s.State == CoolingDown ? s.CooldownUntil : null }, Stopped));
        }, ct);

    public Task<AccountView> StartAsync(CancellationToken ct) =>
        Transition<AccountView>(turn =>
        {
            var s = Require(turn);
            if (s.State != Stopped)
            {
                return AccountErrors.InvalidState(s.State, "start");
            }
            if (s.CooldownUntil > turn.Now)
            {
                return Commit(turn, Enter(turn, s, CoolingDown));
            }
            s = s with { CooldownUntil = null };
            return Commit(turn, s.SealedCredentials is null ? Enter(turn, s, Unlinked) : Enter(turn, s, Connected) with { CheckDue = true });
        }, ct);

    public Task<SendGrant> BeginSendAsync(CancellationToken ct) =>
        Transition<SendGrant>(turn =>
        {
            var s = CatchUp(turn, Require(turn));
            if (s.State == CoolingDown)
            {
                return AccountErrors.CoolingDown(s.CooldownUntil!.Value);
            }
            if (s.State != Connected)
            {
                return AccountErrors.NotConnected(s.State);
            }
            if (s.NotBefore > turn.Now)
            {
                return AccountErrors.PlatformRateLimited(s.NotBefore.Value);
            }
            var bucket = s.Bucket.Refill(s.Config.RateBudget, turn.Now);
            if (bucket.Tokens < 1)
            {
                return AccountErrors.RateBudgetExhausted(turn.Now + bucket.UntilNextToken(s.Config.RateBudget));
            }
            // A budget change alone is not news to watchers: saved, not published.
            turn.State = s with { Bucket = bucket with { Tokens = bucket.Tokens - 1 } };
            return new SendGrant(Binding(s), s.SealedCredentials!, s.CredentialGeneration);
        }, ct);

    public Task<GrainException> SendFailedAsync(long credentialGeneration, PlatformFailure failure, CancellationToken ct) =>
        Transition<GrainException>(turn =>
        {
            var s = Require(turn);
            if (s.CredentialGeneration != credentialGeneration || s.State is not (Connected or TransientDisconnect))
            {
                return new Outcome<GrainException>(Answer(failure, turn.Now), null); // the account moved on meanwhile: change nothing
            }
            var (next, answer) = Classify(turn, s, failure);
            Commit(turn, next);
            return new Outcome<GrainException>(answer, null);
        }, ct);

    public async Task<string> GetSealedCredentialsAsync(CancellationToken ct)
    {
        var s = await RequireReadAsync(ct).ConfigureAwait(false);
        return s.SealedCredentials ?? throw AccountErrors.NoCredentials(s.State);
    }

    public Task<bool> ResealCredentialsAsync(CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            if (turn.State is not { SealedCredentials: { } sealedValue } s || !vault.NeedsResealing(sealedValue))
            {
                return false;
            }
            // The plaintext exists only inside this turn; what is stored is the new sealed string.
            turn.State = s with { SealedCredentials = vault.Seal(Id.Key, vault.Unseal(Id.Key, sealedValue)) };
            return true;
        }, ct);

    public async Task<ConnectorBinding> BeginImportAsync(CancellationToken ct)
    {
        var s = await RequireReadAsync(ct).ConfigureAwait(false);
        if (s.State == CoolingDown && s.CooldownUntil > Runtime.Time.GetUtcNow())
        {
            throw AccountErrors.CoolingDown(s.CooldownUntil.Value);
        }
        return Binding(s);
    }

    public Task<AccountView> CompleteImportAsync(string credentials, PlatformFailure? check, CancellationToken ct) =>
        Transition<AccountView>(turn =>
        {
            var s = CatchUp(turn, Require(turn));
            if (s.State == CoolingDown)
            {
                return AccountErrors.CoolingDown(s.CooldownUntil!.Value);
            }
            s = WithdrawQr(turn, s) with
            {
                SealedCredentials = vault.Seal(Id.Key, credentials),
                CredentialGeneration = s.CredentialGeneration + 1,
                LinkedAt = turn.Now,
                LastError = null,
                NotBefore = null,
            };
            s = Enter(turn, Reconnected(s), Connected);
            if (check is null)
            {
                s = Notify(turn, s, WebhookEvents.AccountConnected, new AccountEvent(WebhookEvents.AccountConnected, Id.Key, turn.Now, Connected, LinkedAt: turn.Now));
            }
            else
            {
                (s, _) = Classify(turn, s, check);
            }
            return Commit(turn, s);
        }, ct);

    public Task<UnlinkResult> UnlinkAsync(CancellationToken ct) =>
        Transition<UnlinkResult>(turn =>
        {
            var s = Require(turn);
            var result = new UnlinkResult(Binding(s), s.SealedCredentials);
            s = WithdrawQr(turn, s) with { SealedCredentials = null, CredentialGeneration = s.CredentialGeneration + 1, LinkedAt = null, CheckDue = false };
            s = Notify(turn, Enter(turn, s, Deleted), WebhookEvents.AccountUnlinked,
                new AccountEvent(WebhookEvents.AccountUnlinked, Id.Key, turn.Now, Unlinked));
            Commit(turn, s);
            return result;
        }, ct);

    // ---- lease holder ----

    public Task<HostView?> AttachAsync(LeaseToken lease, CancellationToken ct) =>
        Transition<HostView?>(turn =>
        {
            if (Fenced(turn, lease) is not { } s)
            {
                return (HostView?)null;
            }
            // A new holder checks a connected account's session at once instead of at the next interval.
            s = s.State == Connected ? s with { CheckDue = true } : s;
            Commit(turn, s);
            return ToHostView(s);
        }, ct);

    public Task DetachAsync(LeaseToken lease, CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            if (turn.State is { State: not Deleted } s && s.Epoch == lease.Epoch && s.Holder == lease.Holder)
            {
                Commit(turn, s with { Holder = null });
            }
            return true;
        }, ct);

    public async Task<HostView?> GetHostViewAsync(CancellationToken ct) =>
        await ReadAsync(ct).ConfigureAwait(false) is { State.State: not Deleted } r ? ToHostView(r.State) : null;

    public Task<int> PairingCodeIssuedAsync(LeaseToken lease, long attempt, string qrContent, DateTimeOffset expiresAt, CancellationToken ct) =>
        Transition<int>(turn =>
        {
            if (Ceremony(turn, lease, attempt) is not { } s)
            {
                return AccountErrors.InvalidState(turn.State?.State ?? Unlinked, "relay a QR code for");
            }
            var p = s.Pairing!;
            if (p.Cycle >= p.MaxCycles)
            {
                Save(turn, s);
                return AccountErrors.InvalidState("out of pairing cycles", "relay another QR code for");
            }
            var cycle = p.Cycle + 1;
            s = s with { Pairing = p with { Cycle = cycle, QrExpiresAt = expiresAt, Scanned = false } };
            var seconds = (int)Math.Max(1, Math.Round((expiresAt - turn.Now).TotalSeconds));
            var caption = OwnerNotices.Caption(s.Config.DisplayName, s.Config.Platform, seconds, cycle, p.MaxCycles);
            s = Notify(turn, s, WebhookEvents.PairingQr, new PairingQrEvent(
                WebhookEvents.PairingQr, Id.Key, turn.Now, cycle, p.MaxCycles, expiresAt, caption, qrContent, OwnerNotices.QrPngBase64(qrContent)));
            Commit(turn, s);
            return cycle;
        }, ct);

    public Task PairingScannedAsync(LeaseToken lease, long attempt, int cycle, string? numberMatch, CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            if (Ceremony(turn, lease, attempt) is not { } s)
            {
                return false;
            }
            if (s.Pairing!.Cycle != cycle || s.Pairing.Scanned)
            {
                Save(turn, s);
                return false;
            }
            s = s with { Pairing = s.Pairing with { Scanned = true } };
            Commit(turn, Notify(turn, s, WebhookEvents.PairingScanned,
                new PairingScannedEvent(WebhookEvents.PairingScanned, Id.Key, turn.Now, cycle, numberMatch)));
            return true;
        }, ct);

    public Task PairingConfirmedAsync(LeaseToken lease, long attempt, string credentials, CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            if (Ceremony(turn, lease, attempt) is not { } s)
            {
                return false;
            }
            s = WithdrawQr(turn, s) with
            {
                SealedCredentials = vault.Seal(Id.Key, credentials),
                CredentialGeneration = s.CredentialGeneration + 1,
                LinkedAt = turn.Now,
                LastError = null,
                NotBefore = null,
            };
            s = Enter(turn, Reconnected(s), Connected);
            Commit(turn, Notify(turn, s, WebhookEvents.AccountConnected,
                new AccountEvent(WebhookEvents.AccountConnected, Id.Key, turn.Now, Connected, LinkedAt: turn.Now)));
            return true;
        }, ct);

    public Task PairingTimedOutAsync(LeaseToken lease, long attempt, CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            if (Ceremony(turn, lease, attempt) is not { } s)
            {
                return false;
            }
            Commit(turn, TimeOutPairing(turn, s));
            return true;
        }, ct);

    public Task<DateTimeOffset?> PairingFailedAsync(LeaseToken lease, long attempt, PlatformFailure failure, CancellationToken ct) =>
        Transition<DateTimeOffset?>(turn =>
        {
            if (Ceremony(turn, lease, attempt) is not { } s)
            {
                return (DateTimeOffset?)null;
            }
            var error = Error(failure, turn.Now);
            switch (failure.Class)
            {
                case ErrorClass.Transient or ErrorClass.RateLimited:
                    // The ceremony goes on within its wall-clock limit; the holder waits and asks again.
                    Commit(turn, s with { LastError = error });
                    return turn.Now + (failure.Class == ErrorClass.RateLimited ? RetryAfter(failure, turn.Now) : options.RetryBase);
                default:
                    var (next, _) = Classify(turn, WithdrawQr(turn, s), failure);
                    Commit(turn, next);
                    return (DateTimeOffset?)null;
            }
        }, ct);

    public Task HealthyAsync(LeaseToken lease, long credentialGeneration, string? credentials, CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            if (Fenced(turn, lease) is not { } s)
            {
                return false;
            }
            if (s.CredentialGeneration != credentialGeneration || s.SealedCredentials is null)
            {
                Save(turn, s);
                return false;
            }
            if (credentials is not null)
            {
                s = s with { SealedCredentials = vault.Seal(Id.Key, credentials), CredentialGeneration = s.CredentialGeneration + 1 };
            }
            switch (s.State)
            {
                case Connected:
                    s = s with { CheckDue = false };
                    break;
                case TransientDisconnect:
                    var told = s.DisconnectNoticeSent;
                    s = Enter(turn, Reconnected(s), Connected);
                    if (told) // the owner heard it was down, so they hear it is back; otherwise a blip stays silent
                    {
                        s = Notify(turn, s, WebhookEvents.AccountConnected,
                            new AccountEvent(WebhookEvents.AccountConnected, Id.Key, turn.Now, Connected, LinkedAt: s.LinkedAt));
                    }
                    break;
            }
            Commit(turn, s);
            return true;
        }, ct);

    public Task HealthFailedAsync(LeaseToken lease, long credentialGeneration, PlatformFailure failure, CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            if (Fenced(turn, lease) is not { } s)
            {
                return false;
            }
            if (s.CredentialGeneration != credentialGeneration || s.State is not (Connected or TransientDisconnect))
            {
                Save(turn, s);
                return false;
            }
            Commit(turn, Classify(turn, s, failure).Next);
            return true;
        }, ct);

    // ---- time ----

    public async Task ReceiveReminderAsync(string name, DateTimeOffset dueAt, CancellationToken ct)
    {
        if (name == HandoffReminder)
        {
            await HandOffNoticesAsync(ct).ConfigureAwait(false);
            return;
        }
        await Transition<bool>(turn =>
        {
            if (turn.State is not { State: not Deleted } s)
            {
                return false;
            }
            var next = CatchUp(turn, s);
            next = name switch
            {
                HealthReminder when next.State == Connected => next with { CheckDue = true },
                RetryReminder when next.State is Connected or TransientDisconnect && !(next.NotBefore > turn.Now) =>
                    next with { CheckDue = true, NotBefore = null },
                _ => next,
            };
            if (!ReferenceEquals(next, s))
            {
                Commit(turn, next);
            }
            return true;
        }, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Hands pending notices to the outbox grain, then drops them here. A crash in between hands them again;
    /// the outbox ignores sequence numbers it has already accepted.
    /// </summary>
    private async Task HandOffNoticesAsync(CancellationToken ct)
    {
        if (await ReadAsync(ct).ConfigureAwait(false) is not { } read)
        {
            return;
        }
        var outbox = grains.GetGrain<IOutboxGrain>(Id.Key);
        var notices = read.State.Notices;
        if (notices.Count > 0)
        {
            await outbox.AcceptAsync(Target(read.State), notices, ct).ConfigureAwait(false);
        }
        var handed = notices.Count > 0 ? notices[^1].Seq : 0;
        var gone = await Transition<bool>(turn =>
        {
            if (turn.State is not { } s)
            {
                return false;
            }
            var remaining = s.Notices.Where(n => n.Seq > handed).ToArray();
            if (s.State == Deleted && remaining.Length == 0)
            {
                turn.State = null;
                return true;
            }
            if (remaining.Length != s.Notices.Count)
            {
                turn.State = s with { Notices = remaining };
            }
            return false;
        }, ct).ConfigureAwait(false);
        if (gone)
        {
            await outbox.RetireAsync(ct).ConfigureAwait(false);
        }
    }

    /// <summary>Applies what time alone causes (a reminder may be late): the end of a cool-down, the pairing limit.</summary>
    private LinkedAccountState CatchUp(Turn<LinkedAccountState> turn, LinkedAccountState s)
    {
        if (s.State == CoolingDown && turn.Now >= s.CooldownUntil)
        {
            // Back to work; a health check first tells whether the platform agrees.
            return s.SealedCredentials is null
                ? Enter(turn, s with { CooldownUntil = null }, Unlinked)
                : Enter(turn, s with { CooldownUntil = null }, Connected) with { CheckDue = true };
        }
        if (s.State == Pairing && turn.Now >= s.Pairing!.Deadline)
        {
            return TimeOutPairing(turn, s);
        }
        return s;
    }

    // ---- classification ----

    /// <summary>What a platform failure does to a live account, and what the caller who saw it is answered.</summary>
    private (LinkedAccountState Next, GrainException Answer) Classify(Turn<LinkedAccountState> turn, LinkedAccountState s, PlatformFailure failure)
    {
        var now = turn.Now;
        var error = Error(failure, now);
        switch (failure.Class)
        {
            case ErrorClass.Auth:
                s = Enter(turn, s with { SealedCredentials = null, CredentialGeneration = s.CredentialGeneration + 1, LinkedAt = null, LastError = error }, BadCredentials);
                s = Notify(turn, s, WebhookEvents.AccountBadCredentials, new AccountEvent(
                    WebhookEvents.AccountBadCredentials, Id.Key, now, BadCredentials, failure.Message, OwnerNotices.RePair(Id.Key)));
                return (s, AccountErrors.BadCredentials(Id.Key));
            case ErrorClass.Cooldown:
                var until = CooldownEnd(failure, now);
                s = Enter(turn, s with { CooldownUntil = until, LastError = error }, CoolingDown);
                s = Notify(turn, s, WebhookEvents.AccountCoolingDown, new AccountEvent(
                    WebhookEvents.AccountCoolingDown, Id.Key, now, CoolingDown, failure.Message, Until: until));
                return (s, AccountErrors.CoolingDown(until));
            case ErrorClass.RateLimited:
                var at = now + RetryAfter(failure, now);
                turn.SetReminder(RetryReminder, at);
                return (s with { NotBefore = at, LastError = error, CheckDue = false }, AccountErrors.PlatformRateLimited(at));
            default:
                var attempt = s.State == TransientDisconnect ? s.RetryAttempt + 1 : 1;
                var since = s.State == TransientDisconnect ? s.DisconnectedSince ?? now : now;
                var retryAt = now + AccountOptions.Backoff(options.RetryBase, options.RetryMax, attempt);
                s = Enter(turn, s with { RetryAttempt = attempt, DisconnectedSince = since, LastError = error }, TransientDisconnect);
                turn.SetReminder(RetryReminder, retryAt);
                if (now - since >= options.TransientNoticeAfter && !s.DisconnectNoticeSent)
                {
                    s = Notify(turn, s with { DisconnectNoticeSent = true }, WebhookEvents.AccountDisconnected, new AccountEvent(
                        WebhookEvents.AccountDisconnected, Id.Key, now, TransientDisconnect, failure.Message));
                }
                return (s, AccountErrors.PlatformUnavailable(retryAt));
        }
    }

    /// <summary>The refusal for a failure that changed nothing here.</summary>
    private GrainException Answer(PlatformFailure failure, DateTimeOffset now) => failure.Class switch
    {
        ErrorClass.Auth => AccountErrors.BadCredentials(Id.Key),
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

    // ---- helpers ----

    /// <summary>
    /// Moves to <paramref name="state"/> (nothing if already there): the old state's reminders go, the new
    /// state's come (connected: the health interval; pairing: its wall-clock limit; cooling down: its end).
    /// </summary>
    private LinkedAccountState Enter(Turn<LinkedAccountState> turn, LinkedAccountState s, string state)
    {
        if (s.State == state)
        {
            return s;
        }
        foreach (var name in StateReminders)
        {
            turn.ClearReminder(name);
        }
        switch (state)
        {
            case Connected:
                turn.SetReminder(HealthReminder, turn.Now + options.HealthInterval, options.HealthInterval);
                break;
            case Pairing:
                turn.SetReminder(PairingDeadlineReminder, s.Pairing!.Deadline);
                break;
            case CoolingDown:
                turn.SetReminder(CooldownReminder, s.CooldownUntil!.Value);
                break;
        }
        return s with { State = state, StateSince = turn.Now, CheckDue = false };
    }

    private static LinkedAccountState Reconnected(LinkedAccountState s) =>
        s with { RetryAttempt = 0, DisconnectedSince = null, DisconnectNoticeSent = false, CooldownUntil = null };

    private LinkedAccountState TimeOutPairing(Turn<LinkedAccountState> turn, LinkedAccountState s)
    {
        var p = s.Pairing!;
        s = Enter(turn, s with { Pairing = p with { QrExpiresAt = null } }, PairingTimedOut);
        return Notify(turn, s, WebhookEvents.PairingTimedOut, new PairingEndedEvent(
            WebhookEvents.PairingTimedOut, Id.Key, turn.Now, p.Cycle, p.MaxCycles, $"ask again with POST /v1/accounts/{Id.Key}/pair"));
    }

    /// <summary>A ceremony that showed the owner a QR code withdraws it when it ends other than by timing out.</summary>
    private LinkedAccountState WithdrawQr(Turn<LinkedAccountState> turn, LinkedAccountState s)
    {
        if (s.State != Pairing || s.Pairing is not { Cycle: > 0 } p)
        {
            return s;
        }
        return Notify(turn, s with { Pairing = p with { QrExpiresAt = null } }, WebhookEvents.PairingWithdrawn,
            new PairingEndedEvent(WebhookEvents.PairingWithdrawn, Id.Key, turn.Now, p.Cycle, p.MaxCycles));
    }

    /// <summary>Queues an owner notice in this turn; the handoff reminder takes it to the outbox.</summary>
    private static LinkedAccountState Notify<T>(Turn<LinkedAccountState> turn, LinkedAccountState s, string @event, T body)
    {
        var notice = new WebhookNotice(s.Incarnation, s.NextNoticeSeq, "dlv_" + Secrets.NewHexId(12), @event,
            JsonSerializer.Serialize(body, Json), turn.Now);
        turn.SetReminder(HandoffReminder, turn.Now);
        return s with { Notices = [.. s.Notices, notice], NextNoticeSeq = s.NextNoticeSeq + 1 };
    }

    private LinkedAccountState Require(Turn<LinkedAccountState> turn) =>
        turn.State is { State: not Deleted } s ? s : throw AccountErrors.NotFound(Id.Key);

    private async Task<LinkedAccountState> RequireReadAsync(CancellationToken ct) =>
        await ReadAsync(ct).ConfigureAwait(false) is { State.State: not Deleted } r ? r.State : throw AccountErrors.NotFound(Id.Key);

    /// <summary>
    /// The fencing rule: a lease holder's write is refused if a newer epoch has written; a newer epoch is
    /// recorded (with its holder) by the write that brings it. Null when there is no account.
    /// </summary>
    private static LinkedAccountState? Fenced(Turn<LinkedAccountState> turn, LeaseToken lease)
    {
        if (turn.State is not { State: not Deleted } s)
        {
            return null;
        }
        if (lease.Epoch < s.Epoch)
        {
            throw AccountErrors.StaleEpoch(lease.Epoch, s.Epoch);
        }
        return lease.Epoch > s.Epoch || s.Holder != lease.Holder ? s with { Epoch = lease.Epoch, Holder = lease.Holder } : s;
    }

    /// <summary>The fenced state if ceremony <paramref name="attempt"/> is the one running; else null (after saving the epoch).</summary>
    private static LinkedAccountState? Ceremony(Turn<LinkedAccountState> turn, LeaseToken lease, long attempt)
    {
        if (Fenced(turn, lease) is not { } s)
        {
            return null;
        }
        if (s.State == Pairing && s.Pairing?.Attempt == attempt)
        {
            return s;
        }
        Save(turn, s);
        return null;
    }

    /// <summary>Saves a change watchers need not hear of (a newer epoch).</summary>
    private static void Save(Turn<LinkedAccountState> turn, LinkedAccountState s)
    {
        if (!ReferenceEquals(s, turn.State))
        {
            turn.State = s;
        }
    }

    private AccountView Commit(Turn<LinkedAccountState> turn, LinkedAccountState s)
    {
        turn.State = s;
        var view = View(s, turn.NextVersion, turn.Now);
        turn.Publish(view, Json);
        return view;
    }

    private AccountView View(LinkedAccountState s, long version, DateTimeOffset now)
    {
        var c = s.Config;
        return new AccountView(
            Id.Key,
            c.Platform,
            c.DisplayName,
            s.State,
            s.StateSince,
            s.Pairing is { } p && s.State is Pairing or PairingTimedOut ? new PairingView(p.Cycle, p.MaxCycles, s.State == Pairing ? p.QrExpiresAt : null) : null,
            s.State == CoolingDown ? s.CooldownUntil : null,
            s.LastError is { } e ? new LastErrorView(e.Code, e.Class, e.At, e.Message) : null,
            new RateBudgetView((int)Math.Floor(s.Bucket.Refill(c.RateBudget, now).Tokens), c.RateBudget.Capacity, c.RateBudget.RefillPerMinute),
            s.LinkedAt,
            s.Holder,
            new OwnerView(c.Owner.WebhookUrl),
            version);
    }

    private HostView ToHostView(LinkedAccountState s) => new(
        s.State,
        s.Epoch,
        s.Holder,
        Binding(s),
        s.SealedCredentials,
        s.CredentialGeneration,
        s is { State: Pairing, Pairing: { } p } ? new PairingTask(p.Attempt, p.Cycle, p.MaxCycles, p.QrTtlSeconds, p.Deadline, p.Scanned) : null,
        s.CheckDue,
        s.NotBefore);

    private ConnectorBinding Binding(LinkedAccountState s) => new(Id.Key, s.Config.Platform, s.Config.DisplayName, s.Config.Connector);

    private static WebhookTarget Target(LinkedAccountState s) => new(s.Config.Owner.WebhookUrl, s.Config.Owner.WebhookSecret);
}
