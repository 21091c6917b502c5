using System.Text.Json;
using QrOrleans.Runtime;

namespace QrOrleans.Accounts;

public static class AccountGrainTypes
{
    /// <summary>The linked account (key = account id): its state machine, credentials, budget and notices.</summary>
    public const string Account = "account";

    /// <summary>The owner-webhook outbox of one account (key = account id): deliveries in order, retried.</summary>
    public const string Outbox = "outbox";

    public static GrainId AccountId(string accountId) => new(Account, accountId);
}

/// <summary>What an account gets when PUT leaves a section out on creation.</summary>
public static class AccountDefaults
{
    public static readonly RateBudgetConfig RateBudget = new(60, 60);
    public static readonly PairingConfig Pairing = new(3, 30);
}

public sealed record OwnerConfig(string WebhookUrl, string WebhookSecret);

public sealed record RateBudgetConfig(int Capacity, double RefillPerMinute);

public sealed record PairingConfig(int MaxCycles, int QrTtlSeconds);

/// <summary>An account's configuration as stored. <see cref="Connector"/> is the platform's own settings object.</summary>
public sealed record AccountConfig(
    string Platform, string DisplayName, OwnerConfig Owner, RateBudgetConfig RateBudget, PairingConfig Pairing, JsonElement? Connector);

/// <summary>
/// A PUT, already validated by the gateway. A null section keeps what the account has (or takes the default on
/// creation); a null <see cref="WebhookSecret"/> keeps the stored secret, which GET never shows.
/// </summary>
public sealed record AccountSettings(
    string? Platform, string? DisplayName, string? WebhookUrl, string? WebhookSecret,
    RateBudgetConfig? RateBudget, PairingConfig? Pairing, JsonElement? Connector);

public sealed record PairingView(int Cycle, int MaxCycles, DateTimeOffset? QrExpiresAt);

/// <param name="Class">auth, transient, cooldown or rate_limited.</param>
public sealed record LastErrorView(string Code, string Class, DateTimeOffset At, string? Message);

public sealed record RateBudgetView(int Available, int Capacity, double RefillPerMinute);

/// <summary>The owner's channel as GET shows it: never the webhook secret.</summary>
public sealed record OwnerView(string WebhookUrl);

/// <summary>An account as the operator sees it (API.md). Never credentials, never the webhook secret.</summary>
public sealed record AccountView(
    string Id,
    string Platform,
    string DisplayName,
    string State,
    DateTimeOffset StateSince,
    PairingView? Pairing,
    DateTimeOffset? CooldownUntil,
    LastErrorView? LastError,
    RateBudgetView RateBudget,
    DateTimeOffset? LinkedAt,
    string? Holder,
    OwnerView Owner,
    long Version);

public sealed record AccountConfigured(AccountView Account, bool Created, WebhookTarget Target);

/// <summary>Which platform an account is on and the settings its connector works with.</summary>
public sealed record ConnectorBinding(string AccountId, string Platform, string DisplayName, JsonElement? Settings)
{
    public ConnectorContext ToContext() => new(AccountId, DisplayName, Settings ?? default);
}

/// <summary>A lease on an account's live side: the silo holding it and the fencing epoch it was granted with.</summary>
public sealed record LeaseToken(string Holder, long Epoch);

/// <summary>The pairing ceremony in progress. <see cref="Attempt"/> numbers ceremonies so a late write of an old one is ignored.</summary>
public sealed record PairingTask(long Attempt, int Cycle, int MaxCycles, int QrTtlSeconds, DateTimeOffset Deadline, bool Scanned);

/// <summary>What the lease holder needs to drive an account: the state, the sealed credentials, what is due.</summary>
/// <param name="CheckDue">A reminder asked for a health check (health interval, backoff retry, cool-down end).</param>
/// <param name="NotBefore">The platform asked us to wait (rate limited) until then.</param>
public sealed record HostView(
    string State,
    long Epoch,
    string? Holder,
    ConnectorBinding Connector,
    string? SealedCredentials,
    long CredentialGeneration,
    PairingTask? Pairing,
    bool CheckDue,
    DateTimeOffset? NotBefore);

/// <summary>A classified platform failure, as the grain records it.</summary>
public sealed record PlatformFailure(ErrorClass Class, string Code, string Message, DateTimeOffset? Until = null, TimeSpan? RetryAfter = null)
{
    public static PlatformFailure From(PlatformException e) => new(e.Class, e.Code, e.Message, e.Until, e.RetryAfter);

