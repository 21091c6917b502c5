using QrOrleans.Cli.Hosting;

namespace QrOrleans.Cli.Login;

/// <summary><c>qrorleans whoami</c>: the user and device of the saved login, as the server sees them now.</summary>
public static class WhoAmI
{
    public static async Task<int> RunAsync(ServerClient api, CliEnvironment environment, TextWriter output, CancellationToken ct)
    {
        using var session = SavedSession.Open(api, environment);
        var me = (await session.GetAsync("v1/me", ct)).Body;
        var login = session.Login;
        output.WriteLine($"Signed in as {ServerClient.String(me, "displayName")} (@{ServerClient.String(me, "username")}, user {ServerClient.String(me, "id")}) on {login.Server}");
        output.WriteLine($"This device: {login.DeviceName} ({login.DeviceId}), "
            + (session.IsKeyBound ? $"tokens bound to the key in {login.KeyFile}" : "plain bearer tokens (signed in by an older CLI)"));
        return ExitCodes.Ok;
    }
}
