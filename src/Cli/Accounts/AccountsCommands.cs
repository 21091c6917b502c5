using System.Text.Json;
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
            _ => throw new CliFailure($"{api.Server} did not answer GET /v1/accounts with a list."),
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
        var sealedValue = ServerClient.String(reply.Body, "sealed") ?? throw new CliFailure($"{api.Server} answered the export without a sealed value.");
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
        await using (var writer = new StreamWriter(outputFile, System.Text.Encoding.UTF8, options))
        {
            await writer.WriteLineAsync(sealedValue.AsMemory(), ct);
        }
        output.WriteLine($"Sealed credentials of {id} written to {outputFile}; import them with the same passphrase.");
        return ExitCodes.Ok;
    }

    public static async Task<int> ImportAsync(ServerClient api, string id, string file, string passphraseFile, TextWriter output, CancellationToken ct)
    {
        var sealedValue = ReadSecretFile(file, "sealed credentials");
        var passphrase = ReadSecretFile(passphraseFile, "passphrase");
        var account = (await api.PostAsync($"v1/accounts/{Uri.EscapeDataString(id)}/import", new { @sealed = sealedValue, passphrase }, ct)).Body;
        output.WriteLine($"Imported the credentials of {id}; the account is {JsonFields.Text(account, "state") ?? "updated"}.");
        return ExitCodes.Ok;
    }

    public static async Task<int> UnlinkAsync(ServerClient api, string id, TextWriter output, CancellationToken ct)
    {
        await api.DeleteAsync($"v1/accounts/{Uri.EscapeDataString(id)}", ct);
        output.WriteLine($"Unlinked {id}: logged out on its platform, credentials wiped.");
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
            throw new CliFailure($"Cannot read the {what} file {path}: {e.Message}");
        }
        text = text.TrimEnd('\r', '\n');
        return text.Length > 0 ? text : throw new CliFailure($"The {what} file {path} is empty.");
    }
}
