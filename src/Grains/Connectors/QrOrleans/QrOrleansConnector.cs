using System.Collections.Concurrent;
using System.Globalization;
using System.Net;
using System.Text.Json;
using QrOrleans.Accounts;
using QrOrleans.KeyBinding;
using QrOrleans.QrSessions;

namespace QrOrleans.Grains.Connectors.QrOrleansServer;

/// <summary>
/// Platform <c>qrorleans</c>: an agent links itself as a device of a user of a QrOrleans server (this cluster by
/// default, or the one named by the account's <c>connector.serverUrl</c>), the user approving from their phone
/// exactly as they would approve a desktop. It speaks only the public HTTP API of API.md, so the server may be
/// another deployment.
/// <list type="bullet">
/// <item><b>One QR per cycle.</b> Each <see cref="BeginPairingAsync"/> starts a new sign-in session whose first QR is
/// the cycle's code. When the server rotates that QR (its <c>QrTtl</c>), the code the owner holds is dead, so the
/// poll answers <see cref="PairingProgress.Expired"/> and cancels the session; the host then starts its next cycle
/// with a fresh session. The host's cycle count is therefore the number of codes the owner was ever shown, and the
/// server's own rotations are never used.</item>
/// <item><b>Credentials</b> are <see cref="QrOrleansCredentials"/> as JSON: server URL, device id, user id, the
/// device's refresh token and the private key it is bound to. The refresh token rotates on every use; every
/// <see cref="CheckHealthAsync"/> returns the rotated value, which the caller must store in place of the old one
/// (replaying an old one revokes the device).</item>
/// <item><b>Key binding</b> (API.md, RFC 9449 DPoP): each ceremony makes a P-256 key, sends its public JWK with the
/// session, and proves it at the claim; the device's tokens are then bound to it, and every refresh and revoke
/// carries a proof. The key rides in the pairing handle until the claim, then in the (sealed) credentials.</item>
/// <item><b>A rejection</b> on the phone (an explicit "no", or a wrong number pick, which may be a phishing attempt)
/// ends the ceremony with <see cref="ErrorClass.Auth"/> <c>pairing_rejected</c> instead of pushing more codes to an
/// owner who just refused one. Expired and cancelled sessions are <see cref="PairingProgress.Expired"/>.</item>
/// <item><b>No messaging.</b> The platform has no messages: <see cref="SendMessageAsync"/> checks that readable
/// credentials are present and acknowledges without any call.</item>
/// </list>
/// The HttpClient's own <c>Timeout</c> must be longer than a long-poll (35 s or <c>Infinite</c>); every call is
/// bounded here anyway. Nothing is logged: handles carry the desktop token and credentials the refresh token, and
/// both carry the private key.
/// </summary>
public sealed class QrOrleansConnector : IPlatformConnector
{
    /// <summary>Poll answers wait for a version newer than the last one reported for a session, so a caller's loop never spins.</summary>
    private readonly ConcurrentDictionary<string, Reported> _reported = new(StringComparer.Ordinal);
    private readonly QrOrleansHttp _http;
    private readonly Func<Uri?> _defaultServer;
    private readonly QrOrleansConnectorOptions _options;
    private readonly TimeProvider _time;

    /// <param name="http">Used for every call; its <c>Timeout</c> must exceed a long-poll.</param>
    /// <param name="defaultServerUrl">This cluster's public origin: used when an account's settings name no serverUrl.</param>
    public QrOrleansConnector(HttpClient http, Uri? defaultServerUrl = null, QrOrleansConnectorOptions? options = null, TimeProvider? time = null)
        : this(http, () => defaultServerUrl, options, time)
    {
    }

    /// <param name="defaultServerUrl">Read at each call: a gateway learns its own listening address only after it starts.</param>
    public QrOrleansConnector(HttpClient http, Func<Uri?> defaultServerUrl, QrOrleansConnectorOptions? options = null, TimeProvider? time = null)
    {
        _options = options ?? new QrOrleansConnectorOptions();
        _http = new QrOrleansHttp(http, _options);
        _defaultServer = defaultServerUrl;
        _time = time ?? TimeProvider.System;
    }

    public string Platform => Platforms.QrOrleans;

