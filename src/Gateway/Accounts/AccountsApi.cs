using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using QrOrleans.Accounts;
using QrOrleans.Gateway.Auth;
using QrOrleans.Gateway.Problems;
using Orleans;
using QrOrleans.Grains.Accounts;

namespace QrOrleans.Gateway.Accounts;

public sealed record OwnerRequest(string? WebhookUrl, string? WebhookSecret);

public sealed record RateBudgetRequest(int? Capacity, double? RefillPerMinute);

public sealed record PairingRequest(int? MaxCycles, int? QrTtlSeconds);

public sealed record AccountRequest(
    string? Platform, string? DisplayName, OwnerRequest? Owner, RateBudgetRequest? RateBudget, PairingRequest? Pairing, JsonElement? Connector);

public sealed record MessageRequest(string? To, string? Text);

public sealed record MessageAccepted(string AccountId, string To, DateTimeOffset AcceptedAt);

public sealed record ExportRequest(string? Passphrase);

public sealed record ExportResponse(string Sealed);

public sealed record ImportRequest(string? Sealed, string? Passphrase);

/// <summary>
/// The operator's agent fleet (API.md, Operator side), X-Api-Key on every call. Sends happen here, on whichever
/// node takes the request: the account grain admits the send (state, cool-down, rate budget), the credentials
/// are unsealed in memory for the one platform call, and its failure is classified back into the grain. The
/// account's activation runs what needs a long-lived presence: pairing and health checks.
/// </summary>
public static partial class AccountsApi
{
    private const int MaxTextLength = 4096;

    public static IEndpointRouteBuilder MapAccountsApi(this IEndpointRouteBuilder app)
    {
        var accounts = app.MapGroup("/v1/accounts").WithTags("Agent fleet").ProducesProblems("unauthenticated");
        accounts.AddEndpointFilter(async (context, next) =>
        {
            context.HttpContext.RequireOperator();
            return await next(context);
        });
        accounts.MapPut("/{accountId}", PutAsync)
            .WithSummary("Create or update a linked account")
            .WithDescription("Operator key. Creating needs platform, owner.webhookUrl and owner.webhookSecret; an update changes "
                + "only what it sends. connector holds the platform's own settings (qrorleans: serverUrl; ilink: baseUrl; sandbox: "
                + "autoConfirm, failWith). Every invalid field is named in one 400.")
            .ProducesProblems("validation_failed", "invalid_state");
        accounts.MapGet("/", ListAsync)
            .WithSummary("Every linked account")
            .WithDescription("Operator key. State, pairing progress, cool-down, last error, rate budget and holder; never credentials.");
        accounts.MapGet("/{accountId}", GetAsync)
            .WithSummary("One linked account")
            .WithDescription("Operator key. Never credentials.")
            .ProducesProblems("not_found");
        accounts.MapPost("/{accountId}/pair", PairAsync)
            .WithSummary("Start the pairing ceremony now")
            .WithDescription("Operator key. Each QR code goes to the owner's webhook (pairing.qr); follow the account's state.")
            .ProducesProblems("not_found", "invalid_state", "cooling_down");
        accounts.MapPost("/{accountId}/stop", StopAsync)
            .WithSummary("Stop the account's connection")
            .WithDescription("Operator key. The account keeps its credentials and stays stopped until started.")
            .ProducesProblems("not_found", "invalid_state");
        accounts.MapPost("/{accountId}/start", StartAsync)
            .WithSummary("Start a stopped account")
            .WithDescription("Operator key.")
            .ProducesProblems("not_found", "invalid_state");
        accounts.MapPost("/{accountId}/messages", SendAsync)
            .WithSummary("Send a message through the account")
            .WithDescription("Operator key. 202 once the platform took it. Out of budget: 429 rate_budget_exhausted with Retry-After; "
                + "while the platform asks for a pause: 409 cooling_down with cooldownUntil.")
            .ProducesProblems("validation_failed", "not_found", "not_connected", "cooling_down", "rate_budget_exhausted",
                "platform_rate_limited", "platform_unavailable", "bad_credentials", "no_credentials", "credentials_tampered",
                "unknown_key_version");
        accounts.MapPost("/{accountId}/export", ExportAsync)
            .WithSummary("Export the credentials, sealed with a passphrase")
            .WithDescription("Operator key. passphrase: 12 to 1024 characters; the sealed string imports only into this account.")
            .ProducesProblems("validation_failed", "not_found", "no_credentials", "credentials_tampered", "unknown_key_version");
        accounts.MapPost("/{accountId}/import", ImportAsync)
            .WithSummary("Import exported credentials")
            .WithDescription("Operator key. The account is connected if the platform still accepts them.")
            .ProducesProblems("validation_failed", "not_found", "cooling_down", "invalid_sealed", "wrong_passphrase", "wrong_account",
                "credentials_tampered");
        accounts.MapPost("/{accountId}/unlink", UnlinkAsync)
            .WithSummary("Unlink the account, keeping it")
            .WithDescription("Operator key. Logs out on the platform (best effort) and forgets the credentials; the account stays, "
                + "state unlinked, for a later pair or import. Unlinking an unlinked account changes nothing.")
            .ProducesProblems("not_found");
        accounts.MapDelete("/{accountId}", DeleteAsync)
            .WithSummary("Delete the account")
            .WithDescription("Operator key. Logs out on the platform (best effort), wipes the credentials and removes the account.")
            .ProducesProblems("not_found");
        app.MapPost("/v1/admin/vault/reseal", ResealAsync).WithTags("Operator")
            .WithSummary("Re-seal every account's credentials under the current vault key")
            .WithDescription("Operator key. Run after making a new key version current on every node, until nothing is resealed "
                + "and nothing failed; then the old key can go.")
            .ProducesProblems("unauthenticated");
        return app;
    }

