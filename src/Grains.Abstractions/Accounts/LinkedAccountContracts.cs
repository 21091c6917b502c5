using System.Text.Json;
using System.Text.Json.Serialization;

namespace QrOrleans.Accounts;

public static class AccountStreams
{
    /// <summary>Stream namespace of linked accounts (key = account id); events are <see cref="LinkedAccountChanged"/>.</summary>
    public const string Namespace = "linked-account";

    /// <summary>The key of the one <see cref="IAccountDirectoryGrain"/>.</summary>
    public const string Directory = "fleet";
}

/// <summary>What an account gets when PUT leaves a section out on creation.</summary>
public static class AccountDefaults
{
    public static readonly RateBudgetConfig RateBudget = new(60, 60);
    public static readonly PairingConfig Pairing = new(3, 30);
}

/// <summary>
/// The owner's channel as stored: the webhook secret only ever sealed by the vault. <see cref="LegacyWebhookSecret"/>
/// is the plain text that state written before secrets were sealed holds; it is read, sealed at the account's next
/// activation or write, and never written again.
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.OwnerConfig")]
public sealed record OwnerConfig(
    [property: Id(0)] string WebhookUrl,
    [property: Id(2)] string? SealedWebhookSecret,
    [property: Id(1), JsonPropertyName("webhookSecret")] string? LegacyWebhookSecret = null);

[GenerateSerializer, Immutable, Alias("qrorleans.RateBudgetConfig")]
public sealed record RateBudgetConfig([property: Id(0)] int Capacity, [property: Id(1)] double RefillPerMinute);

[GenerateSerializer, Immutable, Alias("qrorleans.PairingConfig")]
public sealed record PairingConfig([property: Id(0)] int MaxCycles, [property: Id(1)] int QrTtlSeconds);

/// <summary>An account's configuration as stored. <see cref="Connector"/> is the platform's own settings object, as raw JSON.</summary>
[GenerateSerializer, Immutable, Alias("qrorleans.AccountConfig")]
public sealed record AccountConfig(
    [property: Id(0)] string Platform,
    [property: Id(1)] string DisplayName,
    [property: Id(2)] OwnerConfig Owner,
    [property: Id(3)] RateBudgetConfig RateBudget,
    [property: Id(4)] PairingConfig Pairing,
    [property: Id(5)] string? Connector);

/// <summary>
/// A PUT, already validated by the gateway. A null section keeps what the account has (or takes the default on
/// creation); a null <see cref="WebhookSecret"/> keeps the stored secret, which GET never shows.
/// <see cref="Connector"/> is raw JSON (an object).
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.AccountSettings")]
public sealed record AccountSettings(
    [property: Id(0)] string? Platform,
    [property: Id(1)] string? DisplayName,
    [property: Id(2)] string? WebhookUrl,
    [property: Id(3)] string? WebhookSecret,
    [property: Id(4)] RateBudgetConfig? RateBudget,
    [property: Id(5)] PairingConfig? Pairing,
    [property: Id(6)] string? Connector);

[GenerateSerializer, Immutable, Alias("qrorleans.PairingView")]
public sealed record PairingView([property: Id(0)] int Cycle, [property: Id(1)] int MaxCycles, [property: Id(2)] DateTimeOffset? QrExpiresAt);

/// <param name="Class">auth, transient, cooldown or rate_limited.</param>
[GenerateSerializer, Immutable, Alias("qrorleans.LastErrorView")]
public sealed record LastErrorView([property: Id(0)] string Code, [property: Id(1)] string Class, [property: Id(2)] DateTimeOffset At, [property: Id(3)] string? Message);

[GenerateSerializer, Immutable, Alias("qrorleans.RateBudgetView")]
public sealed record RateBudgetView([property: Id(0)] int Available, [property: Id(1)] int Capacity, [property: Id(2)] double RefillPerMinute);

/// <summary>The owner's channel as GET shows it: never the webhook secret.</summary>
[GenerateSerializer, Immutable, Alias("qrorleans.OwnerView")]
public sealed record OwnerView([property: Id(0)] string WebhookUrl);

/// <summary>
/// An account as the operator sees it (API.md). Never credentials, never the webhook secret. <see cref="Holder"/>
/// is the silo whose activation holds the live platform connection (null when the account needs none).
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.AccountView")]
public sealed record AccountView(
    [property: Id(0)] string Id,
    [property: Id(1)] string Platform,
    [property: Id(2)] string DisplayName,
    [property: Id(3)] string State,
    [property: Id(4)] DateTimeOffset StateSince,
    [property: Id(5)] PairingView? Pairing,
    [property: Id(6)] DateTimeOffset? CooldownUntil,
    [property: Id(7)] LastErrorView? LastError,
    [property: Id(8)] RateBudgetView RateBudget,
    [property: Id(9)] DateTimeOffset? LinkedAt,
    [property: Id(10)] string? Holder,
    [property: Id(11)] OwnerView Owner,
    [property: Id(12)] long Version);

