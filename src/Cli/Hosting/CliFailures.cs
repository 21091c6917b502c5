namespace QrOrleans.Cli.Hosting;

/// <summary>A failure the user is told about in one line on stderr; exit code 1.</summary>
public class CliFailure(string message) : Exception(message)
{
    public virtual int ExitCode => ExitCodes.Error;
}

/// <summary>The command line itself is wrong (missing key, bad URL); exit code 2.</summary>
public sealed class UsageFailure(string message) : CliFailure(message)
{
    public override int ExitCode => ExitCodes.Usage;
}

/// <summary>The server refused: its problem+json <c>detail</c> and <c>code</c> are what the user needs to see.</summary>
public sealed class ServerProblem(int status, string? code, string? title, string? detail)
    : CliFailure($"{detail ?? title ?? "The server refused the request."} ({code ?? "http_" + status}, HTTP {status})")
{
    public int Status { get; } = status;
    public string? Code { get; } = code;
}

public static class ExitCodes
{
    public const int Ok = 0;
    public const int Error = 1;
    public const int Usage = 2;
    public const int Interrupted = 130;
}