    private static async Task<Results<Created<AccountView>, Ok<AccountView>>> PutAsync(
        string accountId, AccountRequest body, IGrainFactory grains, PlatformConnectors connectors, CancellationToken ct)
    {
        RequireId(accountId);
        var settings = Validate(body, connectors);
        var grain = grains.GetGrain<ILinkedAccountGrain>(accountId);
        var existing = await grain.GetAsync(ct);
        if (existing is null && (settings.Platform is null || settings.WebhookUrl is null || settings.WebhookSecret is null))
        {
            throw AccountErrors.Validation("platform, owner.webhookUrl and owner.webhookSecret are required to create an account.");
        }
        if (existing is not null && body.Connector is { } c && settings.Platform is null)
        {
            // Settings without a platform are checked against the account's platform.
            Throw(connectors.Validate(existing.Platform, c));
        }
        var configured = await grain.ConfigureAsync(settings, ct);
        if (!configured.Created && (body.Owner?.WebhookUrl is not null || body.Owner?.WebhookSecret is not null))
        {
            // Deliveries still queued go to the owner's new address, signed with the new secret.
            await grains.GetGrain<IOutboxGrain>(accountId).AcceptAsync(configured.Target, [], ct);
        }
        return configured.Created
            ? TypedResults.Created($"/v1/accounts/{accountId}", configured.Account)
            : TypedResults.Ok(configured.Account);
    }

    private static async Task<Ok<AccountView[]>> ListAsync(IGrainFactory grains, CancellationToken ct) =>
        TypedResults.Ok((await ReadAllAsync(grains, ct)).ToArray());

    /// <summary>Every account of the directory, in id order; an id whose account is gone is skipped.</summary>
    public static async Task<IReadOnlyList<AccountView>> ReadAllAsync(IGrainFactory grains, CancellationToken ct)
    {
        var ids = await grains.GetGrain<IAccountDirectoryGrain>(AccountStreams.Directory).ListAsync(ct);
        var views = new List<AccountView>(ids.Count);
        foreach (var chunk in ids.Chunk(32))
        {
            var read = await Task.WhenAll(chunk.Select(id => grains.GetGrain<ILinkedAccountGrain>(id).GetAsync(ct)));
            views.AddRange(read.OfType<AccountView>());
        }
        return views;
    }

