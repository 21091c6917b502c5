using System.Text.Json;
using QrOrleans.Runtime;

namespace QrOrleans.Grains;

/// <summary>Either the result of a transition or the refusal to return after the turn commits.</summary>
public readonly record struct Outcome<T>(T? Value, GrainException? Error)
{
    public static implicit operator Outcome<T>(T value) => new(value, null);
    public static implicit operator Outcome<T>(GrainException error) => new(default, error);
}

/// <summary>Base of every grain: its id, its runtime, and the one way to change its state.</summary>
public abstract class Grain<TState>(GrainId id, IGrainRuntime runtime) where TState : class
{
    public static JsonSerializerOptions Json => GrainJson.Options;

    protected GrainId Id { get; } = id;

    protected IGrainRuntime Runtime { get; } = runtime;

    /// <summary>
    /// Runs one turn. A refusal thrown by <paramref name="body"/> commits nothing; a refusal returned as an
    /// <see cref="Outcome{T}"/> is thrown after the turn's changes commit (e.g. a wrong number rejects the
    /// session and still answers number_mismatch).
    /// </summary>
    protected async Task<T> Transition<T>(Func<Turn<TState>, Outcome<T>> body, CancellationToken ct)
    {
        var outcome = await Runtime.RunTurnAsync(Id, body, ct).ConfigureAwait(false);
        if (outcome.Error is not null)
        {
            throw outcome.Error;
        }
        return outcome.Value!;
    }

    protected async Task<(TState State, long Version)?> ReadAsync(CancellationToken ct) =>
        await Runtime.ReadAsync<TState>(Id, ct).ConfigureAwait(false);
}
