using Microsoft.AspNetCore.Http.HttpResults;
using QrOrleans.Accounts;
using QrOrleans.Gateway.Auth;
using QrOrleans.Gateway.Dashboard;
using QrOrleans.Grains;
using QrOrleans.QrSessions;

namespace QrOrleans.Gateway.Cluster;

/// <param name="Status">As Orleans names it: Active, Joining, ShuttingDown, Stopping, Dead…</param>
public sealed record SiloView(string Id, string Address, string Status, DateTimeOffset StartedAt, DateTimeOffset LastHeartbeatAt);

/// <param name="Self">This node's silo id; absent on a gateway in the Client role, which is no silo.</param>
/// <param name="Activations">Live activations per grain type over the cluster (Orleans' grain statistics).</param>
/// <param name="Grains">Live activations of QR sessions and linked accounts by state, summed over the active silos.</param>
/// <param name="Reminders">Durable reminders in the cluster's reminder table; absent on a gateway in the Client role.</param>
public sealed record ClusterView(
    string? Self, IReadOnlyList<SiloView> Silos, IReadOnlyDictionary<string, int> Activations,
    IReadOnlyDictionary<string, IReadOnlyDictionary<string, int>> Grains, int? Reminders);

/// <summary>The operator's view of the cluster: silos from Orleans membership, activations, grains by state.</summary>
public static class ClusterApi
{
    public static IEndpointRouteBuilder MapClusterApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/cluster", GetAsync).WithTags("Operator")
            .WithSummary("The cluster: silos, activations, grains by state")
            .WithDescription("Operator key. Silos from Orleans membership (status as Orleans names it: Active, Dead, …), live "
                + "activations per grain type, QR sessions and linked accounts by state, and the reminders in the reminder table.")
            .ProducesProblems("unauthenticated");
        return app;
    }

    private static async Task<Ok<ClusterView>> GetAsync(HttpContext context, ClusterRoster roster)
    {
        context.RequireOperator();
        var r = await roster.ReadAsync(context.RequestAborted);
        var sessions = r.Census[ActivationCensus.QrSession];
        var accounts = r.Census[ActivationCensus.LinkedAccount];
        // The whole ring (every grain hash): a finished session leaves none behind, so this stays near the live count.
        int? reminders = context.RequestServices.GetService<Orleans.IReminderTable>() is { } table
            ? (await table.ReadRows(0, 0)).Reminders.Count // begin == end: the whole ring (0, uint.MaxValue] would miss hash 0
            : null;
        return TypedResults.Ok(new ClusterView(
            r.Self,
            r.Silos.Select(s => new SiloView(s.Id, s.Address, s.Status, s.StartedAt, s.LastHeartbeatAt)).ToList(),
            r.Activations,
            new Dictionary<string, IReadOnlyDictionary<string, int>>
            {
                [ActivationCensus.QrSession] = QrSessionStates.All.ToDictionary(s => s, s => sessions.GetValueOrDefault(s)),
                [ActivationCensus.LinkedAccount] = AccountStates.All.ToDictionary(s => s, s => accounts.GetValueOrDefault(s)),
            },
            reminders));
    }
}
