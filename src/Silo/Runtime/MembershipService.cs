using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using QrOrleans.Runtime;

namespace QrOrleans.Silo.Runtime;

/// <summary>This node: a fresh id per process, so a restarted node is a new member and a dead one stays dead.</summary>
public sealed class SiloIdentity
{
    public string Id { get; } = $"{Environment.MachineName.ToLowerInvariant()}-{Environment.ProcessId}-{Grains.Secrets.NewHexId(3)}";

    public DateTimeOffset StartedAt { get; } = DateTimeOffset.UtcNow;

    /// <summary>Where this node serves HTTP; the gateway fills it in once it listens.</summary>
    public string Address { get; set; } = "starting";
}

/// <summary>Joins the membership table, sends heartbeats, and marks silent nodes dead (every node does; it is idempotent).</summary>
public sealed partial class MembershipService(
    IMembershipTable table, SiloIdentity self, SiloOptions options, TimeProvider time, ILogger<MembershipService> log) : BackgroundService
{
    private string? _joinedAddress;

    /// <summary>Since when this node's own heartbeats have succeeded without a break (null: the last one failed).</summary>
    private DateTimeOffset? _healthySince;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.HeartbeatInterval, time);
        do
        {
            try
            {
                var now = time.GetUtcNow();
                if (_joinedAddress != self.Address)
                {
                    await table.JoinAsync(new SiloRecord(self.Id, self.Address, SiloStatuses.Active, self.StartedAt, now), stoppingToken).ConfigureAwait(false);
                    _joinedAddress = self.Address;
                }
                else if (!await table.HeartbeatAsync(self.Id, now, stoppingToken).ConfigureAwait(false))
                {
                    // Declared dead while alive (e.g. the database was down longer than DeadAfter): join again.
                    LogRejoined(log);
                    await table.JoinAsync(new SiloRecord(self.Id, self.Address, SiloStatuses.Active, self.StartedAt, now), stoppingToken).ConfigureAwait(false);
                }
                _healthySince ??= now;
                // Judge others only after our own heartbeats have gone through for a whole DeadAfter: after an
                // outage everyone's last heartbeat is old, and the first node back must not declare the rest dead.
                if (now - _healthySince >= options.DeadAfter)
                {
                    var dead = await table.MarkDeadAsync(now - options.DeadAfter, stoppingToken).ConfigureAwait(false);
                    if (dead > 0)
                    {
                        LogMarkedDead(log, dead);
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                _healthySince = null;
                LogHeartbeatFailed(log, e.Message);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await table.LeaveAsync(self.Id, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e)
        {
            LogHeartbeatFailed(log, e.Message);
        }
    }

    [LoggerMessage(LogLevel.Warning, "This silo had been marked dead while alive; it joined the cluster again")]
    private static partial void LogRejoined(ILogger log);

    [LoggerMessage(LogLevel.Warning, "Marked {Count} silent silo(s) dead")]
    private static partial void LogMarkedDead(ILogger log, int count);

    [LoggerMessage(LogLevel.Warning, "Membership heartbeat failed: {Reason}")]
    private static partial void LogHeartbeatFailed(ILogger log, string reason);
}
