namespace QrOrleans.Runtime;

/// <summary>Addresses one grain: its type name and its key. Rendered as "type/key".</summary>
public readonly record struct GrainId(string Type, string Key)
{
    public override string ToString() => $"{Type}/{Key}";

    public static GrainId Parse(string text)
    {
        var slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash <= 0)
        {
            throw new FormatException($"'{text}' is not a grain id (type/key).");
        }
        return new GrainId(text[..slash], text[(slash + 1)..]);
    }
}
