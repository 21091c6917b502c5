using System.Text.Json;
using QrOrleans.Cli.Hosting;

namespace QrOrleans.Cli.Cluster;

/// <summary><c>qrorleans cluster status</c>: the silos and the grains by state (GET /v1/cluster).</summary>
public static class ClusterCommands
{
    public static async Task<int> StatusAsync(ServerClient api, TextWriter output, TableWriter tables, CancellationToken ct)
    {
        var cluster = (await api.GetAsync("v1/cluster", ct)).Body;
        var self = JsonFields.Text(cluster, "self");
        var silos = JsonFields.Child(cluster, "silos");
        if (silos.ValueKind != JsonValueKind.Array)
        {
            throw new ServerUnavailable($"{api.Server} did not answer GET /v1/cluster like a QrOrleans server.");
        }
        output.WriteLine($"Silos ({silos.GetArrayLength()})");
        tables.Write(["ID", "ADDRESS", "STATUS", "STARTED", "LAST HEARTBEAT"], silos.EnumerateArray().Select(s => (IReadOnlyList<string?>)
        [
            JsonFields.Text(s, "id") + (self is not null && JsonFields.Text(s, "id") == self ? " *" : ""),
            JsonFields.Text(s, "address"),
            JsonFields.Text(s, "status"),
            JsonFields.Time(s, "startedAt"),
            JsonFields.Time(s, "lastHeartbeatAt"),
        ]));
        var grains = JsonFields.Child(cluster, "grains");
        if (grains.ValueKind == JsonValueKind.Object)
        {
            foreach (var kind in grains.EnumerateObject())
            {
                output.WriteLine();
                output.WriteLine($"{kind.Name} grains by state");
                var counts = kind.Value.ValueKind == JsonValueKind.Object ? kind.Value.EnumerateObject().ToList() : [];
                if (counts.Count == 0)
                {
                    output.WriteLine("  (none)");
                    continue;
                }
                tables.Write(["STATE", "COUNT"], counts.Select(c => (IReadOnlyList<string?>)[c.Name, c.Value.GetRawText()]));
            }
        }
        if (self is not null)
        {
            output.WriteLine();
            output.WriteLine($"* the silo that answered ({self})");
        }
        return ExitCodes.Ok;
    }
}