    /// <summary>
    /// Key rotation: after adding a key version and making it current on every node, this re-seals every
    /// account's credentials under it. Run it until it reports nothing resealed and nothing failed, then the
    /// old key can be removed.
    /// </summary>
    private static async Task<Ok<ResealReport>> ResealAsync(HttpContext context, IGrainFactory grains, CancellationToken ct)
    {
        context.RequireOperator();
        var resealed = 0;
        var unchanged = 0;
        var failed = new List<ResealFailure>();
        foreach (var id in await grains.GetGrain<IAccountDirectoryGrain>(AccountStreams.Directory).ListAsync(ct))
        {
            try
            {
                if (await grains.GetGrain<ILinkedAccountGrain>(id).ResealCredentialsAsync(ct))
                {
                    resealed++;
                }
                else
                {
                    unchanged++;
                }
            }
            catch (GrainException e)
            {
                failed.Add(new ResealFailure(id, e.Code));
            }
        }
        return TypedResults.Ok(new ResealReport(resealed, unchanged, failed));
    }

    private static async Task<Ok<AccountView>> GetAsync(string accountId, IGrainFactory grains, CancellationToken ct) =>
        TypedResults.Ok(await Account(grains, accountId).GetAsync(ct) ?? throw AccountErrors.NotFound(accountId));

    private static async Task<Accepted<AccountView>> PairAsync(string accountId, IGrainFactory grains, CancellationToken ct) =>
        TypedResults.Accepted($"/v1/accounts/{accountId}", await Account(grains, accountId).RequestPairingAsync(ct));

    private static async Task<Ok<AccountView>> StopAsync(string accountId, IGrainFactory grains, CancellationToken ct) =>
        TypedResults.Ok(await Account(grains, accountId).StopAsync(ct));

    private static async Task<Ok<AccountView>> StartAsync(string accountId, IGrainFactory grains, CancellationToken ct) =>
        TypedResults.Ok(await Account(grains, accountId).StartAsync(ct));

    private static async Task<Accepted<MessageAccepted>> SendAsync(
        string accountId, MessageRequest body, IGrainFactory grains, PlatformConnectors connectors, [FromServices] ICredentialVault vault,
        AccountOptions options, TimeProvider time, CancellationToken ct)
    {
        var problems = new List<string>();
        if (body.To is not { Length: > 0 and <= 256 } || string.IsNullOrWhiteSpace(body.To))
        {
            problems.Add("to is required (at most 256 characters).");
        }
        if (body.Text is not { Length: > 0 and <= MaxTextLength })
        {
            problems.Add($"text is required (at most {MaxTextLength} characters).");
        }
        Throw(problems);
        var grain = Account(grains, accountId);
        var grant = await grain.BeginSendAsync(ct);
        var credentials = vault.Unseal(accountId, grant.SealedCredentials);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(options.ConnectorTimeout);
        try
        {
            await connectors.Get(grant.Connector.Platform).SendMessageAsync(grant.Connector.ToContext(), credentials, body.To!, body.Text!, timeout.Token);
        }
        catch (PlatformException e)
        {
            throw await grain.SendFailedAsync(grant.CredentialGeneration, PlatformFailure.From(e), CancellationToken.None);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            throw await grain.SendFailedAsync(grant.CredentialGeneration,
                new PlatformFailure(ErrorClass.Transient, "timeout", "The platform did not answer in time."), CancellationToken.None);
        }
        return TypedResults.Accepted($"/v1/accounts/{accountId}", new MessageAccepted(accountId, body.To!, time.GetUtcNow()));
    }

    private static async Task<Ok<ExportResponse>> ExportAsync(
        string accountId, ExportRequest body, IGrainFactory grains, [FromServices] ICredentialVault vault, CancellationToken ct)
    {
        var passphrase = Passphrase(body.Passphrase);
        var sealedCredentials = await Account(grains, accountId).GetSealedCredentialsAsync(ct);
        return TypedResults.Ok(new ExportResponse(vault.Export(accountId, vault.Unseal(accountId, sealedCredentials), passphrase)));
    }