    public async Task<PairingCode> BeginPairingAsync(ConnectorContext context, CancellationToken ct)
    {
        var server = ServerUrls.Configured(context, _defaultServer());
        ForgetFinishedSessions();
        // A key per ceremony: the session is created with its public half, so only this connector can claim it.
        using var key = DpopKey.Create();
        var reply = await _http.SendAsync(HttpMethod.Post, server, "v1/qr/sessions",
            new { client = new { name = ClientName(context), kind = "agent" }, key = key.PublicJwk }, null, _options.RequestTimeout, ct).ConfigureAwait(false);
        if (reply.Status != HttpStatusCode.Created)
        {
            throw QrOrleansHttp.Unexpected(reply, "start a sign-in session");
        }
        var body = reply.Body;
        if (reply.String("sessionId") is not { Length: > 0 } sessionId
            || reply.String("desktopToken") is not { Length: > 0 } desktopToken
            || !TryGetSnapshot(body, out var version, out var state, out var expiresAt)
            || state != QrSessionStates.Pending
            || !TryGetQr(body, out var url, out var qrExpiresAt, out var rotation))
        {
            throw QrOrleansHttp.Malformed("a new sign-in session");
        }
        var handle = new PairingHandle(server.ToString(), sessionId, desktopToken, version, rotation, expiresAt, key.Export());
        _reported[sessionId] = new Reported(version, expiresAt);
        return new PairingCode(url, qrExpiresAt, handle.Encode());
    }

