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

    // Counted as reports arrive, not by walking every activation on each read: the dashboard reads every second,
    // and a busy silo holds tens of thousands of finished sessions in their grace period.
    private readonly Dictionary<(string Kind, string Key), string> _states = [];
    private readonly Dictionary<(string Kind, string State), int> _counts = [];

    /// <summary>Records the state of one activation; null when it deactivates (or its state was deleted).</summary>
    public void Report(string kind, string key, string? state)
    {
        lock (_states)
        {
            if (_states.TryGetValue((kind, key), out var was))
            {
                if (was == state)
                {
                    return;
                }
                var left = _counts[(kind, was)] - 1;
                if (left == 0)
                {
                    _counts.Remove((kind, was));
                }
                else
                {
                    _counts[(kind, was)] = left;
                }
            }
            if (state is null)
            {
                _states.Remove((kind, key));
            }
            else
            {
                _states[(kind, key)] = state;
                _counts[(kind, state)] = _counts.GetValueOrDefault((kind, state)) + 1;
            }
        }
    }

    /// <summary>Live activations of <paramref name="kind"/> on this silo, by state.</summary>
    public IReadOnlyDictionary<string, int> CountByState(string kind)
    {
        lock (_states)
        {
            return _counts.Where(c => c.Key.Kind == kind).ToDictionary(c => c.Key.State, c => c.Value);
        }
    }
}
