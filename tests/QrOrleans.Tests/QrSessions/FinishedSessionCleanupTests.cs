using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.QrSessions;

/// <summary>
/// What an operator sees in GET /v1/cluster after sign-ins finish: each running session holds one activation (and,
/// on the embedded default, no reminder: nothing there outlives the silo), and a finished one gives it back once its
/// grace period is over and it is collected, so nothing grows with the number of sign-ins a node has served.
/// </summary>
public sealed class FinishedSessionCleanupTests
{
    [Fact]
    public async Task Finished_sessions_leave_no_reminder_and_no_activation_behind_after_their_grace_period()
    {
        await using var node = await GatewayNode.StartAsync(new Dictionary<string, string?>
        {
            ["QrOrleans:QrSession:TerminalGrace"] = "00:00:02",
            ["QrOrleans:Cluster:CollectionAge"] = "00:00:03",
            ["QrOrleans:Cluster:CollectionQuantum"] = "00:00:01",
        });
        var api = new ApiClient(node.Http);
        var before = await CountsAsync(api);

        var sessions = new List<NewSession>();
        for (var i = 0; i < 20; i++)
        {
            sessions.Add(await api.CreateSessionAsync());
        }
        var running = await CountsAsync(api);
        Assert.Equal(before.Reminders, running.Reminders);
        Assert.Equal(before.Sessions + 20, running.Sessions);

        foreach (var s in sessions)
        {
            (await api.CancelAsync(s)).EnsureStatus(200);
        }
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        var now = await CountsAsync(api);
        while (now != before)
        {
            Assert.True(DateTime.UtcNow < deadline, $"still held 30 s after cancelling: {now} (before: {before})");
            await Task.Delay(250, TestContext.Current.CancellationToken);
            now = await CountsAsync(api);
        }
    }

    private static async Task<(int Reminders, int Sessions)> CountsAsync(ApiClient api)
    {
        var cluster = (await api.SendAsync(HttpMethod.Get, "/v1/cluster", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200).Body;
        var sessions = cluster.GetProperty("activations").EnumerateObject()
            .Where(p => p.Name.EndsWith(".QrSessionGrain", StringComparison.Ordinal)).Sum(p => p.Value.GetInt32());
        return (cluster.GetProperty("reminders").GetInt32(), sessions);
    }
}
