using Orleans.Storage;
using QrOrleans.Gateway.Observability;

namespace QrOrleans.Gateway.Problems;

/// <summary>
/// A grain whose write was refused for its ETag (another activation wrote first) deactivates and throws
/// <see cref="InconsistentStateException"/>; nothing of that call was stored or published. The request is run again
/// here, at the gateway's edge, once for the whole chain of grain calls it made, so no caller sees the conflict and
/// retries never nest (a retry on every grain call, silo side and client side, multiplied them). Counted, for the
/// dashboard and <c>qrorleans.grain.turn.conflicts</c>.
/// </summary>
public static class ConflictRetry
{
    private const int Attempts = 4;

    /// <summary>Every route handler of <paramref name="api"/> is run again after a conflict, until its response has started.</summary>
    public static TBuilder WithConflictRetry<TBuilder>(this TBuilder api) where TBuilder : IEndpointConventionBuilder =>
        api.AddEndpointFilter(async (context, next) =>
        {
            var stats = context.HttpContext.RequestServices.GetRequiredService<NodeStats>();
            return await RunAsync(() => next(context), () => !context.HttpContext.Response.HasStarted, stats).ConfigureAwait(false);
        });

    /// <summary>Runs <paramref name="call"/> again after a conflict while <paramref name="mayRetry"/> says nothing has left yet.</summary>
    public static async Task<T> RunAsync<T>(Func<ValueTask<T>> call, Func<bool> mayRetry, NodeStats stats)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await call().ConfigureAwait(false);
            }
            catch (InconsistentStateException) when (attempt < Attempts && mayRetry())
            {
                stats.Conflict();
                await Task.Delay(TimeSpan.FromMilliseconds(5 * attempt)).ConfigureAwait(false);
            }
        }
    }
}
