using Microsoft.Extensions.DependencyInjection;
using QrOrleans.QrSessions;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.QrSessions;

/// <summary>Every transition of ARCHITECTURE.md's QR session, and every refusal with its code.</summary>
public sealed class QrSessionStateMachineTests : IAsyncLifetime
{
    private const string Alice = "alice";
    private const string Bob = "bob";
    private SiloHarness _silo = null!;

    private Microsoft.Extensions.Time.Testing.FakeTimeProvider Clock => _silo.Clock!;

    public async ValueTask InitializeAsync()
    {
        _silo = await SiloHarness.StartAsync(o =>
        {
            o.QrTtl = TimeSpan.FromSeconds(30);
            o.MaxRotations = 3;
            o.ApprovalWindow = TimeSpan.FromMinutes(1);
            o.ClaimWindow = TimeSpan.FromMinutes(1);
            o.TerminalGrace = TimeSpan.FromMinutes(2);
        });
        await _silo.AddUsersAsync(Alice, Bob);
    }

    public ValueTask DisposeAsync() => _silo.DisposeAsync();

    private static readonly Requester Desktop = new("Firefox on Linux", "browser", "Firefox 140", "Linux", "192.168.1.20", DateTimeOffset.UnixEpoch);

    private async Task<(IQrSessionGrain Grain, SessionCreated Created)> NewSessionAsync()
    {
        var id = Grains.Secrets.NewToken(16);
        var grain = _silo.Grains.GetGrain<IQrSessionGrain>(id);
        return (grain, await grain.CreateAsync(Desktop, CancellationToken.None));
    }

    private static string Secret(QrSessionSnapshot s) => s.Qr!.Url.Split('.')[^1];

    private static async Task<string> CodeOf(Func<Task> action) => (await Assert.ThrowsAsync<GrainException>(action)).Code;

    [Fact]
    public async Task A_new_session_is_pending_with_server_generated_ids_and_a_qr_url()
    {
        var (_, created) = await NewSessionAsync();
        Assert.Equal(QrSessionStates.Pending, created.Snapshot.State);
        Assert.Equal(1, created.Snapshot.Version);
        Assert.Equal(22, created.Snapshot.SessionId.Length);                 // 128 bits, base64url
        Assert.True(created.DesktopToken.Length >= 43);                       // ≥ 256 bits
        Assert.Matches($"^https://qr.example/l/#{created.Snapshot.SessionId}\\.[A-Za-z0-9_-]{{22}}$", created.Snapshot.Qr!.Url);
        Assert.Equal(1, created.Snapshot.Qr.Rotation);
        Assert.Equal(3, created.Snapshot.Qr.MaxRotations);
    }

    [Fact]
    public async Task Scan_binds_the_first_scanner_and_shows_a_number_among_three_choices()
    {
        var (grain, created) = await NewSessionAsync();
        var scan = await grain.ScanAsync(Secret(created.Snapshot), Alice, "192.168.1.77", ct: CancellationToken.None);
        var snapshot = await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None);

