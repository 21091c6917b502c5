using Orleans.Storage;

namespace QrOrleans.Silo.Hosting;

/// <summary>
/// A grain whose write was refused for its ETag (another activation wrote first) deactivates and throws
/// <see cref="InconsistentStateException"/>; nothing of that call was stored or published. The caller's side
/// sends the call again, to a fresh activation on fresh state, so no caller sees the conflict.
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
