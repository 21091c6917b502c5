// A headless silo host: `dotnet run --project src/Silo -- --QrOrleans:Cluster:Provider=Redis --QrOrleans:Cluster:Redis=…`.
// The grains and providers of UseQrOrleansSilo, and nothing of the API: only the orchestrator's probes GET /healthz
// (the process is up) and GET /readyz (health checks: Redis answers, in Redis mode, and this silo is Active in Orleans membership;
// 503 otherwise) on --urls. Gateways in Client role (QrOrleans:Cluster:Role=Client) front a cluster of these.
// The grains see the same settings as on a gateway that co-hosts its silo: QrOrleans:QrSession, :PublicOrigin (a
// silo host has no listening URL of its own to fall back on: give every process of a cluster the one public
// origin), :Accounts, :Audit, :Vault, bound by the one registration both hosts call.
using QrOrleans.Silo.Accounts;
using QrOrleans.Silo.Hosting;

var builder = WebApplication.CreateBuilder(args);
builder.Logging.AddJsonConsole(o => o.IncludeScopes = false);
var section = builder.Configuration.GetSection("QrOrleans");
var cluster = section.GetSection("Cluster").Get<ClusterSettings>() ?? new ClusterSettings();
if (cluster.Role == ClusterRole.Client)
{
    throw new InvalidOperationException("QrOrleans:Cluster:Role=Client is for a gateway; a src/Silo host is always a silo.");
}

if (string.IsNullOrWhiteSpace(section["PublicOrigin"]))
{
    // The grains write QR URLs (and the qrorleans connector links agents) with it; a silo host has no URL of its own.
    throw new InvalidOperationException("QrOrleans:PublicOrigin is required on a silo host: the address QR codes point at (the gateways' load balancer).");
}
builder.Services.AddQrGrainServices(section, cluster);
// The session grains make the ceremony's spans here: exported when OTEL_EXPORTER_OTLP_ENDPOINT is set, as on a gateway.
builder.AddQrOpenTelemetry();
// The same silo as a gateway's co-hosted one: the providers, then the agent fleet's silo side.
builder.UseOrleans(silo => silo.UseQrOrleansSilo(cluster).AddQrFleet());

var app = builder.Build();
app.MapHealthProbes();
app.Run();
