using System.Diagnostics;
using System.Security.Cryptography;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Utilities;
using QrOrleans.Audit;
using QrOrleans.KeyBinding;
using QrOrleans.QrSessions;
using QrOrleans.Users;
using static QrOrleans.QrSessions.QrSessionStates;

namespace QrOrleans.Grains.QrSessions;

/// <summary>Persisted state of one QR sign-in. Holds hashes of the desktop token and of superseded QR secrets.</summary>
public sealed record QrSessionState
{
    /// <summary>Storage providers print a grain's state in their Trace logs: the QR seed and secret never go with it.</summary>
    private bool PrintMembers(System.Text.StringBuilder builder)
    {
        builder.Append("Version = ").Append(Version).Append(", State = ").Append(State).Append(", Rotation = ").Append(Rotation)
            .Append(", ExpiresAt = ").Append(ExpiresAt).Append(", QrSeed = (redacted)");
        return true;
    }

    /// <summary>
    /// Counts transitions; stamped on every pushed change so watchers keep only newer snapshots. A rotation counts
    /// too, though it is not written: while pending, the version is the stored one plus the rotations since.
    /// </summary>
    public long Version { get; init; }
    public required string State { get; init; }
    public required string DesktopTokenHash { get; init; }
    public required Requester Requester { get; init; }
    public required DateTimeOffset ExpiresAt { get; init; }

    /// <summary>
    /// Every rotation's QR secret is derived from this (HMAC of the rotation number), so a rotation needs no write: an
    /// activation that comes back after a crash derives the same code from the time and the seed.
    /// </summary>
    public string? QrSeed { get; init; }

    /// <summary>The live secret as builds before the seed stored it; read only for sessions they started.</summary>
    public string? QrSecret { get; init; }

    public required int Rotation { get; init; }
    public required int MaxRotations { get; init; }
    public required DateTimeOffset QrExpiresAt { get; init; }
    /// <summary>Hashes of superseded secrets of a session started before the seed (later ones are derived).</summary>
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

    /// <summary>The grant that confirmed the claim (stored with completed); a begun one lives in the activation only.</summary>
    public string? GrantId { get; init; }

    /// <summary>
    /// What the ceremony adds to the scanning user's audit trail, written with the transitions that cause it and handed
    /// to the trail once, when the session has ended (again after a failure: the trail takes each entry once).
    /// </summary>
    public IReadOnlyList<AuditEntry> Audit { get; init; } = [];
}