/// <summary>The QR code an account that is pairing shows its owner now (the owner inbox); not a credential.</summary>
[GenerateSerializer, Immutable, Alias("qrorleans.OwnerQr")]
public sealed record OwnerQr(
    [property: Id(0)] int Cycle,
    [property: Id(1)] int MaxCycles,
    [property: Id(2)] DateTimeOffset ExpiresAt,
    [property: Id(3)] string Caption,
    [property: Id(4)] string QrContent);

/// <summary>
/// A state change of a linked account, on the stream keyed by its id: the version it reached, the operator's
/// view, and the owner's current QR while pairing. Never credentials or the webhook secret.
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.LinkedAccountChanged")]
public sealed record LinkedAccountChanged([property: Id(0)] long Version, [property: Id(1)] AccountView Account, [property: Id(2)] OwnerQr? Qr);

[GenerateSerializer, Immutable, Alias("qrorleans.AccountConfigured")]
public sealed record AccountConfigured([property: Id(0)] AccountView Account, [property: Id(1)] bool Created, [property: Id(2)] WebhookTarget Target);

/// <summary>Which platform an account is on and the settings (raw JSON) its connector works with.</summary>
[GenerateSerializer, Immutable, Alias("qrorleans.ConnectorBinding")]
public sealed record ConnectorBinding(
    [property: Id(0)] string AccountId, [property: Id(1)] string Platform, [property: Id(2)] string DisplayName, [property: Id(3)] string? Settings)
{
    public ConnectorContext ToContext() =>
        new(AccountId, DisplayName, Settings is null ? default : JsonDocument.Parse(Settings).RootElement.Clone());
}

/// <summary>
/// Identifies the worker of one activation of an account: its silo and a value fresh per activation. The grain
/// refuses a report carrying any other token (<c>stale_epoch</c>), so a worker left over from an older
/// activation, or from a duplicate during a partition, cannot change the account.
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.WorkerToken")]
public sealed record WorkerToken([property: Id(0)] string Silo, [property: Id(1)] string Activation);

/// <summary>The pairing ceremony in progress. <see cref="Attempt"/> numbers ceremonies so a late write of an old one is ignored.</summary>
[GenerateSerializer, Immutable, Alias("qrorleans.PairingTask")]
public sealed record PairingTask(
    [property: Id(0)] long Attempt,
    [property: Id(1)] int Cycle,
    [property: Id(2)] int MaxCycles,
    [property: Id(3)] int QrTtlSeconds,
    [property: Id(4)] DateTimeOffset Deadline,
    [property: Id(5)] bool Scanned);

/// <summary>What the worker needs to drive an account: the state, the sealed credentials, what is due.</summary>
/// <param name="Worker">The token of the current activation's worker: the only one whose reports count.</param>
/// <param name="CheckDue">A health check is due (health interval, backoff retry, cool-down end, a new activation).</param>
/// <param name="NotBefore">The platform asked us to wait (rate limited) until then.</param>
[GenerateSerializer, Immutable, Alias("qrorleans.HostView")]
public sealed record HostView(
    [property: Id(0)] string State,
    [property: Id(1)] WorkerToken Worker,
    [property: Id(2)] ConnectorBinding Connector,
    [property: Id(3)] string? SealedCredentials,
    [property: Id(4)] long CredentialGeneration,
    [property: Id(5)] PairingTask? Pairing,
    [property: Id(6)] bool CheckDue,
    [property: Id(7)] DateTimeOffset? NotBefore);

/// <summary>A classified platform failure, as the grain records it.</summary>
[GenerateSerializer, Immutable, Alias("qrorleans.PlatformFailure")]
public sealed record PlatformFailure(
    [property: Id(0)] ErrorClass Class,
    [property: Id(1)] string Code,
    [property: Id(2)] string Message,
    [property: Id(3)] DateTimeOffset? Until = null,
    [property: Id(4)] TimeSpan? RetryAfter = null)
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
[GenerateSerializer, Immutable, Alias("qrorleans.SendGrant")]
public sealed record SendGrant([property: Id(0)] ConnectorBinding Connector, [property: Id(1)] string SealedCredentials, [property: Id(2)] long CredentialGeneration);

/// <summary>
/// What an unlink or a delete needs for its best-effort logout (the credentials it forgot, if any); the account
/// itself is already unlinked. <see cref="Account"/> is the account kept by an unlink, null after a delete.
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.UnlinkResult")]
public sealed record UnlinkResult(
    [property: Id(0)] ConnectorBinding Connector, [property: Id(1)] string? SealedCredentials, [property: Id(2)] AccountView? Account = null);

