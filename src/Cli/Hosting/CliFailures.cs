namespace QrOrleans.Cli.Hosting;

/// <summary>
/// The command ran but did not achieve what was asked (the sign-in was rejected, the imported credentials were
/// refused by the platform, a deletion was not confirmed): one line on stderr, exit code 1.
/// </summary>
public class CliFailure(string message) : Exception(message)
{
    public virtual int ExitCode => ExitCodes.NotAchieved;
}

/// <summary>The command line or the local configuration is wrong (missing key, bad URL, unreadable file); exit code 2.</summary>
public sealed class UsageFailure(string message) : CliFailure(message)
{
    public override int ExitCode => ExitCodes.Usage;
}

/// <summary>
/// The server answered with a problem: its problem+json <c>detail</c> and <c>code</c> are what the user needs to
/// see. A 4xx is a refusal (exit code 3); a 5xx means the server could not serve the request (exit code 4).
/// </summary>
public sealed class ServerProblem(int status, string? code, string? title, string? detail)
    : CliFailure($"{detail ?? title ?? (status >= 500 ? "The server failed the request." : "The server refused the request.")} ({code ?? "http_" + status}, HTTP {status})")
{
    public int Status { get; } = status;
    public string? Code { get; } = code;

    public override int ExitCode => Status >= 500 ? ExitCodes.ServerUnavailable : ExitCodes.Refused;
}

/// <summary>The server could not be used: unreachable, too slow, or not answering like a QrOrleans server; exit code 4.</summary>
public sealed class ServerUnavailable(string message) : CliFailure(message)
{
    public override int ExitCode => ExitCodes.ServerUnavailable;
}

/// <summary>The exit codes of every command, as the root <c>--help</c> and the README list them.</summary>
public static class ExitCodes
{
    public const int Ok = 0;
    public const int NotAchieved = 1;
    public const int Usage = 2;
    public const int Refused = 3;
    public const int ServerUnavailable = 4;
    public const int Interrupted = 130;

    /// <summary>For the root command's description (<c>qrorleans --help</c>).</summary>
    public const string Help =
        """
        Exit codes:
          0    done
          1    the command ran but did not achieve its goal (sign-in rejected or expired, imported credentials
               rejected by the platform, deletion not confirmed)
          2    usage or configuration error (bad arguments, no operator key, unreadable file)
          3    the server refused the request (4xx: its problem detail and code on stderr)
          4    the server could not be used (unreachable, timed out, 5xx, not a QrOrleans server)
          130  interrupted (Ctrl+C)
        """;
}
