using System.Text.Json;
using QrOrleans.Accounts;

namespace QrOrleans.Grains.Connectors.Sandbox;

/// <summary>
/// The <c>sandbox</c> platform (API.md, connector): behaves as its account's settings and the test or demo script
/// on <see cref="SandboxPlatform"/> say, and fails with exactly the classified errors real platforms raise.
/// </summary>
public sealed class SandboxConnector(SandboxPlatform platform) : IPlatformConnector, IConnectorSettingsValidation
{
    private static readonly TimeSpan PollStep = TimeSpan.FromMilliseconds(50);

    public string Platform => Platforms.Sandbox;

    public IReadOnlyList<string> ValidateSettings(JsonElement settings)
    {
        var problems = new List<string>();
        SandboxSettings.Parse(settings, problems);
        return problems;
    }

    public Task<PairingCode> BeginPairingAsync(ConnectorContext context, CancellationToken ct)
    {
        var settings = Settings(context);
        platform.Record(context.AccountId, "begin_pairing");
        var now = DateTimeOffset.UtcNow;
        var expiresAt = now.AddSeconds(settings.QrTtlSeconds);
        var handle = platform.Issue(context.AccountId, now, expiresAt);
        return Task.FromResult(new PairingCode($"https://sandbox.qrorleans.test/link/{context.AccountId}/{handle}", expiresAt, handle));
    }

    public async Task<PairingStatus> PollPairingAsync(ConnectorContext context, PairingCode code, TimeSpan wait, CancellationToken ct)
    {
        var settings = Settings(context);
        platform.Record(context.AccountId, "poll_pairing");
        var until = DateTimeOffset.UtcNow + wait;
        while (true)
        {
            var now = DateTimeOffset.UtcNow;
            var status = platform.WithCode(context.AccountId, code.Handle, c => Progress(c, settings, now));
            if (status is not null)
            {
                return status.Progress == PairingProgress.Confirmed
                    ? status with { Credentials = platform.NewSession(context.AccountId) }
                    : status;
            }
            if (now >= until)
            {
                return new PairingStatus(PairingProgress.Waiting);
            }
            var step = until - now < PollStep ? until - now : PollStep;
            await Task.Delay(step, ct).ConfigureAwait(false);
        }
    }

    /// <summary>News about a code, or null while there is none (the caller keeps waiting).</summary>
    private static PairingStatus? Progress(SandboxPlatform.Code? code, SandboxSettings settings, DateTimeOffset now)
    {
        if (code is null || now >= code.ExpiresAt && code.ScannedAt is null)
        {
            return new PairingStatus(PairingProgress.Expired);
        }
        if (settings.AutoConfirm && code.ScannedAt is null && now >= code.IssuedAt.AddMilliseconds(settings.ScanAfterMs))
        {
            code.ScannedAt = now;
            code.ConfirmRequested = true;
        }
        if (code.ScannedAt is { } scannedAt)
        {
            if (!code.ScanReported)
            {
                code.ScanReported = true;
                return new PairingStatus(PairingProgress.Scanned, settings.NumberMatch);
            }
            if (code.ConfirmRequested && now >= scannedAt.AddMilliseconds(settings.ConfirmAfterMs))
            {
                code.ConfirmRequested = false;
                return new PairingStatus(PairingProgress.Confirmed);
            }
        }
        return null;
    }

    public Task<HealthResult> CheckHealthAsync(ConnectorContext context, string credentials, CancellationToken ct)
    {
        Authorized(context, credentials, "health");
        return Task.FromResult(new HealthResult());
    }

    public Task SendMessageAsync(ConnectorContext context, string credentials, string to, string text, CancellationToken ct)
    {
        Authorized(context, credentials, "send");
        platform.Deliver(context.AccountId, to, text);
        return Task.CompletedTask;
    }

    public Task LogoutAsync(ConnectorContext context, string credentials, CancellationToken ct)
    {
        platform.Record(context.AccountId, "logout");
        platform.EndSession(context.AccountId, credentials);
        return Task.CompletedTask;
    }

    /// <summary>A credentialed call: records it, then fails as scripted, or as a platform does for an unknown session.</summary>
    private void Authorized(ConnectorContext context, string credentials, string kind)
    {
        var settings = Settings(context);
        platform.Record(context.AccountId, kind);
        switch (platform.Failure(context.AccountId, settings.FailWith))
        {
            case "auth":
                throw new PlatformException(ErrorClass.Auth, "session_revoked", "The sandbox platform signed this session out.");
            case "transient":
                throw new PlatformException(ErrorClass.Transient, "unreachable", "The sandbox platform did not answer.");
            case "cooldown":
                throw new PlatformException(ErrorClass.Cooldown, "temporarily_restricted", "The sandbox platform restricted this account for a while.")
                {
                    Until = DateTimeOffset.UtcNow.AddSeconds(settings.CooldownSeconds),
                };
            case "rate_limited":
                throw new PlatformException(ErrorClass.RateLimited, "too_many_requests", "The sandbox platform asked this account to slow down.")
                {
                    RetryAfter = TimeSpan.FromSeconds(settings.RetryAfterSeconds),
                };
        }
        if (!platform.HasSession(context.AccountId, credentials))
        {
            throw new PlatformException(ErrorClass.Auth, "session_unknown", "The sandbox platform does not know this session.");
        }
    }

    private static SandboxSettings Settings(ConnectorContext context) => SandboxSettings.Parse(context.Settings, []);
}