        Assert.Equal(QrSessionStates.Scanned, snapshot.State);
        Assert.Null(snapshot.Qr);
        Assert.Equal(3, scan.NumberChoices.Count);
        Assert.Contains(snapshot.NumberMatch, scan.NumberChoices);
        Assert.Equal("Firefox on Linux", scan.Requester.ClientName);
        Assert.True(scan.Requester.SameNetwork);
        Assert.Equal("qr_already_scanned", await CodeOf(() => grain.ScanAsync(Secret(created.Snapshot), Bob, "10.0.0.1", ct: CancellationToken.None)));
    }

    [Fact]
    public async Task A_phone_on_another_network_is_told_so()
    {
        var (grain, created) = await NewSessionAsync();
        var scan = await grain.ScanAsync(Secret(created.Snapshot), Alice, "203.0.113.9", ct: CancellationToken.None);
        Assert.False(scan.Requester.SameNetwork);
    }

    [Fact]
    public async Task Approve_with_the_right_number_then_claim_completes_once()
    {
        var (grain, created) = await NewSessionAsync();
        await grain.ScanAsync(Secret(created.Snapshot), Alice, "192.168.1.77", ct: CancellationToken.None);
        var number = (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).NumberMatch!;

        Assert.Equal("not_approved", await CodeOf(() => grain.ClaimAsync(created.DesktopToken, CancellationToken.None)));
        var approved = await grain.ApproveAsync(Alice, number, ct: CancellationToken.None);
        Assert.Equal(QrSessionStates.Approved, approved.State);

        var grant = await grain.ClaimAsync(created.DesktopToken, CancellationToken.None);
        Assert.Equal(Alice, grant.UserId);
        Assert.StartsWith(Alice + "-", grant.DeviceId, StringComparison.Ordinal);
        Assert.Equal(QrSessionStates.Completed, (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).State);
        Assert.Equal("already_claimed", await CodeOf(() => grain.ClaimAsync(created.DesktopToken, CancellationToken.None)));
        Assert.Equal("qr_already_used", await CodeOf(() => grain.ScanAsync(Secret(created.Snapshot), Alice, "1.1.1.1", ct: CancellationToken.None)));
    }

    [Fact]
    public async Task A_wrong_number_rejects_the_session()
    {
        var (grain, created) = await NewSessionAsync();
        var scan = await grain.ScanAsync(Secret(created.Snapshot), Alice, "192.168.1.77", ct: CancellationToken.None);
        var right = (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).NumberMatch;
        var wrong = scan.NumberChoices.First(n => n != right);

        Assert.Equal("number_mismatch", await CodeOf(() => grain.ApproveAsync(Alice, wrong, ct: CancellationToken.None)));
        Assert.Equal(QrSessionStates.Rejected, (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).State);
        Assert.Equal("qr_already_used", await CodeOf(() => grain.ApproveAsync(Alice, right!, ct: CancellationToken.None)));
        Assert.Equal("invalid_state", await CodeOf(() => grain.ClaimAsync(created.DesktopToken, CancellationToken.None)));
    }

    [Fact]
    public async Task Only_the_scanner_may_approve_or_reject()
    {
        var (grain, created) = await NewSessionAsync();
        await grain.ScanAsync(Secret(created.Snapshot), Alice, "192.168.1.77", ct: CancellationToken.None);
        var number = (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).NumberMatch!;

        Assert.Equal("not_scanner", await CodeOf(() => grain.ApproveAsync(Bob, number, ct: CancellationToken.None)));
        Assert.Equal("not_scanner", await CodeOf(() => grain.RejectAsync(Bob, ct: CancellationToken.None)));
        Assert.Equal(QrSessionStates.Rejected, (await grain.RejectAsync(Alice, ct: CancellationToken.None)).State);
    }

    [Fact]
    public async Task Approve_before_a_scan_is_an_invalid_state()
    {
        var (grain, _) = await NewSessionAsync();
        Assert.Equal("invalid_state", await CodeOf(() => grain.ApproveAsync(Alice, "42", ct: CancellationToken.None)));
        Assert.Equal("invalid_state", await CodeOf(() => grain.RejectAsync(Alice, ct: CancellationToken.None)));
    }

    [Fact]
    public async Task The_desktop_can_cancel_until_the_claim()
    {
        var (grain, created) = await NewSessionAsync();
        await grain.ScanAsync(Secret(created.Snapshot), Alice, "192.168.1.77", ct: CancellationToken.None);
        Assert.Equal(QrSessionStates.Cancelled, (await grain.CancelAsync(created.DesktopToken, CancellationToken.None)).State);
        Assert.Equal(QrSessionStates.Cancelled, (await grain.CancelAsync(created.DesktopToken, CancellationToken.None)).State);
        Assert.Equal("qr_already_used", await CodeOf(() => grain.ApproveAsync(Alice, "42", ct: CancellationToken.None)));
        Assert.Equal("invalid_state", await CodeOf(() => grain.ClaimAsync(created.DesktopToken, CancellationToken.None)));
    }

    [Fact]
    public async Task A_wrong_desktop_token_is_unauthenticated_for_every_desktop_call()
    {
        var (grain, _) = await NewSessionAsync();
        var wrong = Grains.Secrets.NewToken(32);
        Assert.Equal("unauthenticated", await CodeOf(() => grain.GetSnapshotAsync(wrong, CancellationToken.None)));
        Assert.Equal("unauthenticated", await CodeOf(() => grain.CancelAsync(wrong, CancellationToken.None)));
        Assert.Equal("unauthenticated", await CodeOf(() => grain.ClaimAsync(wrong, CancellationToken.None)));
        var unknown = _silo.Grains.GetGrain<IQrSessionGrain>(Grains.Secrets.NewToken(16));
        Assert.Equal("unauthenticated", await CodeOf(() => unknown.GetSnapshotAsync(wrong, CancellationToken.None)));
    }

    [Fact]
    public async Task The_qr_rotates_after_its_ttl_and_a_superseded_code_is_expired()
    {
        var (grain, created) = await NewSessionAsync();
        var first = Secret(created.Snapshot);
        Clock.Advance(TimeSpan.FromSeconds(29));
        Assert.Equal(1, (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).Qr!.Rotation);
        Clock.Advance(TimeSpan.FromSeconds(1));

        var rotated = await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None);
        Assert.Equal(2, rotated.Qr!.Rotation);
        Assert.Equal(2, rotated.Version);
        Assert.NotEqual(first, Secret(rotated));
        Assert.Equal("qr_expired", await CodeOf(() => grain.ScanAsync(first, Alice, "1.1.1.1", ct: CancellationToken.None)));
        Assert.Equal("qr_invalid", await CodeOf(() => grain.ScanAsync(Grains.Secrets.NewToken(16), Alice, "1.1.1.1", ct: CancellationToken.None)));
        await grain.ScanAsync(Secret(rotated), Alice, "1.1.1.1", ct: CancellationToken.None);
    }

    [Fact]
    public async Task After_max_rotations_the_session_expires_and_nothing_rotates_any_more()
    {
        var (grain, created) = await NewSessionAsync();
        for (var i = 0; i < 3; i++)
        {
            Clock.Advance(TimeSpan.FromSeconds(30));
            await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None);
        }
        var expired = await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None);
        Assert.Equal(QrSessionStates.Expired, expired.State);
        Assert.Equal(4, expired.Version); // created, rotation 2, rotation 3, expired
        Clock.Advance(TimeSpan.FromSeconds(30));
        Assert.Equal(4, (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).Version);
    }

    [Fact]
    public async Task A_late_reminder_never_lets_a_scan_use_a_code_past_its_life()
    {
        var (grain, created) = await NewSessionAsync();
        Clock.Advance(TimeSpan.FromSeconds(31)); // no timer has run: the scan itself applies the deadline
        Assert.Equal("qr_expired", await CodeOf(() => grain.ScanAsync(Secret(created.Snapshot), Alice, "1.1.1.1", ct: CancellationToken.None)));
    }

    [Fact]
    public async Task The_approval_window_and_the_claim_window_expire_the_session()
    {
        var (grain, created) = await NewSessionAsync();
        await grain.ScanAsync(Secret(created.Snapshot), Alice, "1.1.1.1", ct: CancellationToken.None);
        var number = (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).NumberMatch!;
        Clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal("qr_expired", await CodeOf(() => grain.ApproveAsync(Alice, number, ct: CancellationToken.None)));
        Assert.Equal(QrSessionStates.Expired, (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).State);

        var (grain2, created2) = await NewSessionAsync();
        await grain2.ScanAsync(Secret(created2.Snapshot), Alice, "1.1.1.1", ct: CancellationToken.None);
        await grain2.ApproveAsync(Alice, (await grain2.GetSnapshotAsync(created2.DesktopToken, ct: CancellationToken.None)).NumberMatch!, ct: CancellationToken.None);
        Clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal(QrSessionStates.Expired, (await grain2.GetSnapshotAsync(created2.DesktopToken, CancellationToken.None)).State);
        Assert.Equal("qr_expired", await CodeOf(() => grain2.ClaimAsync(created2.DesktopToken, CancellationToken.None)));
    }

    [Fact]
    public async Task A_finished_session_is_kept_for_the_grace_period_then_deleted()
    {
        var (grain, created) = await NewSessionAsync();
        await grain.CancelAsync(created.DesktopToken, CancellationToken.None);
        Clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal("qr_already_used", await CodeOf(() => grain.ScanAsync(Secret(created.Snapshot), Alice, "1.1.1.1", ct: CancellationToken.None)));
        Clock.Advance(TimeSpan.FromMinutes(1));
        Assert.Equal("qr_invalid", await CodeOf(() => grain.ScanAsync(Secret(created.Snapshot), Alice, "1.1.1.1", ct: CancellationToken.None)));
        Assert.Equal("unauthenticated", await CodeOf(() => grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)));
        // Deleted with its recovery reminder: nothing is left behind to wake it.
        Assert.Empty(await _silo.RemindersOfAsync(grain));
    }

    [Fact]
    public async Task The_same_phone_scanning_twice_sees_the_same_question()
    {
        var (grain, created) = await NewSessionAsync();
        var first = await grain.ScanAsync(Secret(created.Snapshot), Alice, "1.1.1.1", ct: CancellationToken.None);
        var again = await grain.ScanAsync(Secret(created.Snapshot), Alice, "1.1.1.1", ct: CancellationToken.None);
        Assert.Equal(first.NumberChoices, again.NumberChoices);
        Assert.Equal(2, (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).Version);
    }

    /// <summary>
    /// A rotation is not written: storage still holds the first code's rotation, and an activation that comes back
    /// (a crash, a move to another silo) derives the same live code from the seed and the time, with the same version.
    /// </summary>
    [Fact]
    public async Task A_rotation_is_not_written_and_an_activation_that_comes_back_shows_the_same_code()
    {
        var (grain, created) = await NewSessionAsync();
        var first = Secret(created.Snapshot);
        Clock.Advance(TimeSpan.FromSeconds(65));
        var rotated = await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None);
        Assert.Equal((3, 3L), (rotated.Qr!.Rotation, rotated.Version));

        var storage = _silo.Cluster.Silos[0].ServiceProvider.GetRequiredKeyedService<Orleans.Storage.IGrainStorage>(OrleansNames.Storage);
        var stored = new Orleans.GrainState<Grains.QrSessions.QrSessionState>();
        await storage.ReadStateAsync("session", grain.GetGrainId(), stored);
        Assert.Equal((1, 1L), (stored.State!.Rotation, stored.State.Version));

        await _silo.Cluster.DeactivateAsync(grain);
        var again = await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None);
        Assert.Equal((rotated.Qr.Url, rotated.Qr.ExpiresAt, rotated.Version), (again.Qr!.Url, again.Qr.ExpiresAt, again.Version));
        Assert.Equal("qr_expired", await CodeOf(() => grain.ScanAsync(first, Alice, "1.1.1.1", ct: CancellationToken.None)));
        await grain.ScanAsync(Secret(again), Alice, "1.1.1.1", ct: CancellationToken.None);
        Assert.Equal(4L, (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).Version);
    }

    /// <summary>
    /// The ceremony's audit entries ride in the session's own writes and reach the user's trail in one append when it
    /// ends, stamped when each step happened; sent again (an activation after a restart does), none is doubled.
    /// </summary>
    [Fact]
    public async Task The_ceremonys_audit_entries_reach_the_trail_once_when_it_ends_stamped_when_they_happened()
    {
        var (grain, created) = await NewSessionAsync();
        var phone = new PhoneActor("alice-phone", "Chrome 120 on Android", "10.0.0.9");
        var trail = _silo.Grains.GetGrain<QrOrleans.Audit.IAuditGrain>(Alice);
        var before = (await trail.ListAsync(null, null, 500)).Count;

        var scannedAt = Clock.GetUtcNow();
        await grain.ScanAsync(Secret(created.Snapshot), Alice, "10.0.0.9", phone, CancellationToken.None);
        Clock.Advance(TimeSpan.FromSeconds(5));
        var number = (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).NumberMatch!;
        await grain.ApproveAsync(Alice, number, phone, CancellationToken.None);
        Assert.Equal(before, (await trail.ListAsync(null, null, 500)).Count); // still running: nothing handed over

        Clock.Advance(TimeSpan.FromSeconds(5));
        var grant = await grain.BeginClaimAsync(created.DesktopToken, null, CancellationToken.None);
        await grain.ConfirmClaimAsync(created.DesktopToken, grant.GrantId!, "192.168.1.20", CancellationToken.None);
        IReadOnlyList<QrOrleans.Audit.AuditEntry> entries = [];
        for (var i = 0; i < 50 && entries.Count < before + 3; i++)
        {
            await Task.Delay(50); // handed over on the session's next turn, a timer due at once
            entries = await trail.ListAsync(null, null, 500);
        }
        var mine = entries.Where(e => e.SessionId == created.SessionId).Reverse().ToArray();
        Assert.Equal([QrOrleans.Audit.AuditActions.QrScanned, QrOrleans.Audit.AuditActions.QrApproved, QrOrleans.Audit.AuditActions.DeviceLinked], mine.Select(e => e.Action));
        Assert.Equal(scannedAt, mine[0].At);
        Assert.Equal(("10.0.0.9", "Chrome 120 on Android", "alice-phone"), (mine[0].Ip, mine[0].Client, mine[0].ActorDeviceId));
        Assert.Equal("Firefox on Linux (browser) at 192.168.1.20 asked to sign in", mine[0].Detail);
        Assert.Equal(("192.168.1.20", "Firefox on Linux (browser)", grant.DeviceId), (mine[2].Ip, mine[2].Client, mine[2].DeviceId));

        // An activation after a restart hands the same entries over again: the trail keeps one of each.
        await trail.AppendSessionAsync(mine);
        Assert.Equal(3, (await trail.ListAsync(null, null, 500)).Count(e => e.SessionId == created.SessionId));
    }

    /// <summary>
    /// A claim's begin writes nothing: if the activation that began it goes away before the confirmation, the
    /// confirmation says to claim again (503 claim_interrupted), and the retry gets the same device with a fresh
    /// refresh token (the undelivered one stops working).
    /// </summary>
    [Fact]
    public async Task A_claim_whose_activation_went_away_before_its_confirmation_is_claimed_again_with_the_same_device()
    {
        var (grain, created) = await NewSessionAsync();
        await grain.ScanAsync(Secret(created.Snapshot), Alice, "1.1.1.1", ct: CancellationToken.None);
        var number = (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).NumberMatch!;
        await grain.ApproveAsync(Alice, number, ct: CancellationToken.None);
        var first = await grain.BeginClaimAsync(created.DesktopToken, null, CancellationToken.None);

        await _silo.Cluster.DeactivateAsync(grain);
        var refusal = await Assert.ThrowsAsync<GrainException>(() => grain.ConfirmClaimAsync(created.DesktopToken, first.GrantId!, ct: CancellationToken.None));
        Assert.Equal(("claim_interrupted", 503), (refusal.Code, refusal.Status));
        Assert.Equal(QrSessionStates.Approved, (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).State);

        var again = await grain.BeginClaimAsync(created.DesktopToken, null, CancellationToken.None);
        Assert.Equal(first.DeviceId, again.DeviceId);
        Assert.NotEqual(first.Session!.RefreshToken, again.Session!.RefreshToken);
        await grain.ConfirmClaimAsync(created.DesktopToken, again.GrantId!, ct: CancellationToken.None);
        Assert.Equal(QrSessionStates.Completed, (await grain.GetSnapshotAsync(created.DesktopToken, CancellationToken.None)).State);
        var devices = _silo.Grains.GetGrain<Users.IDeviceGrain>(first.DeviceId);
        var stale = first.Session.RefreshToken.Split('.')[1];
        await Assert.ThrowsAsync<GrainException>(() => devices.RefreshAsync(stale, "1.1.1.1", null));
    }
}
