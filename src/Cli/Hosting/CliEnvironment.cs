namespace QrOrleans.Cli.Hosting;

/// <summary>
/// What the CLI takes from the process it runs in. <see cref="Program.Main"/> uses the real one; tests hand in their own
/// variables (a temporary XDG_CONFIG_HOME, an operator key) and run the same code in-process.
/// </summary>
public sealed record CliEnvironment
{
    public const string ServerVariable = "QRORLEANS_SERVER";
    public const string ApiKeyVariable = "QRORLEANS_API_KEY";
    public static readonly Uri DefaultServer = new("http://localhost:5000/");

    /// <summary>Environment variable lookup.</summary>
    public Func<string, string?> Variables { get; init; } = Environment.GetEnvironmentVariable;

    /// <summary>The HTTP stack to use (null: a fresh <see cref="SocketsHttpHandler"/>).</summary>
    public HttpMessageHandler? HttpHandler { get; init; }

    /// <summary>Standard output is a terminal: <c>login</c> redraws a live countdown in place.</summary>
    public bool Interactive { get; init; }

    /// <summary>The terminal to ask for a confirmation on (null: standard input is not a terminal, so nobody can be asked).</summary>
    public TextReader? Terminal { get; init; }

    /// <summary>The terminal's width in columns for tables (null: what the console reports, 80 when it cannot tell).</summary>
    public int? TerminalWidth { get; init; }

    public static CliEnvironment FromProcess() => new()
    {
        Interactive = !Console.IsOutputRedirected,
        Terminal = Console.IsInputRedirected ? null : Console.In,
    };

    /// <summary>$XDG_CONFIG_HOME/qrorleans, else ~/.config/qrorleans.</summary>
    public string ConfigDirectory
    {
        get
        {
            var xdg = Variables("XDG_CONFIG_HOME");
            var root = !string.IsNullOrEmpty(xdg)
                ? xdg
                : Path.Combine(Variables("HOME") is { Length: > 0 } home ? home : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".config");
            return Path.Combine(root, "qrorleans");
        }
    }
}
