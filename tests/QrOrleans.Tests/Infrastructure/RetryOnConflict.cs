using Orleans.Storage;

namespace QrOrleans.Tests.Infrastructure;

/// <summary>
/// The test cluster's client plays the gateway's edge (ConflictRetry): a grain whose write was refused for its ETag
/// deactivates and throws <see cref="InconsistentStateException"/>, and the call is sent again to a fresh activation
/// on fresh state, so no caller sees the conflict.
/// </summary>
public sealed class RetryOnConflict : IOutgoingGrainCallFilter
{
    private const int Attempts = 4;

    public async Task Invoke(IOutgoingGrainCallContext context)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                await context.Invoke().ConfigureAwait(false);
                return;
            }
            catch (InconsistentStateException) when (attempt < Attempts)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(5 * attempt)).ConfigureAwait(false);
            }
        }
    }
}
