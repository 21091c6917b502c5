using Microsoft.AspNetCore.Http.HttpResults;
using QrOrleans.Accounts;
using QrOrleans.Gateway.Auth;
using QrOrleans.QrSessions;
using QrOrleans.Runtime;
using QrOrleans.Silo.Runtime;

namespace QrOrleans.Gateway.Cluster;

public sealed record SiloView(string Id, string Address, string Status, DateTimeOffset StartedAt, DateTimeOffset LastHeartbeatAt);

public sealed record ClusterView(string Self, IReadOnlyList<SiloView> Silos, IReadOnlyDictionary<string, IReadOnlyDictionary<string, int>> Grains);

/// <summary>The operator's view of the cluster: silos from the membership table, grains by state.</summary>
public static class ClusterApi
{
    public static IEndpointRouteBuilder MapClusterApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/cluster", GetAsync).WithTags("Operator");
        return app;
    }

    private static async Task<Ok<ClusterView>> GetAsync(
        HttpContext context, IMembershipTable membership, IGrainStatistics statistics, SiloIdentity self)
    {
        context.RequireOperator();
        var ct = context.RequestAborted;
        var silos = await membership.ListAsync(ct);
        var sessions = await statistics.CountByAsync(GrainTypes.QrSession, "state", ct);
        var accounts = await statistics.CountByAsync(AccountGrainTypes.Account, "state", ct);
        return TypedResults.Ok(new ClusterView(
            self.Id,
            silos.Select(s => new SiloView(s.Id, s.Address, s.Status, s.StartedAt, s.LastHeartbeatAt)).ToList(),
            new Dictionary<string, IReadOnlyDictionary<string, int>>
            {
                ["qrSession"] = QrSessionStates.All.ToDictionary(s => s, s => sessions.GetValueOrDefault(s)),
                ["linkedAccount"] = AccountStates.All.ToDictionary(s => s, s => accounts.GetValueOrDefault(s)),
            }));
    }
}
