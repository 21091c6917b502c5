using System.Text.Json;

namespace QrOrleans.Grains.Connectors.Sandbox;

/// <summary>
/// An account's <c>connector</c> object on the sandbox platform: how the scripted platform behaves for it.
/// <c>failWith</c> applies to calls made with credentials (health checks, sends); pairing is scripted by
/// <c>autoConfirm</c> and the timings.
/// </summary>
public sealed record SandboxSettings
{
    public static readonly IReadOnlyList<string> Failures = ["auth", "transient", "cooldown", "rate_limited"];

    /// <summary>The first code counts as scanned and then confirmed.</summary>
    public bool AutoConfirm { get; init; }

    public string? FailWith { get; init; }

    /// <summary>Life of a code as the platform issues it.</summary>
    public int QrTtlSeconds { get; init; } = 30;

    /// <summary>With autoConfirm: time from issuing the code to the scan, and from the scan to the confirmation.</summary>
    public int ScanAfterMs { get; init; }

    public int ConfirmAfterMs { get; init; }

    /// <summary>The number the owner must pick after scanning.</summary>
    public string NumberMatch { get; init; } = "42";

    /// <summary>failWith cooldown: how long the platform asks for a pause.</summary>
    public int CooldownSeconds { get; init; } = 60;

    /// <summary>failWith rate_limited: the Retry-After the platform answers.</summary>
    public int RetryAfterSeconds { get; init; } = 30;

    /// <summary>Reads the settings, collecting every problem (each naming its field) instead of stopping at the first.</summary>
    public static SandboxSettings Parse(JsonElement json, List<string> problems)
    {
        var s = new SandboxSettings();
        if (json.ValueKind is JsonValueKind.Undefined or JsonValueKind.Null)
        {
            return s;
        }
        if (json.ValueKind != JsonValueKind.Object)
        {
            problems.Add("connector must be an object.");
            return s;
        }
        foreach (var p in json.EnumerateObject())
        {
            var field = "connector." + p.Name;
            switch (p.Name)
            {
                case "autoConfirm":
                    s = p.Value.ValueKind is JsonValueKind.True or JsonValueKind.False
                        ? s with { AutoConfirm = p.Value.GetBoolean() }
                        : Problem(s, problems, $"{field} must be true or false.");
                    break;
                case "failWith":
                    s = p.Value.ValueKind == JsonValueKind.Null ? s with { FailWith = null }
                        : p.Value.ValueKind == JsonValueKind.String && Failures.Contains(p.Value.GetString()) ? s with { FailWith = p.Value.GetString() }
                        : Problem(s, problems, $"{field} must be null or one of {string.Join(", ", Failures)}.");
                    break;
                case "qrTtlSeconds":
                    s = s with { QrTtlSeconds = Int(p.Value, field, 1, 3600, problems, s.QrTtlSeconds) };
                    break;
                case "scanAfterMs":
                    s = s with { ScanAfterMs = Int(p.Value, field, 0, 600_000, problems, 0) };
                    break;
                case "confirmAfterMs":
                    s = s with { ConfirmAfterMs = Int(p.Value, field, 0, 600_000, problems, 0) };
                    break;
                case "numberMatch":
                    s = p.Value.ValueKind == JsonValueKind.String && p.Value.GetString() is { Length: 2 } n && n.All(char.IsAsciiDigit)
                        ? s with { NumberMatch = n }
                        : Problem(s, problems, $"{field} must be a two-digit string.");
                    break;
                case "cooldownSeconds":
                    s = s with { CooldownSeconds = Int(p.Value, field, 1, 86_400, problems, s.CooldownSeconds) };
                    break;
                case "retryAfterSeconds":
                    s = s with { RetryAfterSeconds = Int(p.Value, field, 1, 86_400, problems, s.RetryAfterSeconds) };
                    break;
                default:
                    problems.Add($"{field} is not a sandbox setting (autoConfirm, failWith, qrTtlSeconds, scanAfterMs, confirmAfterMs, numberMatch, cooldownSeconds, retryAfterSeconds).");
                    break;
            }
        }
        return s;
    }

    private static SandboxSettings Problem(SandboxSettings s, List<string> problems, string problem)
    {
        problems.Add(problem);
        return s;
    }

    private static int Int(JsonElement value, string field, int min, int max, List<string> problems, int fallback)
    {
        if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var n) && n >= min && n <= max)
        {
            return n;
        }
        problems.Add($"{field} must be a whole number from {min} to {max}.");
        return fallback;
    }
}
