using System.Text.Json;
using System.Text.Json.Serialization;

namespace QrOrleans;

/// <summary>The one JSON shape of contracts, stored state and stream payloads: camelCase, nulls omitted.</summary>
public static class GrainJson
{
    public static readonly JsonSerializerOptions Options = new(JsonSerializerDefaults.Web)
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };
}
