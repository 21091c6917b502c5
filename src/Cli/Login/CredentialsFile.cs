using System.Text.Json;
using System.Text.Json.Nodes;

namespace QrOrleans.Cli.Login;

/// <summary>What a login leaves behind for one server.</summary>
public sealed record SavedLogin(
    string Server,
    string UserId,
    string? Username,
    string? DisplayName,
    string DeviceId,
    string? DeviceName,
    string RefreshToken,
    string AccessToken,
    DateTimeOffset AccessTokenExpiresAt,
    DateTimeOffset SavedAt)
{
    public override string ToString() => $"SavedLogin {{ Server = {Server}, DeviceId = {DeviceId}, tokens = *** }}";
}

/// <summary>
/// <c>credentials.json</c>: <c>{ "version": 1, "current": "&lt;server&gt;", "servers": { "&lt;server&gt;": SavedLogin } }</c>,
/// one entry per server signed in to. The file holds bearer secrets, so it is only ever readable by its owner: the
/// folder is 0700, the file 0600, and it is replaced atomically (written beside it with 0600, then renamed) so no
/// reader ever sees it half written or with wider permissions.
/// </summary>
public static class CredentialsFile
{
    public const string FileName = "credentials.json";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    public static void Save(string directory, SavedLogin login)
    {
        CreatePrivateDirectory(directory);
        var path = Path.Combine(directory, FileName);
        var document = Read(path) ?? new JsonObject();
        document["version"] = 1;
        document["current"] = login.Server;
        if (document["servers"] is not JsonObject servers)
        {
            document["servers"] = servers = new JsonObject();
        }
        servers[login.Server] = JsonSerializer.SerializeToNode(login, Json);

        var temporary = Path.Combine(directory, $".{FileName}.{Guid.NewGuid():N}.tmp");
        try
        {
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }
            using (var stream = new FileStream(temporary, options))
            {
                JsonSerializer.Serialize(stream, document, Json);
            }
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
    }

    public static SavedLogin? Load(string directory, string server)
    {
        var document = Read(Path.Combine(directory, FileName));
        return document?["servers"]?[server] is JsonObject entry ? entry.Deserialize<SavedLogin>(Json) : null;
    }

    private static void CreatePrivateDirectory(string directory)
    {
        if (OperatingSystem.IsWindows())
        {
            Directory.CreateDirectory(directory);
            return;
        }
        const UnixFileMode privateDirectory = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
        Directory.CreateDirectory(directory, privateDirectory);
        // The folder is ours alone even if something else created it first (or a umask widened it).
        File.SetUnixFileMode(directory, privateDirectory);
    }

    private static JsonObject? Read(string path)
    {
        try
        {
            return JsonNode.Parse(File.ReadAllText(path)) as JsonObject;
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or JsonException)
        {
            return null;
        }
    }
}
