using System.Globalization;
using System.Text.Json;
using QrOrleans.Cli.Hosting;
using QrOrleans.KeyBinding;
using QrOrleans.QrSessions;

namespace QrOrleans.Cli.Login;

public sealed record LoginOptions(string ClientName, bool Invert, bool DrawQr);

/// <summary>
/// <c>qrorleans login</c>: this terminal signs in as a new device of a user, headless, by the QR ceremony of the
/// desktop side of API.md. It starts a session (kind <c>cli</c>), draws the QR, follows the session by long-polling
/// (a redrawn code on every rotation, the number to pick once scanned), claims the tokens once the phone approves, and
/// saves them to the credentials file. The session is created with the public key of a new P-256 key, the claim
/// carries a proof of it, and the tokens are bound to it: its private half is saved (0600) beside the credentials,
/// and the saved tokens are of no use without it. Ctrl+C cancels the session on the server before leaving.
/// </summary>
public sealed class LoginFlow(ServerClient api, CliEnvironment environment, TextWriter output, LoginOptions options)
{
    private const int MaxLongPollSeconds = 30;

    private bool _countdownShown;

    public async Task<int> RunAsync(CancellationToken ct)
    {
        // The new device's key: the session is created with its public half, so only this terminal can claim it,
        // and the tokens it yields are bound to it (API.md "Key binding").
        using var key = DpopKey.Create();
        var created = (await api.PostAsync("v1/qr/sessions",
            new { client = new { name = options.ClientName, kind = "cli" }, key = key.PublicJwk }, ct)).Body;
        var sessionId = ServerClient.String(created, "sessionId") ?? throw NotQrOrleans();
        var desktopToken = ServerClient.String(created, "desktopToken") ?? throw NotQrOrleans();
        var session = new Session(sessionId, desktopToken, key);
        try
        {
            return await FollowAsync(session, created, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            EndCountdown();
            await CancelQuietlyAsync(session);
            throw;
        }
    }

    private async Task<int> FollowAsync(Session session, JsonElement snapshot, CancellationToken ct)
    {
        output.WriteLine($"Sign in to {api.Server} as a new device \"{options.ClientName}\".");
        var known = 0L;
        var shownRotation = 0;
        var sessionExpiresAt = DateTimeOffset.MaxValue;
        while (true)
        {
            var version = snapshot.TryGetProperty("version", out var v) && v.TryGetInt64(out var n) ? n : throw NotQrOrleans();
            if (version > known)
            {
                known = version;
                sessionExpiresAt = JsonFields.Instant(snapshot, "expiresAt") ?? sessionExpiresAt;
                var state = ServerClient.String(snapshot, "state") ?? throw NotQrOrleans();
                switch (state)
                {
                    case QrSessionStates.Pending:
                        shownRotation = ShowQr(snapshot, shownRotation);
                        break;
                    case QrSessionStates.Scanned:
                        EndCountdown();
                        output.WriteLine($"Scanned — pick {ServerClient.String(snapshot, "numberMatch")} on your phone, then approve.");
                        break;
                    case QrSessionStates.Approved:
                        EndCountdown();
                        output.WriteLine("Approved — claiming this device's tokens…");
                        return await ClaimAsync(session, ct);
                    case QrSessionStates.Rejected:
                        throw new CliFailure("The sign-in was rejected on the phone (or the wrong number was picked).");
                    case QrSessionStates.Expired:
                        throw new CliFailure("The sign-in expired before it was approved; run 'qrorleans login' again for a new code.");
                    case QrSessionStates.Cancelled:
                        throw new CliFailure("The sign-in was cancelled.");
                    default: // completed: only the holder of the desktop token can claim, so this is a claim we lost
                        throw new CliFailure($"The sign-in session is {state}; run 'qrorleans login' again.");
                }
            }
            snapshot = await WaitForChangeAsync(session, known, snapshot, sessionExpiresAt, ct);
        }
    }

    /// <summary>Long-polls for a version newer than <paramref name="known"/>, ticking the QR countdown meanwhile on a terminal.</summary>
    private async Task<JsonElement> WaitForChangeAsync(Session session, long known, JsonElement current, DateTimeOffset sessionExpiresAt, CancellationToken ct)
    {
        var seconds = (int)Math.Clamp(Math.Ceiling((sessionExpiresAt - DateTimeOffset.UtcNow).TotalSeconds) + 1, 1, MaxLongPollSeconds);
        var path = string.Create(CultureInfo.InvariantCulture, $"v1/qr/sessions/{Uri.EscapeDataString(session.Id)}?waitForVersion={known}&timeout={seconds}");
        var poll = api.GetAsync(path, ct, Caller.Bearer(session.DesktopToken), TimeSpan.FromSeconds(seconds) + ServerClient.RequestTimeout);
        var qrExpiresAt = JsonFields.Instant(JsonFields.Child(current, "qr"), "expiresAt");
        while (!poll.IsCompleted)
        {
            if (environment.Interactive && qrExpiresAt is { } expiry && ServerClient.String(current, "state") == QrSessionStates.Pending)
            {
                var left = Math.Max(0, (int)Math.Ceiling((expiry - DateTimeOffset.UtcNow).TotalSeconds));
                output.Write($"\r  waiting for a scan — this code expires in {left,2} s ");
                output.Flush();
                _countdownShown = true;
            }
            await Task.WhenAny(poll, Task.Delay(TimeSpan.FromSeconds(1), ct));
            ct.ThrowIfCancellationRequested();
        }
        try
        {
            return (await poll).Body;
        }
        catch (ServerProblem problem) when (problem.Status == 401)
        {
            throw new CliFailure("The sign-in session is gone on the server; run 'qrorleans login' again.");
        }
    }

    private int ShowQr(JsonElement snapshot, int shownRotation)
    {
        var qr = JsonFields.Child(snapshot, "qr");
        var url = ServerClient.String(qr, "url") ?? throw NotQrOrleans();
        var rotation = qr.TryGetProperty("rotation", out var r) && r.TryGetInt32(out var value) ? value : shownRotation + 1;
        if (rotation == shownRotation)
        {
            return rotation;
        }
        EndCountdown();
        var maxRotations = JsonFields.Text(qr, "maxRotations") ?? "?";
        output.WriteLine(shownRotation == 0
            ? "Scan this code with the QrOrleans app on a phone that is signed in:"
            : $"The code was refreshed ({rotation}/{maxRotations}); scan this one:");
        if (options.DrawQr)
        {
            output.WriteLine(TerminalQr.Render(url, options.Invert));
        }
        output.WriteLine($"  {url}");
        var expires = JsonFields.Instant(qr, "expiresAt") is { } at
            ? $"expires in {Math.Max(0, (int)Math.Ceiling((at - DateTimeOffset.UtcNow).TotalSeconds))} s (at {at.UtcDateTime:HH:mm:ss} UTC)"
            : "";
        output.WriteLine($"  code {rotation}/{maxRotations} {expires}".TrimEnd());
        output.Flush();
        return rotation;
    }

    private async Task<int> ClaimAsync(Session session, CancellationToken ct)
    {
        var claim = (await api.PostAsync($"v1/qr/sessions/{Uri.EscapeDataString(session.Id)}/claim", null, ct,
            Caller.BearerWithProof(session.DesktopToken, session.Key))).Body;
        var accessToken = ServerClient.String(claim, "accessToken") ?? throw NotQrOrleans();
        var refreshToken = ServerClient.String(claim, "refreshToken") ?? throw NotQrOrleans();
        var device = JsonFields.Child(claim, "device");
        var expiresIn = claim.TryGetProperty("expiresIn", out var s) && s.TryGetInt32(out var secs) ? secs : 0;
        // A server without key binding ignores the key and hands out plain bearer tokens: then there is no key to keep.
        var bound = string.Equals(ServerClient.String(claim, "tokenType"), "DPoP", StringComparison.OrdinalIgnoreCase);
        var caller = bound ? Caller.Bound(accessToken, session.Key) : Caller.Bearer(accessToken);

        // Who am I: asked with the new access token, which proves the tokens work before they are saved.
        var me = (await api.GetAsync("v1/me", ct, caller)).Body;
        var login = new SavedLogin(
            api.Server.ToString(),
            ServerClient.String(me, "id") ?? throw NotQrOrleans(),
            ServerClient.String(me, "username"),
            ServerClient.String(me, "displayName"),
            ServerClient.String(device, "id") ?? throw NotQrOrleans(),
            ServerClient.String(device, "name"),
            refreshToken,
            accessToken,
            DateTimeOffset.UtcNow.AddSeconds(expiresIn),
            DateTimeOffset.UtcNow,
            bound ? CredentialsFile.SaveKey(environment.ConfigDirectory, session.Key) : null);
        CredentialsFile.Save(environment.ConfigDirectory, login);

        output.WriteLine($"Signed in as {login.DisplayName} (@{login.Username}, user {login.UserId}) on {login.Server}");
        output.WriteLine($"This device: {login.DeviceName} ({login.DeviceId})");
        output.WriteLine($"Credentials saved to {Path.Combine(environment.ConfigDirectory, CredentialsFile.FileName)}"
            + (bound ? $", bound to the key in {login.KeyFile} beside it" : ""));
        return ExitCodes.Ok;
    }

    private async Task CancelQuietlyAsync(Session session)
    {
        try
        {
            using var bounded = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await api.PostAsync($"v1/qr/sessions/{Uri.EscapeDataString(session.Id)}/cancel", null, bounded.Token, Caller.Bearer(session.DesktopToken));
        }
        catch (Exception e) when (e is CliFailure or OperationCanceledException)
        {
            // best effort: the session expires on its own
        }
    }

    private void EndCountdown()
    {
        if (_countdownShown)
        {
            output.WriteLine();
            _countdownShown = false;
        }
    }

    private ServerUnavailable NotQrOrleans() => new($"{api.Server} did not answer like a QrOrleans server.");

    private sealed record Session(string Id, string DesktopToken, DpopKey Key)
    {
        public override string ToString() => $"Session {{ Id = {Id}, DesktopToken = ***, Key = *** }}";
    }
}