    public async Task<PairingStatus> PollPairingAsync(ConnectorContext context, PairingCode code, TimeSpan wait, CancellationToken ct)
    {
        if (PairingHandle.TryDecode(code.Handle) is not { } handle)
        {
            return new PairingStatus(PairingProgress.Expired); // not a code this connector issued: start over
        }
        var known = _reported.TryGetValue(handle.SessionId, out var reported) ? Math.Max(reported.Version, handle.Version) : handle.Version;
        var deadline = _time.GetUtcNow() + (wait > TimeSpan.Zero ? wait : TimeSpan.Zero);
        while (true)
        {
            var remaining = deadline - _time.GetUtcNow();
            var seconds = (int)Math.Ceiling(Math.Clamp(remaining.TotalSeconds, 0, _options.MaxLongPoll.TotalSeconds));
            var path = $"v1/qr/sessions/{Uri.EscapeDataString(handle.SessionId)}"
                       + (seconds > 0 ? string.Create(CultureInfo.InvariantCulture, $"?waitForVersion={known}&timeout={seconds}") : "");
            var reply = await _http.SendAsync(HttpMethod.Get, handle.ServerUri, path, null, Caller.Bearer(handle.DesktopToken),
                TimeSpan.FromSeconds(seconds) + _options.RequestTimeout, ct).ConfigureAwait(false);
            if (reply.Status == HttpStatusCode.Unauthorized)
            {
                // The session is gone: deleted after its grace period, or a server that lost its memory store.
                Forget(handle);
                return new PairingStatus(PairingProgress.Expired);
            }
            if (!reply.IsSuccess)
            {
                throw QrOrleansHttp.Unexpected(reply, "show the sign-in session");
            }
            if (!TryGetSnapshot(reply.Body, out var version, out var state, out _))
            {
                throw QrOrleansHttp.Malformed("a session poll");
            }
            if (version > known || _time.GetUtcNow() >= deadline || seconds == 0)
            {
                _reported[handle.SessionId] = new Reported(Math.Max(version, known), handle.ExpiresAt);
                return await StatusAsync(handle, state, reply.Body, ct).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Refreshes the device's tokens: proves the device is still linked (not revoked by its owner, not signed out by a
    /// replayed token). The refresh token rotates, so the result always carries new credentials to store.
    /// </summary>
    public async Task<HealthResult> CheckHealthAsync(ConnectorContext context, string credentials, CancellationToken ct)
    {
        var stored = QrOrleansCredentials.Parse(credentials);
        using var key = stored.OpenKey();
        var (rotated, _) = await RefreshAsync(stored, key, ct).ConfigureAwait(false);
        return new HealthResult(rotated.ToJson());
    }

    /// <summary>The platform has no messages to send: a no-op acknowledgement once the credentials are known to be readable.</summary>
    public Task SendMessageAsync(ConnectorContext context, string credentials, string to, string text, CancellationToken ct)
    {
        QrOrleansCredentials.Parse(credentials);
        return Task.CompletedTask;
    }

    /// <summary>Revokes the device on its server (DELETE /v1/devices/{id} with a freshly refreshed access token).</summary>
    public async Task LogoutAsync(ConnectorContext context, string credentials, CancellationToken ct)
    {
        var stored = QrOrleansCredentials.Parse(credentials);
        using var key = stored.OpenKey();
        string accessToken;
        try
        {
            (_, accessToken) = await RefreshAsync(stored, key, ct).ConfigureAwait(false);
        }
        catch (PlatformException e) when (e.Class == ErrorClass.Auth)
        {
            return; // already revoked or signed out: nothing left to end
        }
        var reply = await _http.SendAsync(HttpMethod.Delete, stored.Server, "v1/devices/" + Uri.EscapeDataString(stored.DeviceId),
            null, Caller.Access(accessToken, key), _options.RequestTimeout, ct).ConfigureAwait(false);
        if (!reply.IsSuccess && reply.Status is not (HttpStatusCode.NotFound or HttpStatusCode.Unauthorized))
        {
            throw QrOrleansHttp.Unexpected(reply, "revoke the device");
        }
    }

    /// <param name="key">The key the device is bound to: the refresh carries a proof of it (null: an unbound device).</param>
    private async Task<(QrOrleansCredentials Rotated, string AccessToken)> RefreshAsync(QrOrleansCredentials stored, DpopKey? key, CancellationToken ct)
    {
        var reply = await _http.SendAsync(HttpMethod.Post, stored.Server, "v1/auth/refresh", new { refreshToken = stored.RefreshToken },
            key is null ? null : Caller.ProofOnly(key), _options.RequestTimeout, ct).ConfigureAwait(false);
        if (reply.Status == HttpStatusCode.Unauthorized)
        {
            throw new PlatformException(ErrorClass.Auth, reply.Code ?? "invalid_refresh_token", reply.Code == "refresh_token_reused"
                ? "The device's refresh token was replayed, so the server signed the device out; pair the account again."
                : "The server no longer accepts this device (revoked by its owner, or unknown); pair the account again.");
        }
        if (!reply.IsSuccess)
        {
            throw QrOrleansHttp.Unexpected(reply, "refresh the device's session");
        }
        if (reply.String("refreshToken") is not { Length: > 0 } refreshToken || reply.String("accessToken") is not { Length: > 0 } accessToken)
        {
            throw QrOrleansHttp.Malformed("a token refresh");
        }
        return (stored.WithRefreshToken(refreshToken), accessToken);
    }

    private async Task<PairingStatus> StatusAsync(PairingHandle handle, string state, JsonElement snapshot, CancellationToken ct)
    {
        switch (state)
        {
            case QrSessionStates.Pending:
                if (TryGetQr(snapshot, out _, out _, out var rotation) && rotation != handle.Rotation)
                {
                    // The owner's code is superseded: end this session so the next cycle shows exactly one new code.
                    Forget(handle);
                    await CancelQuietlyAsync(handle, ct).ConfigureAwait(false);
                    return new PairingStatus(PairingProgress.Expired);
                }
                return new PairingStatus(PairingProgress.Waiting);
            case QrSessionStates.Scanned:
                return new PairingStatus(PairingProgress.Scanned, String(snapshot, "numberMatch"));
            case QrSessionStates.Approved:
                Forget(handle);
                return await ClaimAsync(handle, ct).ConfigureAwait(false);
            case QrSessionStates.Rejected:
                Forget(handle);
                throw new PlatformException(ErrorClass.Auth, "pairing_rejected",
                    "The owner rejected the sign-in on their phone (or picked the wrong number); ask again to pair.");
            case QrSessionStates.Completed: // claimed, but not by this poll: whatever tokens there were are lost to us
            case QrSessionStates.Cancelled:
            case QrSessionStates.Expired:
                Forget(handle);
                return new PairingStatus(PairingProgress.Expired);
            default:
                throw QrOrleansHttp.Malformed("a session poll");
        }
    }

    private async Task<PairingStatus> ClaimAsync(PairingHandle handle, CancellationToken ct)
    {
        using var key = DpopKey.TryImport(handle.Key);
        var reply = await _http.SendAsync(HttpMethod.Post, handle.ServerUri, $"v1/qr/sessions/{Uri.EscapeDataString(handle.SessionId)}/claim",
            null, Caller.BearerWithProof(handle.DesktopToken, key), _options.RequestTimeout, ct).ConfigureAwait(false);
        if (reply.Status is HttpStatusCode.Gone or HttpStatusCode.Unauthorized)
        {
            return new PairingStatus(PairingProgress.Expired); // already claimed, or the claim window closed
        }
        if (!reply.IsSuccess)
        {
            throw QrOrleansHttp.Unexpected(reply, "hand out the device's tokens");
        }
        if (reply.String("refreshToken") is not { Length: > 0 } refreshToken
            || !reply.Body.TryGetProperty("device", out var device) || String(device, "id") is not { Length: > 0 } deviceId)
        {
            throw QrOrleansHttp.Malformed("the claim");
        }
        var userId = reply.Body.TryGetProperty("user", out var user) ? String(user, "id") : null;
        // A server that does not bind keys ignores ours and answers plain bearer tokens: then there is no key to keep.
        var bound = key is not null && string.Equals(reply.String("tokenType"), "DPoP", StringComparison.OrdinalIgnoreCase);
        var credentials = new QrOrleansCredentials(handle.Server, deviceId, userId, refreshToken, bound ? handle.Key : null);
        return new PairingStatus(PairingProgress.Confirmed, Credentials: credentials.ToJson());
    }

    private async Task CancelQuietlyAsync(PairingHandle handle, CancellationToken ct)
    {
        try
        {
            await _http.SendAsync(HttpMethod.Post, handle.ServerUri, $"v1/qr/sessions/{Uri.EscapeDataString(handle.SessionId)}/cancel",
                null, Caller.Bearer(handle.DesktopToken), _options.RequestTimeout, ct).ConfigureAwait(false);
        }
        catch (PlatformException)
        {
            // best effort: an abandoned session expires on its own
        }
    }

    private void Forget(PairingHandle handle) => _reported.TryRemove(handle.SessionId, out _);

    /// <summary>Entries of ceremonies the host abandoned (a crash, a stop) go once their session is surely over.</summary>
    private void ForgetFinishedSessions()
    {
        var now = _time.GetUtcNow();
        foreach (var (sessionId, reported) in _reported)
        {
            if (reported.SessionExpiresAt + TimeSpan.FromMinutes(10) < now)
            {
                _reported.TryRemove(sessionId, out _);
            }
        }
    }

    private string ClientName(ConnectorContext context)
    {
        const string suffix = " (agent)";
        var name = string.IsNullOrWhiteSpace(context.DisplayName) ? context.AccountId : context.DisplayName.Trim();
        var room = Math.Max(1, _options.MaxClientName - suffix.Length);
        return (name.Length > room ? name[..room].TrimEnd() : name) + suffix;
    }

    private static bool TryGetSnapshot(JsonElement body, out long version, out string state, out DateTimeOffset expiresAt)
    {
        version = 0;
        state = "";
        expiresAt = default;
        if (body.ValueKind != JsonValueKind.Object
            || !body.TryGetProperty("version", out var v) || v.ValueKind != JsonValueKind.Number || !v.TryGetInt64(out version)
            || String(body, "state") is not { } st)
        {
            return false;
        }
        state = st;
        if (body.TryGetProperty("expiresAt", out var e) && e.ValueKind == JsonValueKind.String)
        {
            e.TryGetDateTimeOffset(out expiresAt);
        }
        return true;
    }

    private static bool TryGetQr(JsonElement body, out string url, out DateTimeOffset expiresAt, out int rotation)
    {
        url = "";
        expiresAt = default;
        rotation = 0;
        if (body.ValueKind != JsonValueKind.Object || !body.TryGetProperty("qr", out var qr)
            || String(qr, "url") is not { Length: > 0 } value
            || !qr.TryGetProperty("expiresAt", out var e) || e.ValueKind != JsonValueKind.String || !e.TryGetDateTimeOffset(out expiresAt)
            || !qr.TryGetProperty("rotation", out var r) || r.ValueKind != JsonValueKind.Number || !r.TryGetInt32(out rotation))
        {
            return false;
        }
        url = value;
        return true;
    }

    private static string? String(JsonElement obj, string name) =>
        obj.ValueKind == JsonValueKind.Object && obj.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : null;

    private sealed record Reported(long Version, DateTimeOffset SessionExpiresAt);
}