    private static async Task<Ok<AccountView>> ImportAsync(
        string accountId, ImportRequest body, IGrainFactory grains, PlatformConnectors connectors, [FromServices] ICredentialVault vault,
        AccountOptions options, CancellationToken ct)
    {
        var problems = new List<string>();
        if (string.IsNullOrWhiteSpace(body.Sealed))
        {
            problems.Add("sealed is required: the string an export returned.");
        }
        if (string.IsNullOrEmpty(body.Passphrase))
        {
            problems.Add("passphrase is required.");
        }
        Throw(problems);
        var grain = Account(grains, accountId);
        var binding = await grain.BeginImportAsync(ct);
        var credentials = vault.Import(accountId, body.Sealed!, body.Passphrase!);
        PlatformFailure? check = null;
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(options.ConnectorTimeout);
        try
        {
            await connectors.Get(binding.Platform).CheckHealthAsync(binding.ToContext(), credentials, timeout.Token);
        }
        catch (PlatformException e)
        {
            check = PlatformFailure.From(e);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            check = new PlatformFailure(ErrorClass.Transient, "timeout", "The platform did not answer in time.");
        }
        return TypedResults.Ok(await grain.CompleteImportAsync(credentials, check, CancellationToken.None));
    }

    /// <summary>Logs out and forgets the credentials; the account stays, <c>unlinked</c>, for a later pair or import.</summary>
    private static async Task<Ok<AccountView>> UnlinkAsync(
        string accountId, IGrainFactory grains, PlatformConnectors connectors, [FromServices] ICredentialVault vault,
        ILoggerFactory logs, CancellationToken ct)
    {
        var unlinked = await Account(grains, accountId).UnlinkAsync(ct);
        await LogOutAsync(accountId, unlinked, connectors, vault, logs);
        return TypedResults.Ok(unlinked.Account!);
    }

    private static async Task<NoContent> DeleteAsync(
        string accountId, IGrainFactory grains, PlatformConnectors connectors, [FromServices] ICredentialVault vault,
        ILoggerFactory logs, CancellationToken ct)
    {
        await LogOutAsync(accountId, await Account(grains, accountId).DeleteAsync(ct), connectors, vault, logs);
        return TypedResults.NoContent();
    }

