using System.Globalization;
using System.Text.Json;

namespace QrOrleans.Cli.Hosting;

/// <summary>Lenient reads of the server's JSON: a missing or differently typed field is null, never an exception.</summary>
public static class JsonFields
{
    /// <summary>A time as the operator reads it: UTC, to the second.</summary>
    public static string? Time(JsonElement obj, string name) =>
        Instant(obj, name)?.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    public static DateTimeOffset? Instant(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var value)
        && value.ValueKind == JsonValueKind.String && value.TryGetDateTimeOffset(out var at)
            ? at
            : null;

    /// <summary>Any scalar property as text (strings as they are, numbers and booleans as JSON).</summary>
    public static string? Text(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var value)
            ? value.ValueKind switch
            {
                JsonValueKind.String => value.GetString(),
                JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => value.GetRawText(),
                _ => null,
            }
            : null;

    public static JsonElement Child(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var value) ? value : default;
}
