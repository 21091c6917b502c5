using System.Text.Json;
using System.Text.Json.Nodes;
using QrOrleans.KeyBinding;

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
    DateTimeOffset SavedAt,
    string? KeyFile = null)
{
    /// <summary>The tokens are bound to the key in <see cref="KeyFile"/> (null: a login of an older CLI, plain bearer tokens).</summary>
    public bool IsKeyBound => KeyFile is not null;

    public override string ToString() => $"SavedLogin {{ Server = {Server}, DeviceId = {DeviceId}, tokens = *** }}";
}

/// <summary>
/// <c>credentials.json</c>: <c>{ "version": 1, "current": "&lt;server&gt;", "servers": { "&lt;server&gt;": SavedLogin } }</c>,
/// one entry per server signed in to. The file holds bearer secrets, so it is only ever readable by its owner: the
/// folder is 0700, the file 0600, and it is replaced atomically (written beside it with 0600, then renamed) so no
/// reader ever sees it half written or with wider permissions.
/// Beside it, each login's DPoP private key (<c>key-&lt;random&gt;.pem</c>, PKCS#8) is written the same way; the entry
/// names its file, and a new login to the same server deletes the key of the login it replaces.
/// </summary>
public static class CredentialsFile
{
    public const string FileName = "credentials.json";

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = true };

    /// <param name="makeCurrent">A login is the current server; a refresh of its tokens leaves "current" as it is.</param>
    public static void Save(string directory, SavedLogin login, bool makeCurrent = true)
    {
        CreatePrivateDirectory(directory);
        var path = Path.Combine(directory, FileName);
        var document = Read(path) ?? new JsonObject();
        document["version"] = 1;
        if (makeCurrent || document["current"] is null)
        {
            document["current"] = login.Server;
        }
        if (document["servers"] is not JsonObject servers)
        {
            document["servers"] = servers = new JsonObject();
        }
        var replacedKey = servers[login.Server]?["keyFile"]?.GetValue<string>();
        servers[login.Server] = JsonSerializer.SerializeToNode(login, Json);
        WritePrivate(directory, FileName, stream => JsonSerializer.Serialize(stream, document, Json));
        if (replacedKey is not null && replacedKey != login.KeyFile && IsKeyFileName(replacedKey))
        {
            File.Delete(Path.Combine(directory, replacedKey));
        }
    }

    /// <summary>The server of the latest login, if any.</summary>
    public static string? Current(string directory) =>
        Read(Path.Combine(directory, FileName))?["current"] is JsonValue value && value.TryGetValue<string>(out var server) ? server : null;

    public static SavedLogin? Load(string directory, string server)
    {
        var document = Read(Path.Combine(directory, FileName));
        return document?["servers"]?[server] is JsonObject entry ? entry.Deserialize<SavedLogin>(Json) : null;
    }

    /// <summary>Writes a new login's private key (0600) and answers the file name to record in its entry.</summary>
    public static string SaveKey(string directory, DpopKey key)
    {
        CreatePrivateDirectory(directory);
        var name = $"key-{Convert.ToHexStringLower(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8))}.pem";
        var pem = key.ExportPem();
        WritePrivate(directory, name, stream =>
        {
            using var writer = new StreamWriter(stream, leaveOpen: true);
            writer.Write(pem);
        });
        return name;
    }

    /// <summary>The key a login's tokens are bound to, or null if its file is gone or is not a P-256 key.</summary>
    public static DpopKey? LoadKey(string directory, SavedLogin login)
    {
        if (login.KeyFile is not { } name || !IsKeyFileName(name))
        {
            return null;
        }
        try
        {
            return DpopKey.FromPem(File.ReadAllText(Path.Combine(directory, name)));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException)
        {
            return null;
        }
    }

    /// <summary>A key file name is ours only if it has our shape: an edited entry cannot point at, or delete, another file.</summary>
    private static bool IsKeyFileName(string name) =>
        name.StartsWith("key-", StringComparison.Ordinal) && name.EndsWith(".pem", StringComparison.Ordinal)
        && name.Length > 8 && name[4..^4].All(char.IsAsciiHexDigit);

    /// <summary>Written beside the target with 0600 (exactly, whatever the umask), then renamed over it.</summary>
    private static void WritePrivate(string directory, string name, Action<Stream> write)
    {
        var temporary = Path.Combine(directory, $".{name}.{Guid.NewGuid():N}.tmp");
        try
        {
            var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write, Share = FileShare.None };
            if (!OperatingSystem.IsWindows())
            {
                options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
            }
            using (var stream = new FileStream(temporary, options))
            {
                if (!OperatingSystem.IsWindows())
                {
                    File.SetUnixFileMode(stream.SafeFileHandle, UnixFileMode.UserRead | UnixFileMode.UserWrite);
                }
                write(stream);
            }
            File.Move(temporary, Path.Combine(directory, name), overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }
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
