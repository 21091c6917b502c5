using Orleans.Runtime;
using Orleans.Serialization.Serializers;
using Orleans.Storage;

namespace QrOrleans.Silo.Hosting;

/// <summary>
/// Grain storage in this process, for the embedded one-silo mode: a read, write or clear is a step on a dictionary
/// (<see cref="LocalStateStore"/>), where Orleans' memory provider makes each one a call to a storage grain. It keeps
/// what Redis would keep, the configured serializer's bytes under an ETag, so every read deserializes an object of
/// its own (no two activations ever share one), and it refuses a write as Orleans' Redis provider does: unless the
/// caller's ETag is the stored one, or the caller expects no record and none is stored.
/// </summary>
/// <remarks>
/// Stricter than Orleans' memory provider in one case: that one takes any ETag for a state it holds no record of, in
/// case its storage grain was lost with a silo while activations lived on; here the records and the activations live
/// and die with the same process, so an ETag the store does not hold is a stale activation's.
/// </remarks>
public sealed class LocalGrainStorage(string name, IGrainStorageSerializer serializer, LocalStateStore store, IActivatorProvider activators)
    : IGrainStorage
{
    public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        try
        {
            if (store.Find(name, stateName, grainId) is { } record)
            {
                var state = serializer.Deserialize<T>(new BinaryData(record.Data));
                grainState.State = state ?? Create<T>();
                grainState.ETag = record.ETag;
                // A stored null is no record, as Orleans' memory provider has it; its ETag still fences the next write.
                grainState.RecordExists = state is not null;
            }
            else
            {
                grainState.State = Create<T>();
                grainState.ETag = null;
                grainState.RecordExists = false;
            }
            return Task.CompletedTask;
        }
        catch (Exception e)
        {
            return Task.FromException(e);
        }
    }

    public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        try
        {
            // Exactly the bytes written, in an array of the store's own: a serializer may hand back a view of a larger
            // buffer (Orleans' own returns its writer's), which the record would otherwise hold on to.
            var data = serializer.Serialize(grainState.State).ToArray();
            if (store.TryWrite(name, stateName, grainId, grainState.ETag, data) is not { } written)
            {
                return Task.FromException(Conflict("write", stateName, grainId, grainState.ETag));
            }
            grainState.ETag = written.ETag;
            grainState.RecordExists = true;
            return Task.CompletedTask;
        }
        catch (Exception e)
        {
            return Task.FromException(e);
        }
    }

    public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        try
        {
            if (!store.TryClear(name, stateName, grainId, grainState.ETag))
            {
                return Task.FromException(Conflict("clear", stateName, grainId, grainState.ETag));
            }
            grainState.State = Create<T>();
            grainState.ETag = null;
            grainState.RecordExists = false;
            return Task.CompletedTask;
        }
        catch (Exception e)
        {
            return Task.FromException(e);
        }
    }

    private InconsistentStateException Conflict(string operation, string stateName, GrainId grainId, string? etag)
    {
        var stored = store.Find(name, stateName, grainId)?.ETag;
        return new InconsistentStateException(
            $"Version conflict on {operation}: provider {name}, state {stateName}, grain {grainId}: ETag {etag ?? "(none)"}, stored {stored ?? "(no record)"}",
            stored,
            etag);
    }

    private T Create<T>() => activators.GetActivator<T>().Create();
}
