using System.Text.Json;
using QrOrleans.Accounts;

namespace QrOrleans.Grains.Accounts;

/// <summary>The connectors registered on this node, by platform name.</summary>
public sealed class PlatformConnectors(IEnumerable<IPlatformConnector> connectors)
{
    private readonly Dictionary<string, IPlatformConnector> _byPlatform = connectors.ToDictionary(c => c.Platform, StringComparer.Ordinal);

    public IReadOnlyCollection<string> Available => _byPlatform.Keys;

    public IPlatformConnector Get(string platform) =>
        _byPlatform.TryGetValue(platform, out var connector)
            ? connector
            : throw new InvalidOperationException($"No connector for platform '{platform}' is registered on this node.");

    public bool TryGet(string platform, out IPlatformConnector connector) => _byPlatform.TryGetValue(platform, out connector!);

    /// <summary>Problems with an account's connector settings, as its connector sees them (none if it does not check).</summary>
    public IReadOnlyList<string> Validate(string platform, JsonElement? settings)
    {
        if (settings is { ValueKind: not (JsonValueKind.Object or JsonValueKind.Null) })
        {
            return ["connector must be an object."];
        }
        return TryGet(platform, out var connector) && connector is IConnectorSettingsValidation validation
            ? validation.ValidateSettings(settings ?? default)
            : [];
    }
}