/// <summary>
/// A linked account of the agent fleet (ARCHITECTURE.md, Linked account). Its activation is the one holder of
/// the live platform connection: it runs a worker (pairing loop, health checks) outside its turns, and the
/// worker reports back through the calls taking a <see cref="WorkerToken"/>, refused with <c>stale_epoch</c>
/// when the token is not the current activation's. Operator calls come from the gateway.
/// </summary>
[Alias("qrorleans.ILinkedAccountGrain")]
public interface ILinkedAccountGrain : IGrainWithStringKey
{
    // operator

    [Alias("Configure")]
    Task<AccountConfigured> ConfigureAsync(AccountSettings settings, CancellationToken ct = default);

    [Alias("Get")]
    Task<AccountView?> GetAsync(CancellationToken ct = default);

    /// <summary>The QR the owner should see now (the owner inbox), or null when not pairing or between codes.</summary>
    [Alias("GetOwnerQr")]
    Task<OwnerQr?> GetOwnerQrAsync(CancellationToken ct = default);

    [Alias("RequestPairing")]
    Task<AccountView> RequestPairingAsync(CancellationToken ct = default);

    [Alias("Stop")]
    Task<AccountView> StopAsync(CancellationToken ct = default);

    [Alias("Start")]
    Task<AccountView> StartAsync(CancellationToken ct = default);

    /// <summary>Spends one token of the rate budget if the account may send now.</summary>
    [Alias("BeginSend")]
    Task<SendGrant> BeginSendAsync(CancellationToken ct = default);

    /// <summary>Records a failed send; returns the refusal to answer the sender with.</summary>
    [Alias("SendFailed")]
    Task<GrainException> SendFailedAsync(long credentialGeneration, PlatformFailure failure, CancellationToken ct = default);

    [Alias("GetSealedCredentials")]
    Task<string> GetSealedCredentialsAsync(CancellationToken ct = default);

    /// <summary>
    /// Key rotation: re-seals the stored credentials and the owner's webhook secret under the vault's current key
    /// (and hands the outbox the resealed secret). False when there is nothing to do (no credentials, and both
    /// already under the current key); an unreadable value throws and changes nothing.
    /// </summary>
    [Alias("ResealCredentials")]
    Task<bool> ResealCredentialsAsync(CancellationToken ct = default);

    /// <summary>The platform binding for an import's health check; refused while cooling down.</summary>
    [Alias("BeginImport")]
    Task<ConnectorBinding> BeginImportAsync(CancellationToken ct = default);

    /// <summary>Seals and stores imported credentials; <paramref name="check"/> is the failure of their health check, if any.</summary>
    [Alias("CompleteImport")]
    Task<AccountView> CompleteImportAsync(string credentials, PlatformFailure? check, CancellationToken ct = default);

    /// <summary>
    /// Forgets the credentials and keeps the account, its settings and its pending notices: it is <c>unlinked</c>
    /// and may be paired or imported into again. An account already unlinked without credentials is left as it is.
    /// </summary>
    [Alias("UnlinkKeepingAccount")]
    Task<UnlinkResult> UnlinkAsync(CancellationToken ct = default);

    /// <summary>Wipes credentials and removes the account once its last notices are handed to the outbox.</summary>
    [Alias("Delete")]
    Task<UnlinkResult> DeleteAsync(CancellationToken ct = default);

    // recovery

    /// <summary>
    /// Activates the account if it is not active, so that an account needing a live connection gets one (its
    /// silo died, the cluster restarted). Cheap when it is already active; changes nothing.
    /// </summary>
    [Alias("EnsureLive")]
    Task EnsureLiveAsync(CancellationToken ct = default);

    // the activation's worker

    [Alias("GetHostView")]
    Task<HostView?> GetHostViewAsync(CancellationToken ct = default);

    /// <summary>A new QR code of the ceremony; returns its cycle number and relays it to the owner.</summary>
    [Alias("PairingCodeIssued")]
    Task<int> PairingCodeIssuedAsync(WorkerToken worker, long attempt, string qrContent, DateTimeOffset expiresAt, CancellationToken ct = default);

    [Alias("PairingScanned")]
    Task PairingScannedAsync(WorkerToken worker, long attempt, int cycle, string? numberMatch, CancellationToken ct = default);

    [Alias("PairingConfirmed")]
    Task PairingConfirmedAsync(WorkerToken worker, long attempt, string credentials, CancellationToken ct = default);

    [Alias("PairingTimedOut")]
    Task PairingTimedOutAsync(WorkerToken worker, long attempt, CancellationToken ct = default);

    /// <summary>A failure while pairing. Returns when the worker may try again, or null when the ceremony ended.</summary>
    [Alias("PairingFailed")]
    Task<DateTimeOffset?> PairingFailedAsync(WorkerToken worker, long attempt, PlatformFailure failure, CancellationToken ct = default);

