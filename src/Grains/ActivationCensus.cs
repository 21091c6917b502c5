using System.Collections.Concurrent;

namespace QrOrleans.Grains;

/// <summary>
/// What the activations on this silo are doing: for each kind of grain (qrSession, linkedAccount), the state of
/// every live activation. Grains report on activation, on each transition and on deactivation; the cluster view
/// adds up every silo's census. Sessions deactivate soon after they end, so the counts are of live work, not of
/// everything ever stored.
/// </summary>
public sealed class ActivationCensus
{
    public const string QrSession = "qrSession";
    public const string LinkedAccount = "linkedAccount";

    private readonly ConcurrentDictionary<(string Kind, string Key), string> _states = new();

    /// <summary>Records the state of one activation; null when it deactivates (or its state was deleted).</summary>
    public void Report(string kind, string key, string? state)
    {
        if (state is null)
        {
            _states.TryRemove((kind, key), out _);
        }
        else
        {
            _states[(kind, key)] = state;
        }
    }

    /// <summary>Live activations of <paramref name="kind"/> on this silo, by state.</summary>
    public IReadOnlyDictionary<string, int> CountByState(string kind)
    {
        var counts = new Dictionary<string, int>();
        foreach (var ((k, _), state) in _states)
        {
            if (k == kind)
            {
                counts[state] = counts.GetValueOrDefault(state) + 1;
            }
        }
        return counts;
    }
}
