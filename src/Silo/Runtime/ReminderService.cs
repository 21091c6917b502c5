using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using QrOrleans.Runtime;

namespace QrOrleans.Silo.Runtime;

/// <summary>
/// Polls the reminder table, claims what is due and hands it to the grains. A reminder whose handler fails
/// (or whose node dies) is not completed, so it becomes due again when its claim lease runs out.
/// </summary>
public sealed partial class ReminderService(
    IReminderTable table, GrainRuntime runtime, SiloOptions options, TimeProvider time, ILogger<ReminderService> log)
    : BackgroundService
{
    private const int BatchSize = 512;

    public long Delivered => Interlocked.Read(ref _delivered);

    public long Failed => Interlocked.Read(ref _failed);

    private long _delivered;
    private long _failed;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.ReminderPollInterval, time);
        do
        {
            try
            {
                while (!stoppingToken.IsCancellationRequested)
                {
                    var due = await table.ClaimDueAsync(time.GetUtcNow(), options.ReminderLease, BatchSize, stoppingToken).ConfigureAwait(false);
                    if (due.Count == 0)
                    {
                        break;
                    }
                    await Task.WhenAll(due.Select(r => DeliverAsync(r, stoppingToken))).ConfigureAwait(false);
                    if (due.Count < BatchSize)
                    {
                        break;
                    }
                }
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The table is unreachable (database restarting): keep polling, nothing claimed is lost.
                LogPollFailed(log, e);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false));
    }

    private async Task DeliverAsync(DueReminder reminder, CancellationToken ct)
    {
        try
        {
            await runtime.DeliverReminderAsync(reminder, ct).ConfigureAwait(false);
            await table.CompleteAsync(reminder, time.GetUtcNow(), ct).ConfigureAwait(false);
            Interlocked.Increment(ref _delivered);
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            Interlocked.Increment(ref _failed);
            LogDeliveryFailed(log, reminder.Name, reminder.Grain, e);
        }
    }

    [LoggerMessage(LogLevel.Warning, "Reminder poll failed; retrying")]
    private static partial void LogPollFailed(ILogger log, Exception e);

    [LoggerMessage(LogLevel.Warning, "Reminder {Name} of {Grain} failed; it fires again when its lease ends")]
    private static partial void LogDeliveryFailed(ILogger log, string name, GrainId grain, Exception e);
}
