using System.CommandLine;
using QrOrleans.Cli.Accounts;
using QrOrleans.Cli.Cluster;
using QrOrleans.Cli.Hosting;
using QrOrleans.Cli.Login;

namespace QrOrleans.Cli;

/// <summary>
/// <c>qrorleans</c>: the command line of the people who run QrOrleans. An HTTP client of a server and nothing more.
/// Exit codes: <see cref="ExitCodes"/>, listed in the root <c>--help</c> and the README.
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args)
    {
        using var interrupted = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) =>
        {
            e.Cancel = true; // let the command cancel its server-side session before the process ends
            interrupted.Cancel();
        };
        return await RunAsync(args, Console.Out, Console.Error, CliEnvironment.FromProcess(), interrupted.Token);
    }

    /// <summary>The whole CLI, in-process: what <see cref="Main"/> runs, and what tests run with their own writers and environment.</summary>
    public static async Task<int> RunAsync(
        string[] args, TextWriter output, TextWriter error, CliEnvironment? environment = null, CancellationToken ct = default)
    {
        environment ??= new CliEnvironment();
        using var http = new HttpClient(environment.HttpHandler ?? new SocketsHttpHandler(), disposeHandler: environment.HttpHandler is null)
        {
            Timeout = Timeout.InfiniteTimeSpan, // every call carries its own deadline
        };
        var root = new Commands(environment, http, output, error).Build();
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var problem in parsed.Errors)
            {
                await error.WriteLineAsync($"qrorleans: {problem.Message}");
            }
            await error.WriteLineAsync("Run 'qrorleans --help' for usage.");
            return ExitCodes.Usage;
        }
        return await parsed.InvokeAsync(new InvocationConfiguration { Output = output, Error = error, ProcessTerminationTimeout = null }, ct);
    }

    private sealed class Commands(CliEnvironment environment, HttpClient http, TextWriter output, TextWriter error)
    {
        private readonly Option<string?> _server = new("--server")
        {
            Description = $"The QrOrleans server (default: ${CliEnvironment.ServerVariable}, else {CliEnvironment.DefaultServer})",
            Recursive = true,
        };

        private readonly Option<string?> _apiKey = new("--api-key")
        {
            Description = $"The operator key, sent as X-Api-Key (prefer ${CliEnvironment.ApiKeyVariable}: arguments show in process lists)",
            Recursive = true,
        };

        private TableWriter Tables => new(output, environment.Interactive, environment.TerminalWidth);

        public RootCommand Build()
        {
            var root = new RootCommand("qrorleans: sign in to a QrOrleans server by QR code, and operate its linked accounts and cluster."
                + Environment.NewLine + Environment.NewLine + ExitCodes.Help.ReplaceLineEndings());
            root.Options.Add(_server);
            root.Options.Add(_apiKey);
            root.Subcommands.Add(Login());
            root.Subcommands.Add(WhoAmICommand());
            root.Subcommands.Add(Accounts());
            root.Subcommands.Add(Cluster());
            root.Subcommands.Add(Webhooks.WebhooksCommands.Build(environment, output, error));
            return root;
        }

        private Command Login()
        {
            var server = new Argument<string?>("server") { Description = "The server to sign in to, e.g. http://localhost:5000", Arity = ArgumentArity.ZeroOrOne };
            var name = new Option<string?>("--name") { Description = "How this device is named on the phone and in the devices list" };
            var invert = new Option<bool>("--invert") { Description = "Draw the QR code for a dark-on-light terminal" };
            var noQr = new Option<bool>("--no-qr") { Description = "Print only the sign-in URL, no QR drawing" };
            var command = new Command("login", "Sign this terminal in as a new device: scan the QR code with your phone, pick the number, approve.")
            {
                server, name, invert, noQr,
            };
            command.SetAction((parsed, ct) => GuardAsync(async () =>
            {
                var target = parsed.GetValue(server) is { Length: > 0 } given ? ServerClient.ParseServer(given) : ServerOf(parsed);
                var clientName = parsed.GetValue(name) is { Length: > 0 } n ? n.Trim() : DefaultClientName();
                if (clientName.Length > 80)
                {
                    throw new UsageFailure("--name is at most 80 characters.");
                }
                var flow = new LoginFlow(new ServerClient(http, target), environment, output,
                    new LoginOptions(clientName, parsed.GetValue(invert), !parsed.GetValue(noQr)));
                return await flow.RunAsync(ct);
            }, ct));
            return command;
        }

        private Command WhoAmICommand()
        {
            var command = new Command("whoami", "Show the user and device this terminal is signed in as (refreshing the saved tokens when they expired).");
            command.SetAction((parsed, ct) => GuardAsync(() => WhoAmI.RunAsync(new ServerClient(http, SignedInServerOf(parsed)), environment, output, ct), ct));
            return command;
        }

        /// <summary>--server, else $QRORLEANS_SERVER, else the server of the latest login, else the default.</summary>
        private Uri SignedInServerOf(ParseResult parsed) =>
            parsed.GetValue(_server) is { Length: > 0 } || environment.Variables(CliEnvironment.ServerVariable) is { Length: > 0 }
                ? ServerOf(parsed)
                : CredentialsFile.Current(environment.ConfigDirectory) is { } current ? ServerClient.ParseServer(current) : ServerOf(parsed);

        private Command Accounts()
        {
            var accounts = new Command("accounts", "The linked accounts of the agent fleet (operator key required).");

            var list = new Command("list", "Every linked account: state, pairing progress, rate budget, last error, holder.");
            list.SetAction((parsed, ct) => GuardAsync(() => AccountsCommands.ListAsync(OperatorClient(parsed), output, Tables, ct), ct));

            var pairId = AccountId();
            var pair = new Command("pair", "Start the pairing ceremony now: QR codes go to the owner's channel.") { pairId };
            pair.SetAction((parsed, ct) => GuardAsync(() => AccountsCommands.PairAsync(OperatorClient(parsed), parsed.GetValue(pairId)!, output, ct), ct));

            var exportId = AccountId();
            var exportPassphrase = new Option<string>("--passphrase-file") { Description = "File holding the passphrase that protects the export", Required = true };
            var exportOutput = new Option<string?>("--output") { Description = "Write the sealed string to this file (mode 0600) instead of stdout" };
            var export = new Command("export", "Export the account's credentials as a passphrase-sealed string.") { exportId, exportPassphrase, exportOutput };
            export.SetAction((parsed, ct) => GuardAsync(() => AccountsCommands.ExportAsync(OperatorClient(parsed), parsed.GetValue(exportId)!,
                parsed.GetValue(exportPassphrase)!, parsed.GetValue(exportOutput), output, ct), ct));

            var importId = AccountId();
            var importFile = new Option<string>("--file") { Description = "File holding the sealed string of an export", Required = true };
            var importPassphrase = new Option<string>("--passphrase-file") { Description = "File holding the export's passphrase", Required = true };
            var import = new Command("import", "Import exported credentials into the account; it connects if the platform still accepts them (exit 1 if not).")
            {
                importId, importFile, importPassphrase,
            };
            import.SetAction((parsed, ct) => GuardAsync(() => AccountsCommands.ImportAsync(OperatorClient(parsed), parsed.GetValue(importId)!,
                parsed.GetValue(importFile)!, parsed.GetValue(importPassphrase)!, output, ct), ct));

            var unlinkId = AccountId();
            var unlink = new Command("unlink",
                "Log the account out on its platform (exports of that session stop working) and forget its credentials. " +
                "The account and its settings stay (state unlinked): " +
                "'pair' or 'import' links it again. To remove the account, use 'delete'.") { unlinkId };
            unlink.SetAction((parsed, ct) => GuardAsync(() => AccountsCommands.UnlinkAsync(OperatorClient(parsed), parsed.GetValue(unlinkId)!, output, ct), ct));

            var deleteId = AccountId();
            var yes = new Option<bool>("--yes", "-y") { Description = "Delete without asking (required when not on a terminal)" };
            var delete = new Command("delete",
                "Remove the account for good: log it out, wipe its credentials, settings and pending webhooks. Asks first on a terminal.") { deleteId, yes };
            delete.SetAction((parsed, ct) => GuardAsync(() => AccountsCommands.DeleteAsync(OperatorClient(parsed), parsed.GetValue(deleteId)!,
                parsed.GetValue(yes), environment.Terminal, output, error, ct), ct));

            accounts.Subcommands.Add(list);
            accounts.Subcommands.Add(pair);
            accounts.Subcommands.Add(export);
            accounts.Subcommands.Add(import);
            accounts.Subcommands.Add(unlink);
            accounts.Subcommands.Add(delete);
            return accounts;
        }

        private Command Cluster()
        {
            var cluster = new Command("cluster", "The cluster (operator key required).");
            var status = new Command("status", "The silos and their heartbeats, and the grains by state.");
            status.SetAction((parsed, ct) => GuardAsync(() => ClusterCommands.StatusAsync(OperatorClient(parsed), output, Tables, ct), ct));
            cluster.Subcommands.Add(status);
            return cluster;
        }

        private static Argument<string> AccountId() => new("id") { Description = "The account id" };

        private Uri ServerOf(ParseResult parsed) =>
            ServerClient.ParseServer(parsed.GetValue(_server) is { Length: > 0 } given ? given
                : environment.Variables(CliEnvironment.ServerVariable) is { Length: > 0 } configured ? configured
                : CliEnvironment.DefaultServer.ToString());

        private ServerClient OperatorClient(ParseResult parsed)
        {
            var server = ServerOf(parsed);
            var key = parsed.GetValue(_apiKey) is { Length: > 0 } given ? given : environment.Variables(CliEnvironment.ApiKeyVariable);
            if (string.IsNullOrEmpty(key))
            {
                throw new UsageFailure($"An operator key is required: pass --api-key or set {CliEnvironment.ApiKeyVariable}.");
            }
            return new ServerClient(http, server, key);
        }

        private static string DefaultClientName()
        {
            var name = $"qrorleans CLI on {Environment.MachineName}";
            return name.Length > 80 ? name[..80] : name;
        }

        /// <summary>Every failure ends as one line on stderr and its exit code; Ctrl+C as 130.</summary>
        private async Task<int> GuardAsync(Func<Task<int>> command, CancellationToken ct)
        {
            try
            {
                return await command();
            }
            catch (CliFailure e)
            {
                await error.WriteLineAsync($"error: {e.Message}");
                return e.ExitCode;
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                await error.WriteLineAsync("Interrupted.");
                return ExitCodes.Interrupted;
            }
        }
    }
}
