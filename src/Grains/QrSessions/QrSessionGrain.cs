using System.Diagnostics;
using System.Security.Cryptography;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Streams;
using QrOrleans.QrSessions;
using QrOrleans.Users;
using static QrOrleans.QrSessions.QrSessionStates;

namespace QrOrleans.Grains.QrSessions;

/// <summary>Persisted state of one QR sign-in. Holds hashes of the desktop token and of superseded QR secrets.</summary>
public sealed record QrSessionState
{
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

    private IGrainTimer? _deadline;
    private DateTimeOffset? _armedFor;
    private IAsyncStream<QrSessionChanged>? _stream;

    private string Key => this.GetPrimaryKeyString();

    private DateTimeOffset Now => time.GetUtcNow();

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _stream = this.GetStreamProvider(OrleansNames.Streams)
            .GetStream<QrSessionChanged>(StreamId.Create(OrleansNames.QrSessionStream, Key));
        if (session.RecordExists)
        {
            await CatchUpAsync();
        }
    }

    public override Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        census.Report(ActivationCensus.QrSession, Key, null);
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
            case Scanned when s.ScannerUserId == userId:
                return ScanView(s); // the same phone scanning again sees the same question
            case Scanned:
                throw Errors.QrAlreadyScanned();
            case Expired:
                throw Errors.QrExpired();
            default:
                throw s.ScannerUserId is not null && s.ScannerUserId != userId ? Errors.QrAlreadyScanned() : Errors.QrAlreadyUsed();
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
            Pending or Scanned or Approved => await CommitAsync(s with { State = Cancelled, EndedAt = Now }),
            Cancelled => Snapshot(s),
            Expired => throw Errors.QrExpired(),
            _ => throw Errors.InvalidState(s.State, "cancel"),
        };
    }

    public Task<ClaimGrant> ClaimAsync(string desktopToken, CancellationToken ct) =>
        StepAsync("claim", () => ClaimCoreAsync(desktopToken));

    private async Task<ClaimGrant> ClaimCoreAsync(string desktopToken)
    {
        var s = await DesktopAsync(desktopToken);
        switch (s.State)
        {
            case Approved:
                // The device is linked inside this turn, before the one write. If linking fails (the user's silo died,
                // storage away; found by bench soak, where Completed was stored, the link failed, and the desktop's
                // retry was already_claimed) the session stays approved and the retry links the same device again
                // (a new refresh token). Concurrent claims queue on this grain: exactly one completes.
                var deviceId = s.ScannerUserId + "-" + Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(Key)))[..16];
                var linked = await GrainFactory.GetGrain<IUserGrain>(s.ScannerUserId!)
                    .AddDeviceAsync(new NewDevice(deviceId, s.Requester.ClientName, s.Requester.ClientKind, s.Requester.Ip));
                await CommitAsync(s with { State = Completed, DeviceId = deviceId, EndedAt = Now });
                return new ClaimGrant(s.ScannerUserId!, deviceId, s.Requester.ClientName, s.Requester.ClientKind, s.Requester.Ip, linked);
            case Pending or Scanned:
                throw Errors.NotApproved();
            case Completed:
                throw Errors.AlreadyClaimed();
            case Expired:
                throw Errors.QrExpired();
            default:
                throw Errors.InvalidState(s.State, "claim");
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
            case Approved when now >= s.ClaimBefore:
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

    /// <summary>Approve and reject: only the user who scanned, only while scanned and in time.</summary>
    private async Task<QrSessionState> ScannerOnlyAsync(string userId, string action)
    {
        if (!session.RecordExists)
        {
            throw Errors.QrInvalid();
        }
        var s = await CatchUpAsync() ?? throw Errors.QrInvalid();
        if (s.ScannerUserId is not null && s.ScannerUserId != userId)
        {
            throw Errors.NotScanner();
        }
        return s.State switch
        {
            Scanned => s,
            Expired => throw Errors.QrExpired(),
            Pending => throw Errors.InvalidState(s.State, action),
            _ => throw Errors.QrAlreadyUsed(),
        };
    }

    /// <summary>The session, caught up, if <paramref name="desktopToken"/> is its desktop's; otherwise 401.</summary>
    private async Task<QrSessionState> DesktopAsync(string desktopToken)
    {
        if (!session.RecordExists || !Secrets.MatchesHash(desktopToken, session.State.DesktopTokenHash))
        {
            throw Errors.Unauthenticated("A valid desktop token for this session is required.");
        }
        return await CatchUpAsync() ?? throw Errors.Unauthenticated("A valid desktop token for this session is required.");
    }

    /// <summary>The one write of a transition, then its event on the session's stream, then the next deadline.</summary>
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
        try
        {
            await _stream!.OnNextAsync(new QrSessionChanged(s.Version, snapshot));
        }
        catch (Exception e)
        {
            // The state is stored; watchers re-read snapshots on reconnect and long-polls re-read on timeout, so a
            // lost event delays an update, never loses it.
            LogPublishFailed(log, e);
        }
        ArmTimer(s);
        return snapshot;
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
            new GrainTimerCreationOptions(due < TimeSpan.Zero ? TimeSpan.Zero : due, Timeout.InfiniteTimeSpan) { Interleave = false });
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

    private string QrUrl(QrSessionState s) => $"{options.PublicOrigin.TrimEnd('/')}/l/{Key}.{s.QrSecret}";

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

    [LoggerMessage(LogLevel.Warning, "Publishing a session change on its stream failed; watchers will re-read the snapshot")]
    private static partial void LogPublishFailed(ILogger log, Exception e);
}
