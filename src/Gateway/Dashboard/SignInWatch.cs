using System.Collections.Concurrent;

namespace QrOrleans.Gateway.Dashboard;

/// <summary>
/// What this node holds open for dashboard sign-ins (hub connections, Orleans dashboard requests such as its log
/// stream) and ends once the sign-in ends, by a sign-out on any node or by expiry.
/// <para>
/// How it learns: once a second it asks each sign-in's grain whether it still stands (one call per distinct
/// sign-in open here, not per connection), and a sign-out on this node ends its own uses at once. A check, rather
/// than a stream or grain observer pushed on revocation, because the memory streams are not durable and observers
/// are lost when a silo dies or the grain moves: a lost notice would leave a revoked dashboard open for good, while
/// a missed check is repeated a second later. Expiry needs no notice either. The cost is a handful of grain calls a
/// second while dashboards are open, nothing otherwise.
/// </para>
/// </summary>
public sealed partial class SignInWatch(DashboardSessions sessions, TimeProvider time, ILogger<SignInWatch> log) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);

    private readonly ConcurrentDictionary<Use, byte> _uses = new();

    /// <summary>Ends <paramref name="end"/> when sign-in <paramref name="signIn"/> ends; disposing stops watching.</summary>
    public IDisposable Watch(string signIn, Func<Task> end)
    {
        var use = new Use(this, signIn, end);
        _uses[use] = 0;
        return use;
    }

    /// <summary>The sign-in was ended on this node: its uses here end now, without waiting for the next check.</summary>
    public Task EndedAsync(string signIn) => EndAsync(_uses.Keys.Where(u => u.SignIn == signIn).ToArray());

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Interval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken).ConfigureAwait(false))
        {
            if (_uses.IsEmpty)
            {
                continue;
            }
            try
            {
                await CheckAsync(stoppingToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The cluster is not answering: nothing is ended on a guess; the next tick asks again.
                LogCheckFailed(log, e.GetType().Name);
            }
        }
    }

    private async Task CheckAsync(CancellationToken ct)
    {
        var open = _uses.Keys.GroupBy(u => u.SignIn).ToArray();
        var standing = await Task.WhenAll(open.Select(g => sessions.IsActiveAsync(g.Key, ct))).ConfigureAwait(false);
        await EndAsync(open.Where((_, i) => !standing[i]).SelectMany(g => g).ToArray()).ConfigureAwait(false);
    }

    private async Task EndAsync(IReadOnlyList<Use> uses)
    {
        foreach (var use in uses)
        {
            if (_uses.TryRemove(use, out _))
            {
                try
                {
                    await use.End().ConfigureAwait(false);
                }
                catch (Exception e)
                {
                    LogEndFailed(log, e.GetType().Name);
                }
            }
        }
    }

    private sealed class Use(SignInWatch watch, string signIn, Func<Task> end) : IDisposable
    {
        public string SignIn => signIn;

        public Func<Task> End => end;

        public void Dispose() => watch._uses.TryRemove(this, out _);
    }

    [LoggerMessage(LogLevel.Warning, "Checking the open dashboard sign-ins failed: {Error}")]
    private static partial void LogCheckFailed(ILogger log, string error);

    [LoggerMessage(LogLevel.Warning, "Closing a signed-out dashboard connection failed: {Error}")]
    private static partial void LogEndFailed(ILogger log, string error);
}