    /// <summary>Best effort: the account is unlinked here whatever the platform says.</summary>
    private static async Task LogOutAsync(
        string accountId, UnlinkResult unlinked, PlatformConnectors connectors, ICredentialVault vault, ILoggerFactory logs)
    {
        if (unlinked.SealedCredentials is not { } sealedCredentials || !connectors.TryGet(unlinked.Connector.Platform, out var connector))
        {
            return;
        }
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await connector.LogoutAsync(unlinked.Connector.ToContext(), vault.Unseal(accountId, sealedCredentials), timeout.Token);
        }
        catch (Exception e)
        {
            LogLogoutFailed(logs.CreateLogger("QrOrleans.Accounts"), accountId, e.GetType().Name);
        }
    }

    // ---- validation ----

    [GeneratedRegex("^[a-z0-9_-]{1,64}$")]
    private static partial Regex AccountIdPattern();

    private static void RequireId(string accountId)
    {
        if (!AccountIdPattern().IsMatch(accountId))
        {
            throw AccountErrors.Validation("accountId must be 1 to 64 characters of a-z, 0-9, '_' and '-'.");
        }
    }

    /// <summary>The account grain for a well-formed id; a malformed id cannot name an account.</summary>
    private static ILinkedAccountGrain Account(IGrainFactory grains, string accountId) =>
        AccountIdPattern().IsMatch(accountId) ? grains.GetGrain<ILinkedAccountGrain>(accountId) : throw AccountErrors.NotFound(accountId);

    /// <summary>Every problem of a PUT at once, each naming its field.</summary>
    private static AccountSettings Validate(AccountRequest body, PlatformConnectors connectors)
    {
        if (body.Connector is { } raw && !IsWellFormedText(raw))
        {
            // The connector object is kept as raw JSON, so a lone surrogate escape ("\ud800") gets this far; reading
            // it as a string throws, here or later in the account's grain.
            throw AccountErrors.Validation("connector holds a string that is not valid Unicode text (a lone surrogate escape).");
        }
        var problems = new List<string>();
        if (body.Platform is { } platform && !connectors.Available.Contains(platform))
        {
            problems.Add($"platform must be one of {string.Join(", ", Platforms.All.Where(connectors.Available.Contains))} on this server.");
        }
        if (body.DisplayName is { } name && (name.Trim().Length is 0 or > 80))
        {
            problems.Add("displayName must be 1 to 80 characters.");
        }
        if (body.Owner?.WebhookUrl is { } url && !(Uri.TryCreate(url, UriKind.Absolute, out var uri)
                && uri.Scheme is "http" or "https" && string.IsNullOrEmpty(uri.UserInfo)))
        {
            problems.Add("owner.webhookUrl must be an absolute http or https URL without credentials.");
        }
        if (body.Owner?.WebhookSecret is { } secret && secret.Length is < 16 or > 256)
        {
            problems.Add("owner.webhookSecret must be 16 to 256 characters.");
        }
        if (body.RateBudget is { } budget)
        {
            if (budget.Capacity is not (>= 1 and <= 100_000))
            {
                problems.Add("rateBudget.capacity must be a whole number from 1 to 100000.");
            }
            if (budget.RefillPerMinute is not (> 0 and <= 1_000_000))
            {
                problems.Add("rateBudget.refillPerMinute must be more than 0 and at most 1000000.");
            }
        }
        if (body.Pairing is { } pairing)
        {
            if (pairing.MaxCycles is not (>= 1 and <= 20))
            {
                problems.Add("pairing.maxCycles must be from 1 to 20.");
            }
            if (pairing.QrTtlSeconds is not (>= 1 and <= 600))
            {
                problems.Add("pairing.qrTtlSeconds must be from 1 to 600.");
            }
        }
        if (body.Platform is { } p && connectors.Available.Contains(p))
        {
            problems.AddRange(connectors.Validate(p, body.Connector));
        }
        Throw(problems);
        return new AccountSettings(
            body.Platform,
            body.DisplayName?.Trim(),
            body.Owner?.WebhookUrl,
            body.Owner?.WebhookSecret,
            body.RateBudget is { } b ? new RateBudgetConfig(b.Capacity!.Value, b.RefillPerMinute!.Value) : null,
            body.Pairing is { } pr ? new PairingConfig(pr.MaxCycles!.Value, pr.QrTtlSeconds!.Value) : null,
            body.Connector is { ValueKind: JsonValueKind.Object } c ? c.GetRawText() : null);
    }

    /// <summary>Whether every string and property name decodes (reading one with a lone surrogate throws).</summary>
    private static bool IsWellFormedText(JsonElement json)
    {
        try
        {
            return json.ValueKind switch
            {
                JsonValueKind.Object => json.EnumerateObject().All(p => p.Name is not null && IsWellFormedText(p.Value)),
                JsonValueKind.Array => json.EnumerateArray().All(IsWellFormedText),
                JsonValueKind.String => json.GetString() is not null,
                _ => true,
            };
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    private static string Passphrase(string? passphrase) =>
        passphrase is { Length: >= 12 and <= 1024 }
            ? passphrase
            : throw AccountErrors.Validation("passphrase must be 12 to 1024 characters.");

    private static void Throw(IReadOnlyList<string> problems)
    {
        if (problems.Count > 0)
        {
            throw AccountErrors.Validation(string.Join(" ", problems));
        }
    }

    [LoggerMessage(LogLevel.Information, "Logout of unlinked account {Account} failed ({Error}); it is unlinked here regardless")]
    private static partial void LogLogoutFailed(ILogger log, string account, string error);
}

public sealed record ResealFailure(string AccountId, string Code);

public sealed record ResealReport(int Resealed, int Unchanged, IReadOnlyList<ResealFailure> Failed);
