using FsCheck;
using FsCheck.Fluent;
using QrOrleans.QrSessions;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.QrSessions;

/// <summary>
/// Random sequences of everything that can happen to a session — scans by two users with current, stale or
/// made-up codes, right and wrong numbers, rejects, cancels, claims, rotations and expiries — and the
/// invariants that must survive all of them.
/// </summary>
public sealed class QrSessionPropertyTests
{
    private enum Step { ScanAlice, ScanBob, ScanStale, ScanGarbage, ApproveRight, ApproveWrong, ApproveByBob, RejectAlice, Cancel, Claim, Rotate, ExpireWindow, Purge }

    [Fact]
    public async Task Random_sequences_keep_the_ceremony_invariants()
    {
        // One cluster for every sequence: each sequence has a session of its own, and the shared clock only moves forward.
        await using var silo = await SiloHarness.StartAsync(o =>
        {
            o.QrTtl = TimeSpan.FromSeconds(30);
            o.MaxRotations = 3;
            o.ApprovalWindow = TimeSpan.FromMinutes(1);
            o.ClaimWindow = TimeSpan.FromMinutes(1);
            o.TerminalGrace = TimeSpan.FromMinutes(2);
        });
        await silo.AddUsersAsync("alice", "bob");
        var steps = Gen.Elements(Enum.GetValues<Step>()).ArrayOf().Select(a => a.Take(40).ToArray());
        Prop.ForAll(Arb.From(steps), sequence => Holds(silo, sequence).GetAwaiter().GetResult())
            .QuickCheckThrowOnFailure();
    }

    private static async Task<bool> Holds(SiloHarness silo, Step[] sequence)
    {
        var grain = silo.Grains.GetGrain<IQrSessionGrain>(Grains.Secrets.NewToken(16));
        var created = await grain.CreateAsync(new Requester("d", "browser", "b", "o", "1.1.1.1", DateTimeOffset.UnixEpoch), CancellationToken.None);
        var token = created.DesktopToken;
        var secrets = new List<string> { created.Snapshot.Qr!.Url.Split('.')[^1] };
        var claims = 0;
        var approvedOnce = false;
        string? terminal = null;
        long version = created.Snapshot.Version;
        var deleted = false;

        foreach (var step in sequence)
        {
            try
            {
                switch (step)
                {
                    case Step.ScanAlice: await grain.ScanAsync(secrets[^1], "alice", "1.1.1.2", default); break;
                    case Step.ScanBob: await grain.ScanAsync(secrets[^1], "bob", "1.1.1.3", default); break;
                    case Step.ScanStale: await grain.ScanAsync(secrets[0], "alice", "1.1.1.2", default); break;
                    case Step.ScanGarbage: await grain.ScanAsync(Grains.Secrets.NewToken(16), "alice", "1.1.1.2", default); break;
                    case Step.ApproveRight or Step.ApproveWrong or Step.ApproveByBob:
                        var number = (await grain.GetSnapshotAsync(token, default)).NumberMatch ?? "50";
                        var pick = step == Step.ApproveWrong ? (number == "10" ? "11" : "10") : number;
                        await grain.ApproveAsync(step == Step.ApproveByBob ? "bob" : "alice", pick, default);
                        approvedOnce = true;
                        break;
                    case Step.RejectAlice: await grain.RejectAsync("alice", default); break;
                    case Step.Cancel: await grain.CancelAsync(token, default); break;
                    case Step.Claim:
                        var grant = await grain.ClaimAsync(token, default);
                        if (!approvedOnce || grant.UserId is not ("alice" or "bob"))
                        {
                            return false; // a token would be minted without an approval
                        }
                        claims++;
                        break;
                    // Time passes; the next call applies whatever it made due (as a late timer would).
                    case Step.Rotate: silo.Clock!.Advance(TimeSpan.FromSeconds(30)); break;
                    case Step.ExpireWindow: silo.Clock!.Advance(TimeSpan.FromMinutes(1)); break;
                    case Step.Purge: silo.Clock!.Advance(TimeSpan.FromMinutes(3)); break;
                }
            }
            catch (GrainException)
            {
                // refusals are expected; the invariants below are what matters
            }

            QrSessionSnapshot snapshot;
            try
            {
                snapshot = await grain.GetSnapshotAsync(token, default);
            }
            catch (GrainException e) when (e.Code == "unauthenticated")
            {
                if (terminal is null)
                {
                    return false; // only a finished session may disappear
                }
                deleted = true;
                continue;
            }
            if (deleted || snapshot.Version < version)
            {
                return false; // a deleted session came back, or time went backwards
            }
            version = snapshot.Version;
            if (snapshot.Qr is { } qr && qr.Url.Split('.')[^1] is var s && s != secrets[^1])
            {
                secrets.Add(s);
            }
            if (terminal is not null && snapshot.State != terminal)
            {
                return false; // a terminal state changed
            }
            if (QrSessionStates.IsTerminal(snapshot.State))
            {
                terminal = snapshot.State;
            }
            if (claims > 1 || (claims == 1 && snapshot.State != QrSessionStates.Completed))
            {
                return false;
            }
        }
        return true;
    }
}
