using System.Text.Json;
using Orleans.Storage;

namespace QrOrleans.Silo.Hosting;

/// <summary>
/// Stores grain state as plain System.Text.Json (camelCase, the contracts' own shape) with no .NET type names in
/// it, so renaming or moving a state type never orphans stored state. The rule that follows (ARCHITECTURE.md):
/// a stored property is renamed only with a [JsonPropertyName] keeping the old name.
/// </summary>
public sealed class JsonGrainStateSerializer : IGrainStorageSerializer
{
    private static readonly JsonSerializerOptions Options = new(GrainJson.Options) { WriteIndented = false };

    public BinaryData Serialize<T>(T? input) => new(JsonSerializer.SerializeToUtf8Bytes(input, Options));

    public T Deserialize<T>(BinaryData input) => JsonSerializer.Deserialize<T>(input.ToMemory().Span, Options)!;
}
