using System.Text.Json;
using QrOrleans.Accounts;
using QrOrleans.Cli.Hosting;

namespace QrOrleans.Cli.Accounts;

/// <summary><c>qrorleans accounts …</c>: the operator's linked accounts (API.md, Operator side).</summary>
public static class AccountsCommands
{
    public static async Task<int> ListAsync(ServerClient api, TextWriter output, TableWriter tables, CancellationToken ct)
    {
        var body = (await api.GetAsync("v1/accounts", ct)).Body;
        var accounts = body.ValueKind switch
        {
            JsonValueKind.Array => body.EnumerateArray().ToList(),
            JsonValueKind.Object when body.TryGetProperty("accounts", out var list) && list.ValueKind == JsonValueKind.Array => list.EnumerateArray().ToList(),
            JsonValueKind.Object when body.TryGetProperty("items", out var items) && items.ValueKind == JsonValueKind.Array => items.EnumerateArray().ToList(),
            _ => throw new ServerUnavailable($"{api.Server} did not answer GET /v1/accounts with a list."),
        };
        if (accounts.Count == 0)
        {
            output.WriteLine("No linked accounts.");
            return ExitCodes.Ok;
        }
        tables.Write(["ID", "PLATFORM", "STATE", "SINCE", "PAIRING", "BUDGET", "COOLDOWN UNTIL", "LAST ERROR", "HOLDER"],
            accounts.Select(Row));
        return ExitCodes.Ok;
    }

    public static async Task<int> PairAsync(ServerClient api, string id, TextWriter output, CancellationToken ct)
    {
        var reply = await api.PostAsync($"v1/accounts/{Uri.EscapeDataString(id)}/pair", null, ct);
        output.WriteLine($"Pairing started for {id}: each QR code goes to the owner's channel; follow it with 'qrorleans accounts list'.");
        if (JsonFields.Text(reply.Body, "state") is { } state)
        {
            output.WriteLine($"State: {state}");
        }
        return ExitCodes.Ok;
    }

