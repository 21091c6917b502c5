using Microsoft.Extensions.DependencyInjection;
using Orleans.Storage;
using QrOrleans.Gateway.Observability;
using QrOrleans.Grains.QrSessions;
using QrOrleans.QrSessions;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Api;

/// <summary>
/// A write refused for its ETag is retried once for the whole request, at the gateway's edge: the phone gets the
/// answer of the newer truth, not a 503, and the node counts the conflict (the dashboard's and
/// qrorleans.grain.turn.conflicts' figure). Nothing below the edge retries, so retries cannot nest.
/// </summary>
public sealed class ConflictRetryTests
{
    [Fact]
    public async Task A_scan_whose_session_was_changed_behind_its_activation_is_run_again_and_answers_the_newer_state()
    {
        await using var node = await GatewayNode.StartAsync();
        var api = new ApiClient(node.Http);
        var phone = await api.NewPhoneAsync();
        var session = await api.CreateSessionAsync();
        var stats = node.Services.GetRequiredService<NodeStats>();
        var conflictsBefore = stats.TurnConflicts;

        // Another activation (during a partition, say) cancelled the session: the one here still thinks it is pending.
        var storage = node.Services.GetRequiredKeyedService<IGrainStorage>(OrleansNames.Storage);
        var grainId = node.Services.GetRequiredService<IGrainFactory>().GetGrain<IQrSessionGrain>(session.SessionId).GetGrainId();
        var stored = new Orleans.GrainState<QrSessionState>();
        await storage.ReadStateAsync("session", grainId, stored);
        stored.State = stored.State! with { State = QrSessionStates.Cancelled, EndedAt = DateTimeOffset.UtcNow, Version = stored.State.Version + 1 };
        await storage.WriteStateAsync("session", grainId, stored);

        var scan = await api.ScanAsync(phone.AccessToken, session.QrUrl);
        Assert.Equal((409, "qr_already_used"), (scan.Status, scan.Code));
        Assert.Equal(conflictsBefore + 1, stats.TurnConflicts);
        Assert.Equal("cancelled", (await api.SnapshotAsync(session)).EnsureStatus(200).Body.GetProperty("state").GetString());
    }
}
