using System.Security.Cryptography;
using QrOrleans.QrSessions;
using QrOrleans.Runtime;
using static QrOrleans.QrSessions.QrSessionStates;

namespace QrOrleans.Grains.QrSessions;

/// <summary>Persisted state of one QR sign-in. Holds hashes of the desktop token and of superseded QR secrets.</summary>
public sealed record QrSessionState
{
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
}

/// <summary>
/// The QR sign-in ceremony: pending → scanned → approved → completed, or rejected / cancelled / expired.
/// One method per transition; each checks the state it may start from. Time-driven transitions (QR rotation,
/// windows running out, deletion after the grace period) happen on the "deadline" reminder and, so that a
/// late reminder never lets a caller act past a deadline, at the start of every transition too.
/// </summary>
public sealed class QrSessionGrain(GrainId id, IGrainRuntime runtime, QrSessionOptions options)
    : Grain<QrSessionState>(id, runtime), IQrSessionGrain, IRemindable
{
    private const string DeadlineReminder = "deadline";

    public Task<SessionCreated> CreateAsync(Requester requester, CancellationToken ct) =>
        Transition<SessionCreated>(turn =>
        {
            if (turn.State is not null)
            {
                throw Errors.InvalidState(turn.State.State, "create");
            }
            var desktopToken = Secrets.NewToken(32);
            var ttl = options.QrTtl;
            turn.State = new QrSessionState
            {
                State = Pending,
                DesktopTokenHash = Secrets.Hash(desktopToken),
                Requester = requester,
                ExpiresAt = turn.Now + ttl * options.MaxRotations,
                QrSecret = Secrets.NewToken(16),
                Rotation = 1,
                MaxRotations = options.MaxRotations,
                QrExpiresAt = turn.Now + ttl,
            };
            var snapshot = Commit(turn);
            return new SessionCreated(Id.Key, desktopToken, snapshot);
        }, ct);

    public async Task<QrSessionSnapshot> GetSnapshotAsync(string desktopToken, CancellationToken ct)
    {
        var read = await ReadAsync(ct).ConfigureAwait(false);
        if (read is not { } r || !Secrets.MatchesHash(desktopToken, r.State.DesktopTokenHash))
        {
            throw Errors.Unauthenticated("A valid desktop token for this session is required.");
        }
        return Snapshot(r.State, r.Version);
    }

    public Task<ScanResult> ScanAsync(string qrSecret, string userId, string scannerIp, CancellationToken ct) =>
        Transition<ScanResult>(turn =>
        {
            if (turn.State is null)
            {
                return Errors.QrInvalid();
            }
            AdvanceClock(turn);
            var s = turn.State!;
            if (!Secrets.FixedTimeEquals(qrSecret, s.QrSecret))
            {
                return s.SupersededSecretHashes.Contains(Secrets.Hash(qrSecret)) ? Errors.QrExpired() : Errors.QrInvalid();
            }
            switch (s.State)
            {
                case Pending:
                    var number = RandomNumberGenerator.GetInt32(10, 100);
                    var approveBefore = turn.Now + options.ApprovalWindow;
                    turn.State = s with
                    {
                        State = Scanned,
                        ScannerUserId = userId,
                        ScannerIp = scannerIp,
                        NumberMatch = number.ToString(System.Globalization.CultureInfo.InvariantCulture),
                        NumberChoices = NumberChoices(number),
                        ApproveBefore = approveBefore,
                    };
                    Commit(turn);
                    return ScanView(turn.State);
                case Scanned when s.ScannerUserId == userId:
                    return ScanView(s); // the same phone scanning again sees the same question
                case Scanned:
                    return Errors.QrAlreadyScanned();
                case Expired:
                    return Errors.QrExpired();
                default:
                    return s.ScannerUserId is not null && s.ScannerUserId != userId ? Errors.QrAlreadyScanned() : Errors.QrAlreadyUsed();
            }
        }, ct);

    public Task<QrSessionSnapshot> ApproveAsync(string userId, string number, CancellationToken ct) =>
        Transition<QrSessionSnapshot>(turn =>
        {
            if (ScannerOnly(turn, userId, "approve") is { } refused)
            {
                return refused;
            }
            var s = turn.State!;
            if (!Secrets.FixedTimeEquals(number, s.NumberMatch!))
            {
                turn.State = s with { State = Rejected, EndedAt = turn.Now };
                Commit(turn);
                return Errors.NumberMismatch();
            }
            turn.State = s with { State = Approved, ClaimBefore = turn.Now + options.ClaimWindow };
            return Commit(turn);
        }, ct);

    public Task<QrSessionSnapshot> RejectAsync(string userId, CancellationToken ct) =>
        Transition<QrSessionSnapshot>(turn =>
        {
            if (ScannerOnly(turn, userId, "reject") is { } refused)
            {
                return refused;
            }
            turn.State = turn.State! with { State = Rejected, EndedAt = turn.Now };
            return Commit(turn);
        }, ct);

    public Task<QrSessionSnapshot> CancelAsync(string desktopToken, CancellationToken ct) =>
        Transition<QrSessionSnapshot>(turn =>
        {
            var s = Desktop(turn, desktopToken);
            AdvanceClock(turn);
            s = turn.State!;
            switch (s.State)
            {
                case Pending or Scanned or Approved:
                    turn.State = s with { State = Cancelled, EndedAt = turn.Now };
                    return Commit(turn);
                case Cancelled:
                    return Snapshot(s, turn.Version);
                case Expired:
                    return Errors.QrExpired();
                default:
                    return Errors.InvalidState(s.State, "cancel");
            }
        }, ct);

    public Task<ClaimGrant> ClaimAsync(string desktopToken, CancellationToken ct) =>
        Transition<ClaimGrant>(turn =>
        {
            var s = Desktop(turn, desktopToken);
            AdvanceClock(turn);
            s = turn.State!;
            switch (s.State)
            {
                case Approved:
                    var deviceId = s.ScannerUserId + "-" + Secrets.NewHexId(8);
                    turn.State = s with { State = Completed, DeviceId = deviceId, EndedAt = turn.Now };
                    Commit(turn);
                    return new ClaimGrant(s.ScannerUserId!, deviceId, s.Requester.ClientName, s.Requester.ClientKind, s.Requester.Ip);
                case Pending or Scanned:
                    return Errors.NotApproved();
                case Completed:
                    return Errors.AlreadyClaimed();
                case Expired:
                    return Errors.QrExpired();
                default:
                    return Errors.InvalidState(s.State, "claim");
            }
        }, ct);

    public Task ReceiveReminderAsync(string name, DateTimeOffset dueAt, CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            if (turn.State is not { } s)
            {
                return false;
            }
            if (IsTerminal(s.State))
            {
                if (turn.Now >= s.EndedAt + options.TerminalGrace)
                {
                    turn.ClearReminder(DeadlineReminder);
                    turn.State = null; // the grace period is over: later callers get qr_invalid / 401
                }
                return true;
            }
            AdvanceClock(turn);
            return true;
        }, ct);

    /// <summary>Applies every transition that time alone causes, up to now.</summary>
    private void AdvanceClock(Turn<QrSessionState> turn)
    {
        var s = turn.State!;
        var now = turn.Now;
        switch (s.State)
        {
            case Pending when now >= s.QrExpiresAt && s.Rotation < s.MaxRotations:
                turn.State = s with
                {
                    QrSecret = Secrets.NewToken(16),
                    Rotation = s.Rotation + 1,
                    QrExpiresAt = now + options.QrTtl,
                    SupersededSecretHashes = [.. s.SupersededSecretHashes, Secrets.Hash(s.QrSecret)],
                };
                Commit(turn);
                break;
            case Pending when now >= s.QrExpiresAt || now >= s.ExpiresAt:
            case Scanned when now >= s.ApproveBefore:
            case Approved when now >= s.ClaimBefore:
                turn.State = s with { State = Expired, EndedAt = now };
                Commit(turn);
                break;
        }
    }

    /// <summary>Approve and reject: only the user who scanned, only while scanned and in time.</summary>
    private GrainException? ScannerOnly(Turn<QrSessionState> turn, string userId, string action)
    {
        if (turn.State is null)
        {
            return Errors.QrInvalid();
        }
        AdvanceClock(turn);
        var s = turn.State!;
        if (s.ScannerUserId is not null && s.ScannerUserId != userId)
        {
            return Errors.NotScanner();
        }
        return s.State switch
        {
            Scanned => null,
            Expired => Errors.QrExpired(),
            Pending => Errors.InvalidState(s.State, action),
            _ => Errors.QrAlreadyUsed(),
        };
    }

    private static QrSessionState Desktop(Turn<QrSessionState> turn, string desktopToken)
    {
        if (turn.State is not { } s || !Secrets.MatchesHash(desktopToken, s.DesktopTokenHash))
        {
            throw Errors.Unauthenticated("A valid desktop token for this session is required.");
        }
        return s;
    }

    /// <summary>Publishes the new snapshot and points the deadline reminder at the state's next deadline.</summary>
    private QrSessionSnapshot Commit(Turn<QrSessionState> turn)
    {
        var s = turn.State!;
        var snapshot = Snapshot(s, turn.NextVersion);
        turn.Publish(snapshot, Json);
        turn.SetReminder(DeadlineReminder, NextDeadline(s));
        return snapshot;
    }

    private DateTimeOffset NextDeadline(QrSessionState s) => s.State switch
    {
        Pending => s.QrExpiresAt < s.ExpiresAt ? s.QrExpiresAt : s.ExpiresAt,
        Scanned => s.ApproveBefore!.Value,
        Approved => s.ClaimBefore!.Value,
        _ => s.EndedAt!.Value + options.TerminalGrace,
    };

    private QrSessionSnapshot Snapshot(QrSessionState s, long version) => new(
        Id.Key,
        s.State,
        version,
        s.State switch
        {
            Scanned => s.ApproveBefore!.Value,
            Approved => s.ClaimBefore!.Value,
            _ => s.ExpiresAt,
        },
        s.State == Pending ? new QrCodeView(QrUrl(s), s.QrExpiresAt, s.Rotation, s.MaxRotations) : null,
        s.State == Scanned ? s.NumberMatch : null);

    private string QrUrl(QrSessionState s) => $"{options.PublicOrigin.TrimEnd('/')}/l/{Id.Key}.{s.QrSecret}";

    private ScanResult ScanView(QrSessionState s) => new(
        Id.Key,
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
