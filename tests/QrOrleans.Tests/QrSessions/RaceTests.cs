using QrOrleans.QrSessions;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.QrSessions;

/// <summary>The races a real deployment sees, each run many times, on a two-silo cluster.</summary>
public sealed class RaceTests
{
    private static readonly Requester Desktop = new("d", "browser", "b", "o", "1.1.1.1", DateTimeOffset.UnixEpoch);

    [Fact]
    public async Task Two_phones_scanning_the_same_code_at_once_exactly_one_wins()
    {
        await using var silo = await SiloHarness.StartAsync(silos: 2, realClock: true);
        for (var i = 0; i < 300; i++)
        {
            var grain = silo.Grains.GetGrain<IQrSessionGrain>(Grains.Secrets.NewToken(16));
            var created = await grain.CreateAsync(Desktop, default);
            var secret = created.Snapshot.Qr!.Url.Split('.')[^1];
            using var go = new ManualResetEventSlim();
            var outcomes = await Task.WhenAll(new[] { "alice", "bob" }.Select(user => Task.Run(async () =>
            {
                go.Wait();
                try
                {
                    await grain.ScanAsync(secret, user, "1.1.1.1", default);
                    return "won";
                }
                catch (GrainException e)
                {
                    return e.Code;
                }
            }, TestContext.Current.CancellationToken)).Append(Task.Run(() => { go.Set(); return "start"; })));

            Assert.Equal(1, outcomes.Count(o => o == "won"));
            Assert.Equal(1, outcomes.Count(o => o == "qr_already_scanned"));
        }
    }

    [Fact]
    public async Task Two_claims_at_once_exactly_one_succeeds()
    {
        await using var silo = await SiloHarness.StartAsync(silos: 2, realClock: true);
        await silo.AddUsersAsync("alice");
        for (var i = 0; i < 300; i++)
        {
            var grain = silo.Grains.GetGrain<IQrSessionGrain>(Grains.Secrets.NewToken(16));
            var created = await grain.CreateAsync(Desktop, default);
            await grain.ScanAsync(created.Snapshot.Qr!.Url.Split('.')[^1], "alice", "1.1.1.1", default);
            await grain.ApproveAsync("alice", (await grain.GetSnapshotAsync(created.DesktopToken, default)).NumberMatch!, default);

            var outcomes = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
            {
                try
                {
                    return (await grain.ClaimAsync(created.DesktopToken, default)).DeviceId;
                }
                catch (GrainException e)
                {
                    return e.Code;
                }
            }, TestContext.Current.CancellationToken)));

            Assert.Single(outcomes, o => o.StartsWith("alice-", StringComparison.Ordinal));
            Assert.Single(outcomes, o => o == "already_claimed");
        }
    }

    [Fact]
    public async Task Approve_racing_the_approval_deadline_is_either_approved_or_expired_never_both()
    {
        // On the real clock the grain's deadline timer races the approval too.
        await using var silo = await SiloHarness.StartAsync(o => o.ApprovalWindow = TimeSpan.FromMilliseconds(40), silos: 2, realClock: true);
        await silo.AddUsersAsync("alice");
        var approved = 0;
        var expired = 0;
        {
            for (var i = 0; i < 200; i++)
            {
                var grain = silo.Grains.GetGrain<IQrSessionGrain>(Grains.Secrets.NewToken(16));
                var created = await grain.CreateAsync(Desktop, default);
                await grain.ScanAsync(created.Snapshot.Qr!.Url.Split('.')[^1], "alice", "1.1.1.1", default);
                var number = (await grain.GetSnapshotAsync(created.DesktopToken, default)).NumberMatch!;
                await Task.Delay(Random.Shared.Next(0, 80));

                string outcome;
                try
                {
                    outcome = (await grain.ApproveAsync("alice", number, default)).State;
                }
                catch (GrainException e)
                {
                    outcome = e.Code;
                }
                var state = (await grain.GetSnapshotAsync(created.DesktopToken, default)).State;
                if (outcome == QrSessionStates.Approved)
                {
                    approved++;
                    Assert.Equal(QrSessionStates.Approved, state);
                    Assert.Equal("alice", (await grain.ClaimAsync(created.DesktopToken, default)).UserId);
                }
                else
                {
                    expired++;
                    Assert.Equal("qr_expired", outcome);
                    Assert.Equal(QrSessionStates.Expired, state);
                    await Assert.ThrowsAsync<GrainException>(() => grain.ClaimAsync(created.DesktopToken, default));
                }
            }
        }
        // Both sides of the race were exercised.
        Assert.True(approved > 0 && expired > 0, $"approved {approved}, expired {expired}");
    }
}