    /// <param name="credentials">Plaintext credentials to (re)seal: rotated by the platform, or sealed under an old key.</param>
    [Alias("Healthy")]
    Task HealthyAsync(WorkerToken worker, long credentialGeneration, string? credentials, CancellationToken ct = default);

    [Alias("HealthFailed")]
    Task HealthFailedAsync(WorkerToken worker, long credentialGeneration, PlatformFailure failure, CancellationToken ct = default);
}

/// <summary>
/// Every account of the fleet (key <see cref="AccountStreams.Directory"/>): what GET /v1/accounts lists, and what
/// each silo wakes when a silo dies, so that accounts held there come back on a survivor at once.
/// </summary>
[Alias("qrorleans.IAccountDirectoryGrain")]
public interface IAccountDirectoryGrain : IGrainWithStringKey
{
    [Alias("Add")]
    Task AddAsync(string accountId, CancellationToken ct = default);

    [Alias("Remove")]
    Task RemoveAsync(string accountId, CancellationToken ct = default);

    /// <summary>Account ids in order.</summary>
    [Alias("List")]
    Task<IReadOnlyList<string>> ListAsync(CancellationToken ct = default);
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

// Webhook bodies (API.md, Owner webhooks). Every body names its event, account and time. They are serialized to
// JSON inside the account grain and travel as the notice's body string.

public sealed record PairingQrEvent(
    string Event, string AccountId, DateTimeOffset At, int Cycle, int MaxCycles, DateTimeOffset ExpiresAt, string Caption, string QrUrl, string QrPngBase64);

public sealed record PairingScannedEvent(string Event, string AccountId, DateTimeOffset At, int Cycle, string? NumberMatch);

public sealed record PairingEndedEvent(string Event, string AccountId, DateTimeOffset At, int Cycle, int MaxCycles, string? Action = null);

public sealed record AccountEvent(
    string Event, string AccountId, DateTimeOffset At, string State, string? Reason = null, string? Action = null,
    DateTimeOffset? Until = null, DateTimeOffset? LinkedAt = null);

/// <summary>
/// Where an account's owner webhooks go and the secret they are signed with, sealed by the vault: it is opened only
/// by the sender, for the one signature. <see cref="LegacySecret"/> is plain text from an outbox stored (or a node
/// running) before secrets were sealed; the outbox seals it on its next activation or write.
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.WebhookTarget")]
public sealed record WebhookTarget(
    [property: Id(0)] string Url,
    [property: Id(2)] string? SealedSecret,
    [property: Id(1), JsonPropertyName("secret")] string? LegacySecret = null);

/// <summary>
/// One owner notice, made in the account's turn. <see cref="Seq"/> counts the notices of one incarnation of the
/// account, so handing notices to the outbox again (at-least-once) never enqueues one twice.
/// </summary>
[GenerateSerializer, Immutable, Alias("qrorleans.WebhookNotice")]
public sealed record WebhookNotice(
    [property: Id(0)] string Incarnation,
    [property: Id(1)] long Seq,
    [property: Id(2)] string DeliveryId,
    [property: Id(3)] string Event,
    [property: Id(4)] string Body,
    [property: Id(5)] DateTimeOffset CreatedAt);

[GenerateSerializer, Immutable, Alias("qrorleans.OutboxStatus")]
public sealed record OutboxStatus(
    [property: Id(0)] int Pending, [property: Id(1)] long Delivered, [property: Id(2)] string? HeadEvent, [property: Id(3)] int HeadAttempts,
    [property: Id(4)] string? HeadLastError);

/// <summary>An account's owner-webhook deliveries: in order, one in flight, retried with backoff (timers, and a durable reminder).</summary>
[Alias("qrorleans.IOutboxGrain")]
public interface IOutboxGrain : IGrainWithStringKey
{
    /// <summary>Appends notices not accepted before (idempotent) and sends future deliveries to <paramref name="target"/>.</summary>
    [Alias("Accept")]
    Task AcceptAsync(WebhookTarget target, IReadOnlyList<WebhookNotice> notices, CancellationToken ct = default);

    /// <summary>The account is gone: forget the outbox once its queue is drained.</summary>
    [Alias("Retire")]
    Task RetireAsync(CancellationToken ct = default);

    /// <summary>Activates the outbox so that pending deliveries go out (after a restart); changes nothing.</summary>
    [Alias("Resume")]
    Task ResumeAsync(CancellationToken ct = default);

    [Alias("GetStatus")]
    Task<OutboxStatus> GetStatusAsync(CancellationToken ct = default);
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

    /// <summary>A report from a worker that is not the current activation's; that worker stops.</summary>
    public static GrainException StaleWorker() =>
        new("stale_epoch", 409, "Not the current holder", "The report came from a worker of an older activation of this account; it was refused.");
}
