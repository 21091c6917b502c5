using System.Text.Json;
using Microsoft.Extensions.Options;
using Orleans.Serialization;
using Orleans.Storage;

namespace QrOrleans.Silo.Hosting;

/// <summary>
/// Grain state is stored by Orleans' own System.Text.Json storage serializer, in the contracts' own JSON shape
/// (<see cref="GrainJson"/>: camelCase, nulls omitted). It writes no .NET type names, so renaming or moving a state
/// type never orphans stored state. The rule that follows (ARCHITECTURE.md): a stored property is renamed only with a
/// [JsonPropertyName] keeping the old name.
/// </summary>
public static class GrainStateJson
{
    public static IGrainStorageSerializer Serializer { get; } = Create();

    private static SystemTextJsonGrainStorageSerializer Create()
    {
        var options = new SystemTextJsonGrainStorageSerializerOptions();
        var json = options.JsonSerializerOptions;
        json.PropertyNamingPolicy = GrainJson.Options.PropertyNamingPolicy;
        json.PropertyNameCaseInsensitive = GrainJson.Options.PropertyNameCaseInsensitive;
        json.NumberHandling = GrainJson.Options.NumberHandling;
        json.DefaultIgnoreCondition = GrainJson.Options.DefaultIgnoreCondition;
        json.WriteIndented = false;
        return new SystemTextJsonGrainStorageSerializer(Options.Create(options));
    }
}
