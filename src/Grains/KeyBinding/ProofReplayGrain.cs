using Microsoft.Extensions.DependencyInjection;
using QrOrleans.KeyBinding;

namespace QrOrleans.Grains.KeyBinding;

public sealed record ProofReplayState
{
    /// <summary>Proof ids still inside their acceptance window, each with when it may be forgotten.</summary>
    public IReadOnlyDictionary<string, DateTimeOffset> Seen { get; init; } = new Dictionary<string, DateTimeOffset>();
}

/// <summary>
/// One key's recently used DPoP proof ids. Stored (one write per accepted proof), so a replay is caught on any node
/// and after the node that saw the original died. An id is kept only while a proof carrying it could still pass the
/// iat check, so the set stays as small as the key's request rate over that window.
/// </summary>
public sealed class ProofReplayGrain(
    [PersistentState("proof-replay", OrleansNames.Storage)] IPersistentState<ProofReplayState> replay,
    [FromKeyedServices(OrleansNames.Clock)] TimeProvider time) : Grain, IProofReplayGrain
{
    public async Task UseAsync(string jti, DateTimeOffset keepUntil, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        if (replay.State.Seen.TryGetValue(jti, out var until) && until >= now)
        {
            throw KeyBindingErrors.ProofReplayed();
        }
        var seen = replay.State.Seen.Where(e => e.Value >= now).ToDictionary(e => e.Key, e => e.Value);
        seen[jti] = keepUntil;
        replay.State = replay.State with { Seen = seen };
        await replay.PersistAsync(this);
    }
}
