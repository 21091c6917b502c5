using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Npgsql;
using QrOrleans.Runtime;

namespace QrOrleans.Silo.PostgreSql;

/// <summary>
/// One LISTEN connection per node. When it drops, notifications sent meanwhile are lost, so after reconnecting
/// it yields a resync: every local watcher re-reads its snapshot, and nothing a desktop waits for is lost.
/// </summary>
public sealed partial class PostgreSqlStreamSource(SiloOptions options, ILogger<PostgreSqlStreamSource> log) : IStreamSource
{
    public long Reconnects => Interlocked.Read(ref _reconnects);

    private long _reconnects;

    public async IAsyncEnumerable<StreamSignal> ListenAsync([EnumeratorCancellation] CancellationToken ct)
    {
        var signals = Channel.CreateUnbounded<StreamSignal>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var pump = PumpAsync(signals.Writer, ct);
        await foreach (var signal in signals.Reader.ReadAllAsync(ct).ConfigureAwait(false))
        {
            yield return signal;
        }
        await pump.ConfigureAwait(false);
    }

    private async Task PumpAsync(ChannelWriter<StreamSignal> signals, CancellationToken ct)
    {
        var connectedBefore = false;
        var delay = TimeSpan.FromMilliseconds(100);
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await using var conn = new NpgsqlConnection(PostgreSqlConnections.Listener(options.ConnectionString!));
                await conn.OpenAsync(ct).ConfigureAwait(false);
                conn.Notification += (_, n) =>
                {
                    if (Parse(n.Payload) is { } e)
                    {
                        signals.TryWrite(new StreamSignal(e));
                    }
                };
                await using (var listen = new NpgsqlCommand($"LISTEN {PostgreSqlGrainStore.Channel}", conn))
                {
                    await listen.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                }
                if (connectedBefore)
                {
                    Interlocked.Increment(ref _reconnects);
                    LogReconnected(log);
                    signals.TryWrite(StreamSignal.Resync);
                }
                connectedBefore = true;
                delay = TimeSpan.FromMilliseconds(100);
                while (!ct.IsCancellationRequested)
                {
                    // Wakes for notifications; the timeout lets a dead TCP connection be noticed by the keepalive query.
                    if (!await conn.WaitAsync(TimeSpan.FromSeconds(5), ct).ConfigureAwait(false))
                    {
                        await using var ping = new NpgsqlCommand("SELECT 1", conn);
                        await ping.ExecuteNonQueryAsync(ct).ConfigureAwait(false);
                    }
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e)
            {
                LogDropped(log, e.Message);
                await Task.Delay(delay, ct).ConfigureAwait(false);
                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 2000));
            }
        }
        signals.TryComplete();
    }

    internal static StreamEvent? Parse(string payload)
    {
        try
        {
            var m = JsonSerializer.Deserialize<PostgreSqlGrainStore.NotifyMessage>(payload);
            return m is null ? null : new StreamEvent(GrainId.Parse(m.g), m.v, m.p);
        }
        catch (Exception e) when (e is JsonException or FormatException)
        {
            return null;
        }
    }

    [LoggerMessage(LogLevel.Warning, "Stream LISTEN connection lost: {Reason}; reconnecting")]
    private static partial void LogDropped(ILogger log, string reason);

    [LoggerMessage(LogLevel.Information, "Stream LISTEN connection re-established; watchers re-read their snapshots")]
    private static partial void LogReconnected(ILogger log);
}
