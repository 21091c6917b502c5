using Orleans.Storage;

namespace QrOrleans.Grains;

public static class GrainStates
{
    /// <summary>
    /// The one write of a transition. A write refused for its ETag means another activation of this grain wrote
    /// first (a duplicate during a partition, or storage changed behind this one): this activation's copy is stale,
    /// so it reloads, steps aside (DeactivateOnIdle) and rethrows; <c>RetryOnConflict</c> on the caller's side sends
    /// the call again to a fresh activation. Nothing of the refused call was stored or published.
    /// </summary>
    public static async Task PersistAsync<T>(this IPersistentState<T> state, IGrainBase grain)
    {
        try
        {
            await state.WriteStateAsync().ConfigureAwait(true);
        }
        catch (InconsistentStateException)
        {
            grain.DeactivateOnIdle();
            await state.ReadStateAsync().ConfigureAwait(true);
            throw;
        }
        catch (Exception)
        {
            await ForgetUnwrittenAsync(state, grain).ConfigureAwait(true);
            throw;
        }
    }

    /// <summary>
    /// A write that failed for any other reason (storage unreachable, e.g. Redis restarting) leaves the transition
    /// in the activation's memory though it may not be stored: a retry would be answered from it (a scan "done" that
    /// no desktop was told of). The activation reloads what storage holds if it can, and steps aside either way, so
    /// the next call starts from storage.
    /// </summary>
    private static async Task ForgetUnwrittenAsync<T>(IPersistentState<T> state, IGrainBase grain)
    {
        grain.DeactivateOnIdle();
        try
        {
            await state.ReadStateAsync().ConfigureAwait(true);
        }
        catch (Exception)
        {
            // storage still unreachable: the deactivation drops this copy
        }
    }

    /// <summary>Deletes the grain's stored state, with the same conflict rule as <see cref="PersistAsync{T}"/>.</summary>
    public static async Task DeleteAsync<T>(this IPersistentState<T> state, IGrainBase grain)
    {
        try
        {
            await state.ClearStateAsync().ConfigureAwait(true);
        }
        catch (InconsistentStateException)
        {
            grain.DeactivateOnIdle();
            await state.ReadStateAsync().ConfigureAwait(true);
            throw;
        }
    }
}
