using System.Diagnostics;
using System.Security.Cryptography;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Utilities;
using QrOrleans.KeyBinding;
using QrOrleans.QrSessions;
using QrOrleans.Users;
using static QrOrleans.QrSessions.QrSessionStates;

namespace QrOrleans.Grains.QrSessions;

/// <summary>Persisted state of one QR sign-in. Holds hashes of the desktop token and of superseded QR secrets.</summary>
public sealed record QrSessionState
{
    /// <summary>Storage providers print a grain's state in their Trace logs: the live QR secret never goes with it.</summary>
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("Version = ").Append(Version).Append(", State = ").Append(State).Append(", Rotation = ").Append(Rotation)
            .Append(", ExpiresAt = ").Append(ExpiresAt).Append(", QrSecret = (redacted)");
        return true;
    }

    /// <summary>Counts transitions; stamped on every stream event so watchers keep only newer snapshots.</summary>
    public long Version { get; init; }
    public required string State { get; init; }
    public required string DesktopTokenHash { get; init; }
    public required Requester Requester { get; init; }
    public required DateTimeOffset ExpiresAt { get; init; }
    public required string QrSecret { get; init; }
    public required int Rotation { get; init; }
    public required int MaxRotations { get; init; }
    public required DateTimeOffset QrExpiresAt { get; init; }
    public IReadOnlyList<string> SupersededSecretHashes { get; init; } = [];
    public string? ScannerUserId { get; init; }
    public string? ScannerIp { get; init; }
    public string? NumberMatch { get; init; }
    public IReadOnlyList<string>? NumberChoices { get; init; }
    public DateTimeOffset? ApproveBefore { get; init; }
    public DateTimeOffset? ClaimBefore { get; init; }
    public string? DeviceId { get; init; }
    public DateTimeOffset? EndedAt { get; init; }

    /// <summary>
    /// The W3C traceparent of the ceremony's root span (<see cref="CeremonyTrace"/>); null when it was created while
    /// nothing listened, or stored before this field existed.
    /// </summary>
    public string? TraceParent { get; init; }

    /// <summary>
    /// The grant being handed out: set with <see cref="DeviceId"/> by each begun claim while the session is still
    /// approved (a "grant pending" mark), and the one that confirmed once completed. Null before any claim began.
    /// </summary>
    public string? GrantId { get; init; }
}