    /// <summary>Writes the sealed string to <paramref name="outputFile"/> (0600), or to stdout when none is given.</summary>
    public static async Task<int> ExportAsync(ServerClient api, string id, string passphraseFile, string? outputFile, TextWriter output, CancellationToken ct)
    {
        var passphrase = ReadSecretFile(passphraseFile, "passphrase");
        var reply = await api.PostAsync($"v1/accounts/{Uri.EscapeDataString(id)}/export", new { passphrase }, ct);
        var sealedValue = ServerClient.String(reply.Body, "sealed") ?? throw new ServerUnavailable($"{api.Server} answered the export without a sealed value.");
        if (outputFile is null)
        {
            output.WriteLine(sealedValue);
            return ExitCodes.Ok;
        }
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }
        // No byte-order mark: the file holds the sealed string and a newline, nothing a reader has to strip.
        await using (var writer = new StreamWriter(outputFile, new System.Text.UTF8Encoding(encoderShouldEmitUTF8Identifier: false), options))
        {
            await writer.WriteLineAsync(sealedValue.AsMemory(), ct);
        }
        output.WriteLine($"Sealed credentials of {id} written to {outputFile}; import them with the same passphrase.");
        return ExitCodes.Ok;
    }

    /// <summary>Exit code 0 only when the account ends connected: imported credentials the platform refuses are no success.</summary>
    public static async Task<int> ImportAsync(ServerClient api, string id, string file, string passphraseFile, TextWriter output, CancellationToken ct)
    {
        var sealedValue = ReadSecretFile(file, "sealed credentials");
        var passphrase = ReadSecretFile(passphraseFile, "passphrase");
        var account = (await api.PostAsync($"v1/accounts/{Uri.EscapeDataString(id)}/import", new { @sealed = sealedValue, passphrase }, ct)).Body;
        var state = JsonFields.Text(account, "state");
        if (state == AccountStates.Connected)
        {
            output.WriteLine($"Imported the credentials of {id}; the account is connected.");
            return ExitCodes.Ok;
        }
        var error = JsonFields.Child(account, "lastError");
        var why = JsonFields.Text(error, "code") is { } code ? $" ({code}: {JsonFields.Text(error, "message") ?? JsonFields.Text(error, "class")})" : "";
        throw new CliFailure(state switch
        {
            AccountStates.BadCredentials => $"The platform rejected the imported credentials of {id}{why}: the account is bad_credentials. " +
                $"Link it anew with 'qrorleans accounts pair {id}'.",
            AccountStates.TransientDisconnect => $"Imported the credentials of {id}, but the platform could not check them{why}: " +
                "the account is transient_disconnect and retries on its own; follow it with 'qrorleans accounts list'.",
            _ => $"Imported the credentials of {id}, but the account is {state ?? "in an unknown state"}{why}, not connected.",
        });
    }

    public static async Task<int> UnlinkAsync(ServerClient api, string id, TextWriter output, CancellationToken ct)
    {
        var account = (await api.PostAsync($"v1/accounts/{Uri.EscapeDataString(id)}/unlink", null, ct)).Body;
        output.WriteLine($"Unlinked {id}: logged out on its platform, credentials forgotten; the account is {JsonFields.Text(account, "state") ?? AccountStates.Unlinked}. " +
            $"Link it again with 'qrorleans accounts pair {id}' or 'import'.");
        return ExitCodes.Ok;
    }

    /// <summary>Removes the account; on a terminal asks first, elsewhere only with <paramref name="confirmed"/> (--yes).</summary>
    public static async Task<int> DeleteAsync(
        ServerClient api, string id, bool confirmed, TextReader? terminal, TextWriter output, TextWriter error, CancellationToken ct)
    {
        if (!confirmed)
        {
            if (terminal is null)
            {
                throw new UsageFailure($"'accounts delete' removes {id} for good; not on a terminal, pass --yes to confirm.");
            }
            await error.WriteAsync($"Delete account {id} for good: log it out, wipe its credentials, settings and pending webhooks? [y/N] ");
            await error.FlushAsync(ct);
            var answer = (await terminal.ReadLineAsync(ct))?.Trim();
            if (!string.Equals(answer, "y", StringComparison.OrdinalIgnoreCase) && !string.Equals(answer, "yes", StringComparison.OrdinalIgnoreCase))
            {
                throw new CliFailure($"Not confirmed; {id} was not deleted.");
            }
        }
        await api.DeleteAsync($"v1/accounts/{Uri.EscapeDataString(id)}", ct);
        output.WriteLine($"Deleted {id}: logged out on its platform, credentials and settings wiped, the account removed.");
        return ExitCodes.Ok;
    }

    private static string?[] Row(JsonElement a)
    {
        var pairing = JsonFields.Child(a, "pairing");
        var budget = JsonFields.Child(a, "rateBudget");
        var error = JsonFields.Child(a, "lastError");
        return
        [
            JsonFields.Text(a, "id"),
            JsonFields.Text(a, "platform"),
            JsonFields.Text(a, "state"),
            JsonFields.Time(a, "stateSince"),
            JsonFields.Text(pairing, "cycle") is { } cycle ? $"{cycle}/{JsonFields.Text(pairing, "maxCycles") ?? "?"}" : null,
            JsonFields.Text(budget, "available") is { } available ? $"{available}/{JsonFields.Text(budget, "capacity") ?? "?"}" : null,
            JsonFields.Time(a, "cooldownUntil"),
            JsonFields.Text(error, "code") is { } code ? $"{code} ({JsonFields.Text(error, "class")})" : null,
            JsonFields.Text(a, "holder"),
        ];
    }

    /// <summary>A secret kept in a file: the whole file, less the line ending an editor leaves at its end.</summary>
    private static string ReadSecretFile(string path, string what)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UsageFailure($"Cannot read the {what} file {path}: {e.Message}");
        }
        text = text.TrimEnd('\r', '\n');
        return text.Length > 0 ? text : throw new UsageFailure($"The {what} file {path} is empty.");
    }
}
