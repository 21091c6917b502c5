using QrOrleans.Cli.Hosting;
using QrOrleans.KeyBinding;

namespace QrOrleans.Cli.Login;

/// <summary>
/// A command's use of the login saved for one server. Calls carry its access token, key-bound (<c>Authorization: DPoP</c>
/// and a proof signed with the login's key); an access token that has expired, or that the server refuses, is
/// exchanged once for new tokens with a proof of the same key, and the rotated tokens are saved before the call goes
/// on (the old refresh token is spent: replaying it would sign the device out).
/// </summary>
public sealed class SavedSession : IDisposable
{
    /// <summary>An access token this close to its expiry is refreshed first rather than sent to be refused.</summary>
    private static readonly TimeSpan ExpirySlack = TimeSpan.FromSeconds(30);

    private readonly ServerClient _api;
    private readonly string _directory;
    private readonly DpopKey? _key;
    private SavedLogin _login;

    private SavedSession(ServerClient api, string directory, SavedLogin login, DpopKey? key)
    {
        _api = api;
        _directory = directory;
        _login = login;
        _key = key;
    }

    public SavedLogin Login => _login;

    public bool IsKeyBound => _key is not null;

    public static SavedSession Open(ServerClient api, CliEnvironment environment)
    {
        var directory = environment.ConfigDirectory;
        var login = CredentialsFile.Load(directory, api.Server.ToString())
                    ?? throw new UsageFailure($"This terminal is not signed in to {api.Server}; run 'qrorleans login {api.Server}' first.");
        DpopKey? key = null;
        if (login.IsKeyBound && (key = CredentialsFile.LoadKey(directory, login)) is null)
        {
            throw new UsageFailure($"The key of the sign-in to {api.Server} ({Path.Combine(directory, login.KeyFile!)}) is missing or unreadable, "
                + $"and its tokens are useless without it; run 'qrorleans login {api.Server}' again.");
        }
        return new SavedSession(api, directory, login, key);
    }

    public async Task<ServerReply> GetAsync(string path, CancellationToken ct)
    {
        var refreshed = false;
        if (_login.AccessTokenExpiresAt - ExpirySlack <= DateTimeOffset.UtcNow)
        {
            await RefreshAsync(ct);
            refreshed = true;
        }
        try
        {
            return await _api.GetAsync(path, ct, Caller());
        }
        catch (ServerProblem problem) when (problem.Status == 401 && !refreshed)
        {
            await RefreshAsync(ct);
            return await _api.GetAsync(path, ct, Caller());
        }
    }

    private Caller Caller() => _key is null ? Hosting.Caller.Bearer(_login.AccessToken) : Hosting.Caller.Bound(_login.AccessToken, _key);

    private async Task RefreshAsync(CancellationToken ct)
    {
        ServerReply reply;
        try
        {
            reply = await _api.PostAsync("v1/auth/refresh", new { refreshToken = _login.RefreshToken }, ct,
                _key is null ? null : Hosting.Caller.ProofOnly(_key));
        }
        catch (ServerProblem problem) when (problem.Status == 401)
        {
            throw new SignedOut($"{_api.Server} no longer accepts this terminal's sign-in ({problem.Code ?? "unauthenticated"}): "
                + $"the device was signed out, perhaps from the phone; run 'qrorleans login {_api.Server}' again.");
        }
        var accessToken = ServerClient.String(reply.Body, "accessToken");
        var refreshToken = ServerClient.String(reply.Body, "refreshToken");
        if (accessToken is null || refreshToken is null)
        {
            throw new ServerUnavailable($"{_api.Server} did not answer like a QrOrleans server.");
        }
        var expiresIn = reply.Body.TryGetProperty("expiresIn", out var s) && s.TryGetInt32(out var seconds) ? seconds : 0;
        _login = _login with
        {
            AccessToken = accessToken,
            RefreshToken = refreshToken,
            AccessTokenExpiresAt = DateTimeOffset.UtcNow.AddSeconds(expiresIn),
            SavedAt = DateTimeOffset.UtcNow,
        };
        CredentialsFile.Save(_directory, _login, makeCurrent: false);
    }

    public void Dispose() => _key?.Dispose();

    private sealed class SignedOut(string message) : CliFailure(message)
    {
        public override int ExitCode => ExitCodes.Refused;
    }
}