/// <summary>
/// The QR sign-in ceremony: pending → scanned → approved → completed, or rejected / cancelled / expired.
/// One method per transition; each checks the state it may start from and writes once. Time-driven transitions
/// (QR rotation, windows running out, deletion after the grace period) run on a grain timer while the session
/// is active; a durable reminder brings it back if its silo dies; and every call applies what is overdue first,
/// so a late timer never lets a caller act past a deadline.
/// Placed on the silo of the gateway that created it: the desktop that waits on it is connected there, so its
/// reads and pushes stay local (Orleans' default, resource-optimized placement may put it anywhere).
/// </summary>
[Orleans.Placement.PreferLocalPlacement]
public sealed partial class QrSessionGrain(
    [PersistentState("session", OrleansNames.Storage)] IPersistentState<QrSessionState> session,
    QrSessionOptions options,
    ActivationCensus census,
    IEnumerable<IQrSessionObserver> observers,
    [FromKeyedServices(OrleansNames.Clock)] TimeProvider time,
    ILogger<QrSessionGrain> log) : Grain, IQrSessionGrain, IRemindable
{
    private const string RecoveryReminder = "recovery";

    /// <summary>Longer than any session runs, so a listed node is never dropped for age while its session lives.</summary>
    private static readonly TimeSpan ListenerLease = TimeSpan.FromHours(1);

    private IGrainTimer? _deadline;
    private DateTimeOffset? _armedFor;
    private readonly ObserverManager<IQrSessionListener> _listeners = new(ListenerLease, log);

    private string Key => this.GetPrimaryKeyString();

    private DateTimeOffset Now => time.GetUtcNow();

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (session.RecordExists)
        {
            await CatchUpAsync();
        }
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        census.Report(ActivationCensus.QrSession, Key, null);
        if (_listeners.Count > 0 && session.RecordExists && !IsTerminal(session.State.State))
        {
            // Listeners live only here: the nodes that wait on a running session must list themselves again.
            await _listeners.Notify(l => l.ListenAgainAsync(Key));
        }
    }

    public Task ListenAsync(IQrSessionListener listener, CancellationToken ct)
    {
        _listeners.Subscribe(listener, listener);
        return Task.CompletedTask;
    }

    public Task UnlistenAsync(IQrSessionListener listener, CancellationToken ct)
    {
        _listeners.Unsubscribe(listener);
        return Task.CompletedTask;
    }

    public async Task<SessionCreated> CreateAsync(Requester requester, CancellationToken ct)
    {
        var caller = Activity.Current;
        var root = CeremonyTrace.StartRoot();
        string? refused = null;
        try
        {
            return await CreateCoreAsync(requester, root?.Id);
        }
        catch (GrainException e)
        {
            refused = e.Code;
            throw;
        }
        finally
        {
            CeremonyTrace.End(root, caller, refused);
        }
    }

    private async Task<SessionCreated> CreateCoreAsync(Requester requester, string? traceParent)
    {
        if (session.RecordExists)
        {
            throw Errors.InvalidState(session.State.State, "create");
        }
        var desktopToken = Secrets.NewToken(32);
        var now = Now;
        var snapshot = await CommitAsync(new QrSessionState
        {
            State = Pending,
            DesktopTokenHash = Secrets.Hash(desktopToken),
            Requester = requester,
            ExpiresAt = now + options.QrTtl * options.MaxRotations,
            QrSecret = Secrets.NewToken(16),
            Rotation = 1,
            MaxRotations = options.MaxRotations,
            QrExpiresAt = now + options.QrTtl,
            TraceParent = traceParent,
        });
        // Durable: if this silo dies, the session comes back elsewhere and still expires and is deleted.
        await this.KeepReminderAsync(RecoveryReminder, options.RecoveryPeriod, needed: true);
        return new SessionCreated(Key, desktopToken, snapshot);
    }

    public async Task<QrSessionSnapshot> GetSnapshotAsync(string desktopToken, CancellationToken ct)
    {
        var s = await DesktopAsync(desktopToken);
        return Snapshot(s);
    }

    public Task<ScanResult> ScanAsync(string qrSecret, string userId, string scannerIp, CancellationToken ct) =>
        StepAsync("scan", () => ScanCoreAsync(qrSecret, userId, scannerIp));

    private async Task<ScanResult> ScanCoreAsync(string qrSecret, string userId, string scannerIp)
    {
        if (!session.RecordExists)
        {
            throw Errors.QrInvalid();
        }
        var s = await CatchUpAsync() ?? throw Errors.QrInvalid();
        if (!Secrets.FixedTimeEquals(qrSecret, s.QrSecret))
        {
            throw s.SupersededSecretHashes.Contains(Secrets.Hash(qrSecret)) ? Errors.QrExpired() : Errors.QrInvalid();
        }
        switch (s.State)
        {
            case Pending:
                var number = RandomNumberGenerator.GetInt32(10, 100);
                await CommitAsync(s with
                {
                    State = Scanned,
                    ScannerUserId = userId,
                    ScannerIp = scannerIp,
                    NumberMatch = number.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    NumberChoices = NumberChoices(number),
                    ApproveBefore = Now + options.ApprovalWindow,
                });
                return ScanView(session.State);
            case Scanned or Approved when s.ScannerUserId != userId:
                throw Errors.QrAlreadyScanned(); // live, and someone else's
            case Scanned:
                return ScanView(s); // the same phone scanning again sees the same question
            case Approved:
                throw Errors.InvalidState(s.State, "scan"); // this phone answered already; not finished until the claim
            default:
                throw Finished(s);
        }
    }

    public Task<QrSessionSnapshot> ApproveAsync(string userId, string number, CancellationToken ct) =>
        StepAsync("approve", () => ApproveCoreAsync(userId, number));

    private async Task<QrSessionSnapshot> ApproveCoreAsync(string userId, string number)
    {
        var s = await ScannerOnlyAsync(userId, "approve");
        if (!Secrets.FixedTimeEquals(number, s.NumberMatch!))
        {
            // A wrong pick ends the session, and the phone is told why.
            await CommitAsync(s with { State = Rejected, EndedAt = Now });
            throw Errors.NumberMismatch();
        }
        return await CommitAsync(s with { State = Approved, ClaimBefore = Now + options.ClaimWindow });
    }

    public Task<QrSessionSnapshot> RejectAsync(string userId, CancellationToken ct) =>
        StepAsync("reject", () => RejectCoreAsync(userId));

    private async Task<QrSessionSnapshot> RejectCoreAsync(string userId)
    {
        var s = await ScannerOnlyAsync(userId, "reject");
        return await CommitAsync(s with { State = Rejected, EndedAt = Now });
    }

    public Task<QrSessionSnapshot> CancelAsync(string desktopToken, CancellationToken ct) =>
        StepAsync("cancel", () => CancelCoreAsync(desktopToken));

    private async Task<QrSessionSnapshot> CancelCoreAsync(string desktopToken)
    {
        var s = await DesktopAsync(desktopToken);
        return s.State switch
        {
            Pending or Scanned => await CommitAsync(s with { State = Cancelled, EndedAt = Now }),
            Approved => await CancelApprovedAsync(s),
            Cancelled => Snapshot(s),
            Expired => throw Errors.QrExpired(),
            _ => throw Errors.InvalidState(s.State, "cancel"),
        };
    }

    private async Task<QrSessionSnapshot> CancelApprovedAsync(QrSessionState s)
    {
        await RevokeUndeliveredAsync(s);
        return await CommitAsync(s with { State = Cancelled, EndedAt = Now });
    }

    public Task<ClaimGrant> ClaimAsync(string desktopToken, CancellationToken ct) =>
        StepAsync("claim", () => ClaimCoreAsync(desktopToken));

    private async Task<ClaimGrant> ClaimCoreAsync(string desktopToken)
    {
        var s = await DesktopAsync(desktopToken);
        if (KeyBindingErrors.Check(s.Requester.KeyThumbprint, null) is { } refusal)
        {
            throw refusal; // a keyed session is claimed only with a proof, through BeginClaim
        }
        switch (s.State)
        {
            case Approved:
                var deviceId = s.DeviceId ?? s.ScannerUserId + "-" + Secrets.NewHexId(8);
                await CommitAsync(s with { State = Completed, DeviceId = deviceId, EndedAt = Now });
                return new ClaimGrant(s.ScannerUserId!, deviceId, s.Requester.ClientName, s.Requester.ClientKind, s.Requester.Ip);
            default:
                throw ClaimRefusal(s);
        }
    }

    public Task<ClaimGrant> BeginClaimAsync(string desktopToken, string? proofThumbprint, CancellationToken ct) =>
        StepAsync("claim", () => BeginClaimCoreAsync(desktopToken, proofThumbprint));

    /// <summary>
    /// The public state stays approved while a grant is pending: completed tells the desktop and its watchers that the
    /// tokens were handed out, which is only true once the gateway confirms, and staying approved keeps the claim
    /// window (ClaimBefore) running, so a retry is possible exactly while a first claim was.
    /// </summary>
    private async Task<ClaimGrant> BeginClaimCoreAsync(string desktopToken, string? proofThumbprint)
    {
        var s = await DesktopAsync(desktopToken);
        // Before anything changes: a wrong key or none never consumes (nor even touches) the session.
        if (KeyBindingErrors.Check(s.Requester.KeyThumbprint, proofThumbprint) is { } refusal)
        {
            throw refusal;
        }
        if (s.State is not Approved)
        {
            throw ClaimRefusal(s);
        }
        // One device per session, whatever the number of retries: its id is chosen by the first claim and kept.
        var deviceId = s.DeviceId ?? s.ScannerUserId + "-" + Secrets.NewHexId(8);
        var grantId = Secrets.NewToken(16);
        await RecordAsync(s with { DeviceId = deviceId, GrantId = grantId });
        // Inside this turn, so no other claim, expiry or cancel of this session interleaves: the latest grant id always
        // goes with the device's current refresh token (a retry rotates out the one an earlier attempt never delivered).
        var key = s.Requester.KeyThumbprint;
        var device = await GrainFactory.Grain<IUserGrain>(s.ScannerUserId!)
            .AddDeviceAsync(new NewDevice(deviceId, s.Requester.ClientName, s.Requester.ClientKind, s.Requester.Ip, key), CancellationToken.None);
        return new ClaimGrant(s.ScannerUserId!, deviceId, s.Requester.ClientName, s.Requester.ClientKind, s.Requester.Ip, grantId, device, key);
    }

    /// <summary>The end of the claim step that BeginClaim traced: the ceremony shows one span per claim call.</summary>
    public async Task<QrSessionSnapshot> ConfirmClaimAsync(string desktopToken, string grantId, CancellationToken ct)
    {
        var s = await DesktopAsync(desktopToken);
        var latest = s.GrantId is not null && Secrets.FixedTimeEquals(grantId, s.GrantId);
        return s.State switch
        {
            Approved when latest => await CommitAsync(s with { State = Completed, EndedAt = Now }),
            Completed when latest => Snapshot(s),
            // A later claim of the same desktop replaced this grant's refresh token: that claim answers, this one may not.
            Approved or Completed => throw Errors.AlreadyClaimed(),
            _ => throw ClaimRefusal(s),
        };
    }

    private static GrainException ClaimRefusal(QrSessionState s) => s.State switch
    {
        Pending or Scanned => Errors.NotApproved(),
        Completed => Errors.AlreadyClaimed(),
        Expired => Errors.QrExpired(),
        _ => Errors.InvalidState(s.State, "claim"),
    };

    /// <summary>
    /// A session that ends (expired, cancelled) with a grant pending signs that device out first: nobody holds its
    /// refresh token, and no claim can fetch one any more. No claim can register it afterwards either, since only this
    /// grain's turns do.
    /// </summary>
    private async Task RevokeUndeliveredAsync(QrSessionState s)
    {
        if (s.State != Approved || s.DeviceId is null)
        {
            return;
        }
        try
        {
            await GrainFactory.Grain<IUserGrain>(s.ScannerUserId!).RevokeDeviceAsync(s.DeviceId, CancellationToken.None);
        }
        catch (GrainException e) when (e.Code == "not_found")
        {
            // the claim failed before the device was registered: nothing to sign out
        }
    }

    public async Task ReceiveReminder(string reminderName, TickStatus status)
    {
        if (!session.RecordExists)
        {
            await this.ForgetReminderAsync(RecoveryReminder); // deleted meanwhile: nothing left to do
            return;
        }
        await CatchUpAsync();
    }

    /// <summary>
    /// Applies every transition that time alone causes, up to now: a QR rotation, a window running out, or (after
    /// the grace period of a finished session) deletion. Then points the timer at the next deadline. Null when
    /// the session is gone.
    /// </summary>
    private async Task<QrSessionState?> CatchUpAsync()
    {
        var s = session.State;
        var now = Now;
        switch (s.State)
        {
            case Pending when now >= s.QrExpiresAt && s.Rotation < s.MaxRotations && now < s.ExpiresAt:
                await CommitAsync(s with
                {
                    QrSecret = Secrets.NewToken(16),
                    Rotation = s.Rotation + 1,
                    QrExpiresAt = now + options.QrTtl,
                    SupersededSecretHashes = [.. s.SupersededSecretHashes, Secrets.Hash(s.QrSecret)],
                });
                break;
            case Pending when now >= s.QrExpiresAt || now >= s.ExpiresAt:
            case Scanned when now >= s.ApproveBefore:
                await CommitAsync(s with { State = Expired, EndedAt = now });
                break;
            case Approved when now >= s.ClaimBefore:
                await RevokeUndeliveredAsync(s);
                await CommitAsync(s with { State = Expired, EndedAt = now });
                break;
            default:
                if (IsTerminal(s.State) && now >= s.EndedAt + options.TerminalGrace)
                {
                    // The grace period is over: later callers get qr_invalid / 401, and nothing keeps the activation.
                    await session.DeleteAsync(this);
                    census.Report(ActivationCensus.QrSession, Key, null);
                    _deadline?.Dispose();
                    await this.ForgetReminderAsync(RecoveryReminder);
                    DeactivateOnIdle();
                    return null;
                }
                census.Report(ActivationCensus.QrSession, Key, s.State);
                ArmTimer(s);
                break;
        }
        return session.State;
    }

    /// <summary>
    /// One caller-driven step of the ceremony as a span under the session's root (made here, where the stored
    /// root is known), with the refusal's code when it was refused. What the step does inside (storage, the
    /// stream event) becomes its children.
    /// </summary>
    private async Task<T> StepAsync<T>(string step, Func<Task<T>> body)
    {
        var caller = Activity.Current;
        // A call on a session that does not exist (a made-up QR code) belongs to no ceremony: no span.
        var activity = session.RecordExists ? CeremonyTrace.StartStep(step, session.State.TraceParent) : null;
        string? refused = null;
        try
        {
            return await body();
        }
        catch (GrainException e)
        {
            refused = e.Code;
            throw;
        }
        finally
        {
            CeremonyTrace.End(activity, caller, refused);
        }
    }

    /// <summary>
    /// Approve and reject: only the user who scanned, only while scanned and in time. A finished session answers
    /// every phone alike (API.md: qr_expired, qr_already_used); who scanned matters only while it is live.
    /// </summary>
    private async Task<QrSessionState> ScannerOnlyAsync(string userId, string action)
    {
        if (!session.RecordExists)
        {
            throw Errors.QrInvalid();
        }
        var s = await CatchUpAsync() ?? throw Errors.QrInvalid();
        return s.State switch
        {
            Pending => throw Errors.InvalidState(s.State, action), // nobody has scanned: there is nothing to answer
            Scanned or Approved when s.ScannerUserId != userId => throw Errors.NotScanner(),
            Scanned => s,
            Approved => throw Errors.InvalidState(s.State, action),
            _ => throw Finished(s),
        };
    }

    /// <summary>The refusal for a session that has ended, whoever asks: timed out, or finished otherwise.</summary>
    private static GrainException Finished(QrSessionState s) => s.State == Expired ? Errors.QrExpired() : Errors.QrAlreadyUsed();

    /// <summary>The session, caught up, if <paramref name="desktopToken"/> is its desktop's; otherwise 401.</summary>
    private async Task<QrSessionState> DesktopAsync(string desktopToken)
    {
        if (!session.RecordExists || !Secrets.MatchesHash(desktopToken, session.State.DesktopTokenHash))
        {
            throw Errors.Unauthenticated("A valid desktop token for this session is required.");
        }
        return await CatchUpAsync() ?? throw Errors.Unauthenticated("A valid desktop token for this session is required.");
    }

    /// <summary>The one write of a transition, then its change to the listening nodes, then the next deadline.</summary>
    private async Task<QrSessionSnapshot> CommitAsync(QrSessionState next)
    {
        var previous = session.RecordExists ? session.State : null;
        session.State = next with { Version = next.Version + 1 };
        await session.PersistAsync(this);
        var s = session.State;
        foreach (var observer in observers)
        {
            observer.OnCommitted(Key, previous, s);
        }
        census.Report(ActivationCensus.QrSession, Key, s.State);
        var snapshot = Snapshot(s);
        // One-way messages: a slow or dead node never holds up the transition. The state is stored, and watchers
        // re-read snapshots on reconnect and long-polls on timeout, so a lost message delays an update, never loses it.
        var change = new QrSessionChanged(s.Version, snapshot);
        await _listeners.Notify(l => l.ChangedAsync(change));
        ArmTimer(s);
        return snapshot;
    }

    /// <summary>
    /// The one write of a step that changes nothing a desktop or a watcher sees (a grant pending): no new version, no
    /// event, the same deadline.
    /// </summary>
    private async Task RecordAsync(QrSessionState next)
    {
        session.State = next;
        await session.PersistAsync(this);
    }

    /// <summary>Points the timer at the state's next deadline, unless it already points there (reads call this too).</summary>
    private void ArmTimer(QrSessionState s)
    {
        var deadline = NextDeadline(s);
        if (_armedFor == deadline)
        {
            return;
        }
        _armedFor = deadline;
        _deadline?.Dispose();
        var due = deadline - Now;
        _deadline = this.RegisterGrainTimer(
            static (grain, _) => grain.OnDeadlineAsync(),
            this,
            // A running session stays active until it ends (its deadlines are all shorter than the collection age),
            // so its listeners stay listed; a finished one is left to idle collection.
            new GrainTimerCreationOptions(due < TimeSpan.Zero ? TimeSpan.Zero : due, Timeout.InfiniteTimeSpan) { Interleave = false, KeepAlive = !IsTerminal(s.State) });
    }

    private async Task OnDeadlineAsync()
    {
        _armedFor = null; // one-shot: spent, so catching up sets it again (also when it fired a little early)
        if (session.RecordExists)
        {
            await CatchUpAsync();
        }
    }

    private DateTimeOffset NextDeadline(QrSessionState s) => s.State switch
    {
        Pending => s.QrExpiresAt < s.ExpiresAt ? s.QrExpiresAt : s.ExpiresAt,
        Scanned => s.ApproveBefore!.Value,
        Approved => s.ClaimBefore!.Value,
        _ => s.EndedAt!.Value + options.TerminalGrace,
    };

    private QrSessionSnapshot Snapshot(QrSessionState s) => new(
        Key,
        s.State,
        s.Version,
        s.State switch
        {
            Scanned => s.ApproveBefore!.Value,
            Approved => s.ClaimBefore!.Value,
            _ => s.ExpiresAt,
        },
        s.State == Pending ? new QrCodeView(QrUrl(s), s.QrExpiresAt, s.Rotation, s.MaxRotations) : null,
        s.State == Scanned ? s.NumberMatch : null,
        s.TraceParent);

    /// <summary>The token rides in the fragment, which browsers never send: no request line or server log can hold it.</summary>
    private string QrUrl(QrSessionState s) => $"{options.PublicOrigin.TrimEnd('/')}/l/#{Key}.{s.QrSecret}";

    private ScanResult ScanView(QrSessionState s) => new(
        Key,
        new RequesterView(s.Requester.ClientName, s.Requester.ClientKind, s.Requester.Browser, s.Requester.Os,
            s.Requester.Ip, s.Requester.CreatedAt, Network.Same(s.Requester.Ip, s.ScannerIp ?? "")),
        s.NumberChoices!,
        s.ApproveBefore!.Value);

    private static string[] NumberChoices(int number)
    {
        var choices = new SortedSet<int> { number };
        while (choices.Count < 3)
        {
            choices.Add(RandomNumberGenerator.GetInt32(10, 100));
        }
        return choices.Select(n => n.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
    }
}
