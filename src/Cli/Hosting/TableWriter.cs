using Spectre.Console;
using Spectre.Console.Rendering;

namespace QrOrleans.Cli.Hosting;

/// <summary>
/// Tables drawn by Spectre.Console. In a terminal: a rounded, bordered table fitted to the window. Anywhere else (a pipe,
/// a file, a test): plain aligned columns, no colour, no border, never wrapped and no trailing blanks, so that grep, cut
/// and awk see one record a line with the header first.
/// </summary>
public sealed class TableWriter(TextWriter output, bool terminal, int? terminalWidth = null)
{
    // Wide enough that no row of a real fleet wraps: a wrapped cell would split one record over two lines.
    private const int PlainWidth = 4096;

    public void Write(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string?>> rows)
    {
        var table = new Table();
        foreach (var header in headers)
        {
            table.AddColumn(new TableColumn(new Text(header)));
        }
        foreach (var row in rows)
        {
            // Text, not markup: a server's value such as "[red]" is shown as it is, not interpreted.
            table.AddRow(row.Select(cell => (IRenderable)new Text(string.IsNullOrEmpty(cell) ? "-" : cell)));
        }
        if (terminal)
        {
            table.Border(TableBorder.Rounded);
            var console = Console(output, terminal: true);
            if (terminalWidth is { } width)
            {
                console.Profile.Width = width;
            }
            console.Write(table);
            return;
        }
        table.Border(TableBorder.None);
        for (var i = 0; i < table.Columns.Count; i++)
        {
            table.Columns[i].Padding(0, 0, i == table.Columns.Count - 1 ? 0 : 2, 0);
        }
        using var text = new StringWriter();
        Console(text, terminal: false).Write(table);
        foreach (var line in text.ToString().Split('\n'))
        {
            if (line.TrimEnd() is { Length: > 0 } trimmed)
            {
                output.WriteLine(trimmed);
            }
        }
    }

    private static IAnsiConsole Console(TextWriter writer, bool terminal)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = terminal ? InteractionSupport.Detect : InteractionSupport.No,
        });
        if (!terminal)
        {
            console.Profile.Width = PlainWidth;
        }
        return console;
    }
}