/// <summary>
/// The QR sign-in ceremony: pending → scanned → approved → completed, or rejected / cancelled / expired.
/// One method per transition; each checks the state it may start from and writes once. Time-driven transitions
/// (QR rotation, windows running out, deletion after the grace period) run on a grain timer while the session
/// is active; a durable reminder, due at the session's natural end, brings it back if its silo dies; and every call
/// applies what is overdue first, so a late timer never lets a caller act past a deadline. A rotation is not written:
/// its code is derived from the stored seed and the time.
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

    /// <summary>How soon a hand-over of the audit entries that failed (the trail's storage away) is tried again.</summary>
    private static readonly TimeSpan AuditRetry = TimeSpan.FromSeconds(5);

    private IGrainTimer? _deadline;
    private DateTimeOffset? _armedFor;
    private readonly ObserverManager<IQrSessionListener> _listeners = new(ListenerLease, log);

    /// <summary>The handle the registration returned: unregistering with it costs no lookup.</summary>
    private IGrainReminder? _recovery;

    /// <summary>The grant a begun claim is handing out; lost with the activation, which makes its confirmation retry.</summary>
    private string? _grant;

    /// <summary>Set once this activation handed the ended ceremony's entries to the audit trail; until then, when to try.</summary>
    private bool _auditHandedOver;
    private DateTimeOffset? _auditRetryAt;

    private string Key => this.GetPrimaryKeyString();

    private DateTimeOffset Now => time.GetUtcNow();

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (session.RecordExists)
        {
            await CatchUpAsync();
        }
    }

    /// <summary>
    /// A finished session ends with its idle activation: it was kept at least the grace period (<see cref="Finish"/>),
    /// and is deleted when collected, so no per-session timer waits for the grace period to end (a silo short of memory
    /// may collect it sooner, and sheds it then). One whose audit entries could not be handed over is kept (a recovery
    /// reminder, where there is one, tries again later).
    /// </summary>
    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        census.Report(ActivationCensus.QrSession, Key, null);
        if (!session.RecordExists)
        {
            return;
        }
        if (!IsTerminal(session.State.State))
        {
            if (_listeners.Count > 0)
            {
                // Listeners live only here: the nodes that wait on a running session must list themselves again.
                await _listeners.Notify(l => l.ListenAgainAsync(Key));
            }
            return;
        }
        if (reason.ReasonCode is not (DeactivationReasonCode.ActivationIdle or DeactivationReasonCode.HighMemoryPressure))
        {
            return; // stepping aside for a write conflict, a move or a shutdown: the next activation decides
        }
        try
        {
            if (await HandOverAuditAsync(session.State, Now))
            {
                await DeleteAsync();
            }
        }
        catch (Exception e)
        {
            // Storage away: the state stays, and the recovery reminder (or the next call) deletes it later.
            LogDeleteFailed(log, e.GetType().Name);
        }
    }

    public async Task<QrSessionSnapshot> WatchAsync(string desktopToken, IQrSessionListener listener, CancellationToken ct)
    {
        var s = await DesktopAsync(desktopToken);
        _listeners.Subscribe(listener, listener);
        return Snapshot(s);
    }

    public Task ListenAsync(IQrSessionListener listener, CancellationToken ct)
    {
        _listeners.Subscribe(listener, listener);
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
        var expiresAt = now + options.QrTtl * options.MaxRotations;
        var snapshot = await CommitAsync(new QrSessionState
        {
            State = Pending,
            DesktopTokenHash = Secrets.Hash(desktopToken),
            Requester = requester,
            ExpiresAt = expiresAt,
            QrSeed = Secrets.NewToken(32),
            Rotation = 1,
            MaxRotations = options.MaxRotations,
            QrExpiresAt = now + options.QrTtl,
            TraceParent = traceParent,
        });
        if (options.RecoveryReminder)
        {
            // Durable: if this silo dies, the session comes back elsewhere and still expires and is deleted. Its first
            // tick is the session's natural end, so a ceremony that finishes in time never sees it.
            _recovery = await this.RegisterOrUpdateReminder(RecoveryReminder, expiresAt - now, options.RecoveryPeriod);
        }
        return new SessionCreated(Key, desktopToken, snapshot);
    }

    public async Task<QrSessionSnapshot> GetSnapshotAsync(string desktopToken, CancellationToken ct)
    {
        var s = await DesktopAsync(desktopToken);
        return Snapshot(s);
    }

    public Task<ScanResult> ScanAsync(string qrSecret, string userId, string scannerIp, PhoneActor? phone, CancellationToken ct) =>
        StepAsync("scan", () => ScanCoreAsync(qrSecret, userId, scannerIp, phone));

    private async Task<ScanResult> ScanCoreAsync(string qrSecret, string userId, string scannerIp, PhoneActor? phone)
    {
        if (!session.RecordExists)
        {
            throw Errors.QrInvalid();
        }
        var s = await CatchUpAsync() ?? throw Errors.QrInvalid();
        if (!Secrets.FixedTimeEquals(qrSecret, SecretOf(s, s.Rotation)))
        {
            throw IsSuperseded(s, qrSecret) ? Errors.QrExpired() : Errors.QrInvalid();
        }
        switch (s.State)
        {
            case Pending:
                var number = RandomNumberGenerator.GetInt32(10, 100);
                var r = s.Requester;
                await CommitAsync(s with
                {
                    State = Scanned,
                    ScannerUserId = userId,
                    ScannerIp = scannerIp,
                    NumberMatch = number.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    NumberChoices = NumberChoices(number),
                    ApproveBefore = Now + options.ApprovalWindow,
                    Audit = Noted(s, phone, AuditActions.QrScanned, $"{r.ClientName} ({r.ClientKind}) at {r.Ip} asked to sign in"),
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

    public Task<QrSessionSnapshot> ApproveAsync(string userId, string number, PhoneActor? phone, CancellationToken ct) =>
        StepAsync("approve", () => ApproveCoreAsync(userId, number, phone));

    private async Task<QrSessionSnapshot> ApproveCoreAsync(string userId, string number, PhoneActor? phone)
    {
        var s = await ScannerOnlyAsync(userId, "approve");
        if (!Secrets.FixedTimeEquals(number, s.NumberMatch!))
        {
            // A wrong pick ends the session, and the phone is told why.
            await CommitAsync(s with { State = Rejected, EndedAt = Now, Audit = Noted(s, phone, AuditActions.QrRejected, "wrong number picked") });
            throw Errors.NumberMismatch();
        }
        return await CommitAsync(s with { State = Approved, ClaimBefore = Now + options.ClaimWindow, Audit = Noted(s, phone, AuditActions.QrApproved) });
    }

    public Task<QrSessionSnapshot> RejectAsync(string userId, PhoneActor? phone, CancellationToken ct) =>
        StepAsync("reject", () => RejectCoreAsync(userId, phone));

    private async Task<QrSessionSnapshot> RejectCoreAsync(string userId, PhoneActor? phone)
    {
        var s = await ScannerOnlyAsync(userId, "reject");
        return await CommitAsync(s with { State = Rejected, EndedAt = Now, Audit = Noted(s, phone, AuditActions.QrRejected, "rejected on the phone") });
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
                var deviceId = DeviceIdOf(s);
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
    /// window (ClaimBefore) running, so a retry is possible exactly while a first claim was. Nothing is written: the
    /// device id is derived from the session, so every retry, on any activation, registers the same device.
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
        var deviceId = DeviceIdOf(s);
        // Inside this turn, so no other claim, expiry or cancel of this session interleaves: the latest grant always goes
        // with the device's current refresh token (a retry rotates out the one an earlier attempt never delivered).
        var key = s.Requester.KeyThumbprint;
        var device = await GrainFactory.Grain<IUserGrain>(s.ScannerUserId!)
            .AddDeviceAsync(new NewDevice(deviceId, s.Requester.ClientName, s.Requester.ClientKind, s.Requester.Ip, key), CancellationToken.None);
        _grant = Secrets.NewToken(16);
        return new ClaimGrant(s.ScannerUserId!, deviceId, s.Requester.ClientName, s.Requester.ClientKind, s.Requester.Ip, _grant, device, key);
    }

    /// <summary>The end of the claim step that BeginClaim traced: the ceremony shows one span per claim call.</summary>
    public async Task<QrSessionSnapshot> ConfirmClaimAsync(string desktopToken, string grantId, string? desktopIp, CancellationToken ct)
    {
        var s = await DesktopAsync(desktopToken);
        return s.State switch
        {
            Approved when _grant is { } latest && Secrets.FixedTimeEquals(grantId, latest) => await CommitAsync(s with
            {
                State = Completed,
                DeviceId = DeviceIdOf(s),
                GrantId = grantId,
                EndedAt = Now,
                Audit = [.. s.Audit, Linked(s, desktopIp)],
            }),
            Completed when s.GrantId is not null && Secrets.FixedTimeEquals(grantId, s.GrantId) => Snapshot(s),
            // Begun on an activation that is gone: its refresh token is replaced by the retry this answer asks for.
            Approved when _grant is null => throw Errors.ClaimInterrupted(),
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
    /// The one device a session links, whatever the number of claim attempts: derived from the session's id, which is
    /// random and never shown beside it, so the id says nothing about the session.
    /// </summary>
    private string DeviceIdOf(QrSessionState s) => s.DeviceId
        ?? s.ScannerUserId + "-" + Convert.ToHexStringLower(SHA256.HashData(System.Text.Encoding.UTF8.GetBytes("device:" + Key)).AsSpan(0, 8));

    /// <summary>
    /// A session that ends (expired, cancelled) while approved may have a grant pending: that device is signed out
    /// first, since nobody holds its refresh token and no claim can fetch one any more. No claim can register it
    /// afterwards either, since only this grain's turns do.
    /// </summary>
    private async Task RevokeUndeliveredAsync(QrSessionState s)
    {
        if (s.State != Approved)
        {
            return;
        }
        try
        {
            await GrainFactory.Grain<IUserGrain>(s.ScannerUserId!).RevokeDeviceAsync(DeviceIdOf(s), CancellationToken.None);
        }
        catch (GrainException e) when (e.Code == "not_found")
        {
            // no claim began, or it failed before the device was registered: nothing to sign out
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
    /// Applies every transition that time alone causes, up to now: a QR rotation (announced, not written), a window
    /// running out, the hand-over of the ended ceremony's audit entries, or (after the grace period of a finished
    /// session) deletion. Then points the timer at the next deadline. Null when the session is gone.
    /// </summary>
    private async Task<QrSessionState?> CatchUpAsync()
    {
        var s = session.State;
        var now = Now;
        switch (s.State)
        {
            case Pending when now >= s.ExpiresAt || RotationAt(s, now) > s.MaxRotations:
            case Scanned when now >= s.ApproveBefore:
                await CommitAsync(s with { State = Expired, EndedAt = now });
                break;
            case Pending when now >= s.QrExpiresAt:
                await Rotate(s, RotationAt(s, now));
                break;
            case Approved when now >= s.ClaimBefore:
                await RevokeUndeliveredAsync(s);
                await CommitAsync(s with { State = Expired, EndedAt = now });
                break;
            default:
                if (IsTerminal(s.State))
                {
                    if (!await HandOverAuditAsync(s, now))
                    {
                        break; // the trail is away: kept, and tried again before anything is deleted
                    }
                    if (now >= s.EndedAt + options.TerminalGrace)
                    {
                        await DeleteAsync();
                        return null;
                    }
                    Finish(s, now);
                }
                census.Report(ActivationCensus.QrSession, Key, s.State);
                ArmTimer(s);
                break;
        }
        return session.State;
    }

    /// <summary>The grace period is over: later callers get qr_invalid / 401, and nothing keeps the activation.</summary>
    private async Task DeleteAsync()
    {
        await session.DeleteAsync(this);
        census.Report(ActivationCensus.QrSession, Key, null);
        _deadline?.Dispose();
        _deadline = null;
        if (_recovery is { } recovery)
        {
            await this.UnregisterReminder(recovery);
        }
        else if (options.RecoveryReminder)
        {
            await this.ForgetReminderAsync(RecoveryReminder); // registered by an activation that is gone
        }
        DeactivateOnIdle();
    }

    /// <summary>
    /// Hands the ended ceremony's entries to the scanning user's audit trail, once per activation (the trail drops
    /// what it holds already, so an activation after a restart may send them again). False if the trail could not take
    /// them: a retry is due at <see cref="_auditRetryAt"/>.
    /// </summary>
    private async Task<bool> HandOverAuditAsync(QrSessionState s, DateTimeOffset now)
    {
        if (_auditHandedOver || s.Audit.Count == 0 || s.ScannerUserId is null)
        {
            return true;
        }
        try
        {
            await GrainFactory.Grain<IAuditGrain>(s.ScannerUserId).AppendSessionAsync(s.Audit, CancellationToken.None);
            _auditHandedOver = true;
            _auditRetryAt = null;
            return true;
        }
        catch (GrainException e)
        {
            // A refusal, not an outage: sending the same entries again would be refused again.
            LogAuditRefused(log, e.Code);
            _auditHandedOver = true;
            return true;
        }
        catch (Exception e)
        {
            LogAuditHandOverFailed(log, e.GetType().Name);
            _auditRetryAt = now + AuditRetry;
            ArmTimer(s);
            return false;
        }
    }

    /// <summary>
    /// A rotation is announced as a transition (a new version, pushed, counted) but not written: the code of every
    /// rotation is derived from the seed, so a crash loses nothing a restart would not derive again.
    /// </summary>
    private async Task Rotate(QrSessionState s, int rotation)
    {
        var ttl = options.QrTtl;
        var start = s.QrExpiresAt - ttl * s.Rotation;
        var legacy = s.QrSeed is null;
        await Publish(s, s with
        {
            Version = s.Version + (rotation - s.Rotation),
            Rotation = rotation,
            QrExpiresAt = start + ttl * rotation,
            // A session a build before the seed started: its stored code is superseded, and later ones derive from it.
            QrSeed = s.QrSeed ?? s.QrSecret,
            SupersededSecretHashes = legacy ? [.. s.SupersededSecretHashes, Secrets.Hash(s.QrSecret!)] : s.SupersededSecretHashes,
        });
    }

    /// <summary>The rotation due at <paramref name="now"/>, counted from the first code's start.</summary>
    private int RotationAt(QrSessionState s, DateTimeOffset now)
    {
        var start = s.QrExpiresAt - options.QrTtl * s.Rotation;
        return 1 + (int)Math.Floor((now - start) / options.QrTtl);
    }

    /// <summary>The QR secret of <paramref name="rotation"/>: an HMAC of its number under the session's seed.</summary>
    private static string SecretOf(QrSessionState s, int rotation)
    {
        if (s.QrSeed is not { } seed)
        {
            return s.QrSecret!; // started before the seed, and not rotated since
        }
        Span<byte> number = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(number, rotation);
        return Secrets.Base64Url(HMACSHA256.HashData(System.Text.Encoding.UTF8.GetBytes(seed), number).AsSpan(0, 16));
    }

    private static bool IsSuperseded(QrSessionState s, string qrSecret)
    {
        if (s.SupersededSecretHashes.Count > 0 && s.SupersededSecretHashes.Contains(Secrets.Hash(qrSecret)))
        {
            return true;
        }
        if (s.QrSeed is null)
        {
            return false;
        }
        var legacyRotations = s.SupersededSecretHashes.Count; // those rotations' codes were not derived
        for (var k = legacyRotations + 1; k < s.Rotation; k++)
        {
            if (Secrets.FixedTimeEquals(qrSecret, SecretOf(s, k)))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The session's audit entries with one more of what the scanning phone did (none without a phone).</summary>
    private IReadOnlyList<AuditEntry> Noted(QrSessionState s, PhoneActor? phone, string action, string? detail = null) =>
        phone is null ? s.Audit : [.. s.Audit, new AuditEntry(Now, action, phone.Ip, phone.Client, phone.DeviceId, SessionId: Key, Detail: detail)];

    private AuditEntry Linked(QrSessionState s, string? desktopIp) =>
        new(Now, AuditActions.DeviceLinked, desktopIp ?? s.Requester.Ip, $"{s.Requester.ClientName} ({s.Requester.ClientKind})",
            DeviceId: DeviceIdOf(s), SessionId: Key);

    /// <summary>
    /// One caller-driven step of the ceremony as a span under the session's root (made here, where the stored
    /// root is known), with the refusal's code when it was refused. What the step does inside (storage, the
    /// push) becomes its children.
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
        return await Publish(previous, session.State);
    }

    /// <summary>Makes <paramref name="next"/> the activation's state and tells the silo's observers and the listening nodes.</summary>
    private async Task<QrSessionSnapshot> Publish(QrSessionState? previous, QrSessionState next)
    {
        session.State = next;
        foreach (var observer in observers)
        {
            observer.OnCommitted(Key, previous, next);
        }
        census.Report(ActivationCensus.QrSession, Key, next.State);
        var snapshot = Snapshot(next);
        // One-way messages: a slow or dead node never holds up the transition. The state is stored, and watchers
        // re-read snapshots on reconnect and long-polls on timeout, so a lost message delays an update, never loses it.
        var change = new QrSessionChanged(next.Version, snapshot);
        await _listeners.Notify(l => l.ChangedAsync(change));
        if (IsTerminal(next.State))
        {
            Finish(next, Now);
        }
        ArmTimer(next);
        return snapshot;
    }

    /// <summary>
    /// A finished session stays active (so late callers get the precise error) for the rest of the grace period, and
    /// its deactivation deletes it: idle collection does the waiting, with no timer per finished session (a node that
    /// finishes a thousand sessions a second would otherwise hold over a hundred thousand timers).
    /// </summary>
    private void Finish(QrSessionState s, DateTimeOffset now)
    {
        var left = s.EndedAt!.Value + options.TerminalGrace - now;
        if (left > TimeSpan.Zero)
        {
            DelayDeactivation(left);
        }
    }

    /// <summary>
    /// Points the timer at the state's next deadline, unless it already points there (reads call this too). A finished
    /// session needs one only to hand its audit entries over.
    /// </summary>
    private void ArmTimer(QrSessionState s)
    {
        if (NextDeadline(s) is not { } deadline)
        {
            _armedFor = null;
            _deadline?.Dispose();
            _deadline = null;
            return;
        }
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

    /// <summary>An ended session's one deadline is handing its audit entries over, right away (its deletion waits for collection).</summary>
    private DateTimeOffset? NextDeadline(QrSessionState s) => s.State switch
    {
        Pending => s.QrExpiresAt < s.ExpiresAt ? s.QrExpiresAt : s.ExpiresAt,
        Scanned => s.ApproveBefore!.Value,
        Approved => s.ClaimBefore!.Value,
        _ when !_auditHandedOver && s.Audit.Count > 0 => _auditRetryAt ?? s.EndedAt!.Value,
        _ => null,
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
    private string QrUrl(QrSessionState s) => $"{options.PublicOrigin.TrimEnd('/')}/l/#{Key}.{SecretOf(s, s.Rotation)}";

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

    [LoggerMessage(LogLevel.Warning, "A finished QR session's audit entries could not be handed to the trail ({Error}); trying again")]
    private static partial void LogAuditHandOverFailed(ILogger log, string error);

    [LoggerMessage(LogLevel.Warning, "A finished QR session could not be deleted as its activation ended ({Error}); it is deleted later")]
    private static partial void LogDeleteFailed(ILogger log, string error);

    [LoggerMessage(LogLevel.Warning, "The audit trail refused a finished QR session's entries ({Code})")]
    private static partial void LogAuditRefused(ILogger log, string code);
}