    public static string ClassName(ErrorClass c) => c switch
    {
        ErrorClass.Auth => "auth",
        ErrorClass.Transient => "transient",
        ErrorClass.Cooldown => "cooldown",
        ErrorClass.RateLimited => "rate_limited",
        _ => c.ToString().ToLowerInvariant(),
    };
}

/// <summary>Permission for one send: the budget token is spent; the caller unseals and calls the platform.</summary>
public sealed record SendGrant(ConnectorBinding Connector, string SealedCredentials, long CredentialGeneration);

/// <summary>What DELETE needs for its best-effort logout; the account itself is already unlinked.</summary>
public sealed record UnlinkResult(ConnectorBinding Connector, string? SealedCredentials);

/// <summary>
/// A linked account of the agent fleet (ARCHITECTURE.md, Linked account). Operator calls come from the gateway;
/// calls taking a <see cref="LeaseToken"/> come from the node holding the account's lease and are refused with
/// <c>stale_epoch</c> once a newer lease holder has written.
/// </summary>
public interface ILinkedAccountGrain : IGrain
{
    // operator
    Task<AccountConfigured> ConfigureAsync(AccountSettings settings, CancellationToken ct);

    Task<AccountView?> GetAsync(CancellationToken ct);

    Task<AccountView> RequestPairingAsync(CancellationToken ct);

    Task<AccountView> StopAsync(CancellationToken ct);

    Task<AccountView> StartAsync(CancellationToken ct);

    /// <summary>Spends one token of the rate budget if the account may send now.</summary>
    Task<SendGrant> BeginSendAsync(CancellationToken ct);

    /// <summary>Records a failed send; returns the refusal to answer the sender with.</summary>
    Task<GrainException> SendFailedAsync(long credentialGeneration, PlatformFailure failure, CancellationToken ct);

    Task<string> GetSealedCredentialsAsync(CancellationToken ct);

    /// <summary>
    /// Key rotation: re-seals the stored credentials under the vault's current key. False when there is nothing
    /// to do (no credentials, or already under the current key); an unreadable value throws and changes nothing.
    /// </summary>
    Task<bool> ResealCredentialsAsync(CancellationToken ct);

    /// <summary>The platform binding for an import's health check; refused while cooling down.</summary>
    Task<ConnectorBinding> BeginImportAsync(CancellationToken ct);

    /// <summary>Seals and stores imported credentials; <paramref name="check"/> is the failure of their health check, if any.</summary>
    Task<AccountView> CompleteImportAsync(string credentials, PlatformFailure? check, CancellationToken ct);

    /// <summary>Wipes credentials and removes the account once its last notices are handed to the outbox.</summary>
    Task<UnlinkResult> UnlinkAsync(CancellationToken ct);

    // lease holder
    Task<HostView?> AttachAsync(LeaseToken lease, CancellationToken ct);

    Task DetachAsync(LeaseToken lease, CancellationToken ct);

    Task<HostView?> GetHostViewAsync(CancellationToken ct);

    /// <summary>A new QR code of the ceremony; returns its cycle number and relays it to the owner.</summary>
    Task<int> PairingCodeIssuedAsync(LeaseToken lease, long attempt, string qrContent, DateTimeOffset expiresAt, CancellationToken ct);

    Task PairingScannedAsync(LeaseToken lease, long attempt, int cycle, string? numberMatch, CancellationToken ct);

    Task PairingConfirmedAsync(LeaseToken lease, long attempt, string credentials, CancellationToken ct);

    Task PairingTimedOutAsync(LeaseToken lease, long attempt, CancellationToken ct);

    /// <summary>A failure while pairing. Returns when the holder may try again, or null when the ceremony ended.</summary>
    Task<DateTimeOffset?> PairingFailedAsync(LeaseToken lease, long attempt, PlatformFailure failure, CancellationToken ct);

    /// <param name="credentials">Plaintext credentials to (re)seal: rotated by the platform, or sealed under an old key.</param>
    Task HealthyAsync(LeaseToken lease, long credentialGeneration, string? credentials, CancellationToken ct);

    Task HealthFailedAsync(LeaseToken lease, long credentialGeneration, PlatformFailure failure, CancellationToken ct);
}

public static class WebhookEvents
{
    public const string PairingQr = "pairing.qr";
    public const string PairingScanned = "pairing.scanned";
    public const string PairingWithdrawn = "pairing.withdrawn";
    public const string PairingTimedOut = "pairing.timed_out";
    public const string AccountConnected = "account.connected";
    public const string AccountDisconnected = "account.disconnected";
    public const string AccountBadCredentials = "account.bad_credentials";
    public const string AccountCoolingDown = "account.cooling_down";
    public const string AccountUnlinked = "account.unlinked";
}

// Webhook bodies (API.md, Owner webhooks). Every body names its event, account and time.

public sealed record PairingQrEvent(
    string Event, string AccountId, DateTimeOffset At, int Cycle, int MaxCycles, DateTimeOffset ExpiresAt, string Caption, string QrUrl, string QrPngBase64);

public sealed record PairingScannedEvent(string Event, string AccountId, DateTimeOffset At, int Cycle, string? NumberMatch);

public sealed record PairingEndedEvent(string Event, string AccountId, DateTimeOffset At, int Cycle, int MaxCycles, string? Action = null);

public sealed record AccountEvent(
    string Event, string AccountId, DateTimeOffset At, string State, string? Reason = null, string? Action = null,
    DateTimeOffset? Until = null, DateTimeOffset? LinkedAt = null);

/// <summary>Where an account's owner webhooks go and the secret they are signed with.</summary>
public sealed record WebhookTarget(string Url, string Secret);

/// <summary>
/// One owner notice, made in the account's turn. <see cref="Seq"/> counts the notices of one incarnation of the
/// account, so handing notices to the outbox again (at-least-once) never enqueues one twice.
/// </summary>
public sealed record WebhookNotice(string Incarnation, long Seq, string DeliveryId, string Event, string Body, DateTimeOffset CreatedAt);

public sealed record OutboxStatus(int Pending, long Delivered, string? HeadEvent, int HeadAttempts, string? HeadLastError);

/// <summary>An account's owner-webhook deliveries: in order, one in flight, retried with backoff on durable reminders.</summary>
public interface IOutboxGrain : IGrain
{
    /// <summary>Appends notices not accepted before (idempotent) and sends future deliveries to <paramref name="target"/>.</summary>
    Task AcceptAsync(WebhookTarget target, IReadOnlyList<WebhookNotice> notices, CancellationToken ct);

    /// <summary>The account is gone: forget the outbox once its queue is drained.</summary>
    Task RetireAsync(CancellationToken ct);

    Task<OutboxStatus> GetStatusAsync(CancellationToken ct);
}

/// <summary>A connector may check its account's <c>connector</c> settings when the operator PUTs them.</summary>
public interface IConnectorSettingsValidation
{
    /// <summary>Every problem found, each naming its field (e.g. "connector.failWith must be …"); empty when valid.</summary>
    IReadOnlyList<string> ValidateSettings(JsonElement settings);
}

/// <summary>Every error code of the linked-account API, with its status.</summary>
public static class AccountErrors
{
    public static GrainException NotFound(string accountId) =>
        new("not_found", 404, "Not found", $"There is no account '{accountId}'.");

    public static GrainException Validation(string detail) => new("validation_failed", 400, "Invalid request", detail);

    public static GrainException InvalidState(string state, string action) =>
        new("invalid_state", 409, "Invalid state", $"Cannot {action} an account that is {state}.");

    public static GrainException NotConnected(string state) =>
        new("not_connected", 409, "Not connected", $"The account is {state}; it can send only while connected.");

    /// <summary><see cref="GrainException.RetryAfter"/> is the end of the cool-down, also answered as <c>cooldownUntil</c>.</summary>
    public static GrainException CoolingDown(DateTimeOffset until) =>
        new("cooling_down", 409, "Cooling down", $"The platform asked for a pause; no calls until {until:O}.")
        {
            RetryAfter = until,
            Extensions = new Dictionary<string, object?> { ["cooldownUntil"] = until },
        };

    public static GrainException RateBudgetExhausted(DateTimeOffset retryAt) =>
        new("rate_budget_exhausted", 429, "Rate budget exhausted", "This account has used its rate budget; retry later.") { RetryAfter = retryAt };

    public static GrainException PlatformRateLimited(DateTimeOffset retryAt) =>
        new("platform_rate_limited", 429, "Platform rate limit", "The platform asked this account to slow down; retry later.") { RetryAfter = retryAt };

    public static GrainException PlatformUnavailable(DateTimeOffset retryAt) =>
        new("platform_unavailable", 503, "Platform unavailable", "The platform could not be reached; the account reconnects on its own.") { RetryAfter = retryAt };

    public static GrainException BadCredentials(string accountId) =>
        new("bad_credentials", 409, "Bad credentials",
            $"The platform no longer accepts this account's credentials; re-pair with POST /v1/accounts/{accountId}/pair.");

    public static GrainException NoCredentials(string state) =>
        new("no_credentials", 409, "No credentials", $"The account is {state} and holds no credentials.");

    public static GrainException StaleEpoch(long epoch, long current) =>
        new("stale_epoch", 409, "Lease lost", $"A write with lease epoch {epoch} was refused: epoch {current} holds the account now.");
}
