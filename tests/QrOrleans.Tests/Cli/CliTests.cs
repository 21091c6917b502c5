using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using CliProgram = QrOrleans.Cli.Program;
using QrOrleans.Cli.Hosting;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Cli;

public sealed class CliNodeFixture : IAsyncLifetime
{
    public GatewayNode Node { get; private set; } = null!;

    public ApiClient Api => new(Node.Http);

    public async ValueTask InitializeAsync() => Node = await GatewayNode.StartAsync();

    public ValueTask DisposeAsync() => Node.DisposeAsync();
}

/// <summary>The <c>qrorleans</c> CLI, run in-process against a real gateway on loopback, as an operator would use it.</summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")] // file modes are checked as on Linux, where this runs
public sealed partial class CliTests(CliNodeFixture fixture) : IClassFixture<CliNodeFixture>, IDisposable
{
    private readonly string _home = Directory.CreateTempSubdirectory("qrorleans-cli-").FullName;

    private ApiClient Api => fixture.Api;

    private string Server => fixture.Node.BaseAddress.ToString();

    public void Dispose() => Directory.Delete(_home, recursive: true);

    [Fact]
    public async Task Login_draws_the_code_shows_the_number_and_saves_working_credentials_only_the_owner_can_read()
    {
        var phone = await Api.NewPhoneAsync();
        var run = CliRun.Start(["login", Server, "--name", "Ops laptop"], Environment());

        var url = await run.Output.WaitForAsync(QrUrl());
        Assert.Contains("▀", run.Output.Text, StringComparison.Ordinal); // the QR itself, in half blocks
        var scan = (await Api.ScanAsync(phone.AccessToken, url.Value)).EnsureStatus(200);
        Assert.Equal(("Ops laptop", "cli"), (scan.Body.GetProperty("requester").GetProperty("clientName").GetString(),
            scan.Body.GetProperty("requester").GetProperty("clientKind").GetString()));

        var number = (await run.Output.WaitForAsync(PickNumber())).Groups[1].Value;
        (await Api.ApproveAsync(phone.AccessToken, scan.Body.GetProperty("sessionId").GetString()!, number)).EnsureStatus(200);

        Assert.Equal(0, await run.Completion);
        Assert.Contains("Signed in as User ", run.Output.Text, StringComparison.Ordinal);
        Assert.Contains(phone.UserId, run.Output.Text, StringComparison.Ordinal);
        Assert.Equal("", run.Error.Text);

        var directory = Path.Combine(_home, "qrorleans");
        var file = Path.Combine(directory, "credentials.json");
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(directory));

        var saved = JsonDocument.Parse(await File.ReadAllTextAsync(file)).RootElement;
        Assert.Equal(Server, saved.GetProperty("current").GetString());
        var login = saved.GetProperty("servers").GetProperty(Server);
        Assert.Equal(phone.UserId, login.GetProperty("userId").GetString());
        Assert.DoesNotContain(login.GetProperty("refreshToken").GetString()!, run.Output.Text, StringComparison.Ordinal);
        // The credentials and the key they are bound to, and no temporary file left behind.
        Assert.Equal(["credentials.json", login.GetProperty("keyFile").GetString()], Directory.GetFiles(directory).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        // The saved tokens work for this terminal: a follow-up command signs in as the new device of the phone's user.
        var whoami = await CliRun.RunAsync(["whoami"], Environment());
        Assert.Equal((0, ""), (whoami.ExitCode, whoami.Error));
        Assert.Contains($"user {phone.UserId}) on {Server}", whoami.Output, StringComparison.Ordinal);
        Assert.Contains($"This device: Ops laptop ({login.GetProperty("deviceId").GetString()})", whoami.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Login_binds_the_device_to_a_key_kept_0600_and_the_saved_tokens_are_refused_without_it()
    {
        // A permissive umask, and a config folder someone else made wide open: the CLI still keeps both private.
        var directory = Path.Combine(_home, "qrorleans");
        Directory.CreateDirectory(directory);
        File.SetUnixFileMode(directory, (UnixFileMode)0b111_111_111);
        var previousMask = Umask(0);
        int exitCode;
        try
        {
            exitCode = await LoginAsync(Server, Api);
        }
        finally
        {
            Umask(previousMask);
        }
        Assert.Equal(0, exitCode);

        var file = Path.Combine(directory, "credentials.json");
        var login = JsonDocument.Parse(await File.ReadAllTextAsync(file)).RootElement.GetProperty("servers").GetProperty(Server);
        var keyFile = Path.Combine(directory, login.GetProperty("keyFile").GetString()!);
        foreach (var privateFile in new[] { file, keyFile })
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(privateFile));
        }
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(directory));

        // The tokens are bound to that key: the access token names its thumbprint (RFC 7638).
        var accessToken = login.GetProperty("accessToken").GetString()!;
        using (var key = System.Security.Cryptography.ECDsa.Create())
        {
            key.ImportFromPem(await File.ReadAllTextAsync(keyFile));
            var jwk = Microsoft.IdentityModel.Tokens.JsonWebKeyConverter.ConvertFromECDsaSecurityKey(new Microsoft.IdentityModel.Tokens.ECDsaSecurityKey(key));
            Assert.Equal(Microsoft.IdentityModel.Tokens.Base64UrlEncoder.Encode(jwk.ComputeJwkThumbprint()),
                JwtPayload(accessToken).GetProperty("cnf").GetProperty("jkt").GetString());
        }

        // A follow-up command, once its access token has expired: it refreshes with a proof of the key, saves the
        // rotated tokens, and works.
        var refreshToken = login.GetProperty("refreshToken").GetString()!;
        await File.WriteAllTextAsync(file, (await File.ReadAllTextAsync(file)).Replace(
            login.GetProperty("accessTokenExpiresAt").GetRawText(), "\"2000-01-01T00:00:00+00:00\"", StringComparison.Ordinal));
        var whoami = await CliRun.RunAsync(["whoami", "--server", Server], Environment());
        Assert.Equal((0, ""), (whoami.ExitCode, whoami.Error));
        Assert.Contains("tokens bound to the key in key-", whoami.Output, StringComparison.Ordinal);
        var rotated = JsonDocument.Parse(await File.ReadAllTextAsync(file)).RootElement.GetProperty("servers").GetProperty(Server);
        Assert.NotEqual(refreshToken, rotated.GetProperty("refreshToken").GetString());
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));

        // Whoever copies the tokens without the key gets nothing: as a bearer token, as a DPoP token with no proof,
        // or as a refresh token with no proof.
        var current = rotated.GetProperty("accessToken").GetString()!;
        Assert.Equal(401, await StatusAsync(HttpMethod.Get, "/v1/me", ("Bearer", current), null));
        Assert.Equal(401, await StatusAsync(HttpMethod.Get, "/v1/me", ("DPoP", current), null));
        Assert.Equal(401, await StatusAsync(HttpMethod.Post, "/v1/auth/refresh", null, new { refreshToken = rotated.GetProperty("refreshToken").GetString() }));

        // And the CLI without its key says so instead of sending tokens that cannot work.
        File.Delete(keyFile);
        var keyless = await CliRun.RunAsync(["whoami"], Environment());
        Assert.Equal(2, keyless.ExitCode);
        Assert.Contains("is missing or unreadable", keyless.Error, StringComparison.Ordinal);
    }

    private async Task<int> LoginAsync(string server, ApiClient api)
    {
        var phone = await api.NewPhoneAsync();
        var run = CliRun.Start(["login", server, "--no-qr"], Environment());
        var scan = (await api.ScanAsync(phone.AccessToken, (await run.Output.WaitForAsync(QrUrl())).Value)).EnsureStatus(200);
        var number = (await run.Output.WaitForAsync(PickNumber())).Groups[1].Value;
        (await api.ApproveAsync(phone.AccessToken, scan.Body.GetProperty("sessionId").GetString()!, number)).EnsureStatus(200);
        return await run.Completion;
    }

    private async Task<int> StatusAsync(HttpMethod method, string path, (string Scheme, string Token)? authorization, object? body)
    {
        using var request = new HttpRequestMessage(method, path);
        if (authorization is { } a)
        {
            request.Headers.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue(a.Scheme, a.Token);
        }
        if (body is not null)
        {
            request.Content = System.Net.Http.Json.JsonContent.Create(body);
        }
        using var response = await fixture.Node.Http.SendAsync(request);
        return (int)response.StatusCode;
    }

    private static JsonElement JwtPayload(string token) =>
        JsonDocument.Parse(System.Buffers.Text.Base64Url.DecodeFromChars(token.Split('.')[1])).RootElement;

    [DllImport("libc", EntryPoint = "umask")]
    private static extern uint Umask(uint mask);

    [Theory]
    [InlineData(false)] // light text on a dark terminal: the characters draw the light modules
    [InlineData(true)]  // --invert, dark text on a light terminal: the characters draw the dark modules
    public async Task The_terminal_qr_decodes_to_the_sign_in_url(bool invert)
    {
        const string url = "http://127.0.0.1:5000/l/#ivueGADsRosSrI1Jl3V_tA.Pcw8mq3GlIB6zaPdyUEd-A";
        var text = QrOrleans.Cli.Login.TerminalQr.Render(url, invert);
        var file = Path.Combine(_home, "terminal-qr.pgm");
        await File.WriteAllBytesAsync(file, Rasterise(text, foregroundIsLight: !invert));
        Assert.Equal(url, await QrOrleans.Tests.QrImages.QrDecoder.DecodeFileAsync(file));
    }

    /// <summary>The terminal's picture of the text as a greyscale image: each character is one module wide and two tall.</summary>
    private static byte[] Rasterise(string text, bool foregroundIsLight)
    {
        const int scale = 6;
        var rows = text.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0).ToArray();
        var width = rows.Max(r => r.Length);
        var (fore, back) = foregroundIsLight ? ((byte)255, (byte)0) : ((byte)0, (byte)255);
        var pixels = new byte[width * scale * rows.Length * 2 * scale];
        for (var y = 0; y < rows.Length * 2; y++)
        {
            for (var x = 0; x < width; x++)
            {
                var c = x < rows[y / 2].Length ? rows[y / 2][x] : ' ';
                var lit = c == '█' || (y % 2 == 0 ? c == '▀' : c == '▄');
                for (var dy = 0; dy < scale; dy++)
                {
                    Array.Fill(pixels, lit ? fore : back, ((y * scale + dy) * width + x) * scale, scale);
                }
            }
        }
        var header = Encoding.ASCII.GetBytes($"P5\n{width * scale} {rows.Length * 2 * scale}\n255\n");
        return [.. header, .. pixels];
    }

    [Fact]
    public async Task A_second_login_to_another_server_keeps_the_first_and_the_file_stays_private()
    {
        await using var other = await GatewayNode.StartAsync();
        foreach (var (api, server) in new[] { (Api, Server), (new ApiClient(other.Http), other.BaseAddress.ToString()) })
        {
            var phone = await api.NewPhoneAsync();
            var run = CliRun.Start(["login", server, "--no-qr"], Environment());
            var url = await run.Output.WaitForAsync(QrUrl());
            Assert.DoesNotContain("▀", run.Output.Text, StringComparison.Ordinal);
            var scan = (await api.ScanAsync(phone.AccessToken, url.Value)).EnsureStatus(200);
            var number = (await run.Output.WaitForAsync(PickNumber())).Groups[1].Value;
            (await api.ApproveAsync(phone.AccessToken, scan.Body.GetProperty("sessionId").GetString()!, number)).EnsureStatus(200);
            Assert.Equal(0, await run.Completion);
        }
        var file = Path.Combine(_home, "qrorleans", "credentials.json");
        var servers = JsonDocument.Parse(await File.ReadAllTextAsync(file)).RootElement.GetProperty("servers");
        Assert.Equal([Server, other.BaseAddress.ToString()], servers.EnumerateObject().Select(p => p.Name));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(file));
    }

    [Fact]
    public async Task A_rejected_login_exits_1_and_saves_nothing()
    {
        var phone = await Api.NewPhoneAsync();
        var run = CliRun.Start(["login", Server], Environment());
        var scan = (await Api.ScanAsync(phone.AccessToken, (await run.Output.WaitForAsync(QrUrl())).Value)).EnsureStatus(200);
        await run.Output.WaitForAsync(PickNumber());
        (await Api.RejectAsync(phone.AccessToken, scan.Body.GetProperty("sessionId").GetString()!)).EnsureStatus(200);

        Assert.Equal(1, await run.Completion);
        Assert.Contains("rejected", run.Error.Text, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(_home, "qrorleans", "credentials.json")));
    }

    [Fact]
    public async Task Interrupting_a_login_cancels_its_session_on_the_server()
    {
        var phone = await Api.NewPhoneAsync();
        using var interrupt = new CancellationTokenSource();
        var run = CliRun.Start(["login", Server], Environment(), interrupt.Token);
        var url = (await run.Output.WaitForAsync(QrUrl())).Value;

        await interrupt.CancelAsync();

        Assert.Equal(130, await run.Completion);
        var scan = await Api.ScanAsync(phone.AccessToken, url);
        Assert.Equal((409, "qr_already_used"), (scan.Status, scan.Code));
    }

    [Fact]
    public async Task Cluster_status_prints_the_silo()
    {
        var cluster = (await Api.SendAsync(HttpMethod.Get, "/v1/cluster", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200);
        var silo = cluster.Body.GetProperty("silos").EnumerateArray().Single();

        var result = await CliRun.RunAsync(["cluster", "status", "--server", Server], Environment(apiKey: GatewayNode.AdminKey));

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("Silos (1)", result.Output, StringComparison.Ordinal);
        var line = result.Output.Split('\n').Single(l => l.StartsWith(silo.GetProperty("id").GetString()!, StringComparison.Ordinal));
        Assert.Contains(silo.GetProperty("status").GetString()!, line, StringComparison.Ordinal);
        Assert.Contains(silo.GetProperty("address").GetString()!, line, StringComparison.Ordinal);
        Assert.Contains("qrSession grains by state", result.Output, StringComparison.Ordinal);
        Assert.DoesNotContain(GatewayNode.AdminKey, result.Output + result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_bad_api_key_prints_the_servers_problem_and_exits_3_without_echoing_the_key()
    {
        const string wrongKey = "wrong-key-0123456789";
        var flag = await CliRun.RunAsync(["cluster", "status", "--server", Server, "--api-key", wrongKey], Environment());
        var variable = await CliRun.RunAsync(["cluster", "status"], Environment(apiKey: wrongKey, server: Server));

        foreach (var result in new[] { flag, variable })
        {
            Assert.Equal(3, result.ExitCode);
            Assert.Contains("unauthenticated", result.Error, StringComparison.Ordinal);
            Assert.Contains("Send the operator key in the X-Api-Key header.", result.Error, StringComparison.Ordinal);
            Assert.Contains("HTTP 401", result.Error, StringComparison.Ordinal);
            Assert.DoesNotContain(wrongKey, result.Output + result.Error, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task Usage_errors_exit_2()
    {
        var noKey = await CliRun.RunAsync(["cluster", "status", "--server", Server], Environment());
        Assert.Equal(2, noKey.ExitCode);
        Assert.Contains("QRORLEANS_API_KEY", noKey.Error, StringComparison.Ordinal);

        Assert.Equal(2, (await CliRun.RunAsync(["frobnicate"], Environment())).ExitCode);
        Assert.Equal(2, (await CliRun.RunAsync([], Environment())).ExitCode);
        Assert.Equal(2, (await CliRun.RunAsync(["accounts", "export", "acct-1"], Environment(apiKey: "k"))).ExitCode); // --passphrase-file is required
        Assert.Equal(2, (await CliRun.RunAsync(["login", "ftp://example"], Environment())).ExitCode);
        var help = await CliRun.RunAsync(["--help"], Environment());
        Assert.Equal(0, help.ExitCode);
        Assert.Contains("login", help.Output, StringComparison.Ordinal);
        Assert.Matches(@"Exit codes:\s+0\s+done\s+1\s+the command ran but did not achieve its goal", help.Output);
        Assert.Matches(@"\n\s+3\s+the server refused", help.Output);
    }

    [Fact]
    public async Task An_unreachable_server_is_an_error_not_a_crash()
    {
        var result = await CliRun.RunAsync(["cluster", "status", "--server", "http://127.0.0.1:9"], Environment(apiKey: "k"));
        Assert.Equal(4, result.ExitCode);
        Assert.StartsWith("error: Cannot reach http://127.0.0.1:9/", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Accounts_list_shows_an_account_of_the_real_api_unlink_keeps_it_and_delete_removes_it_once_confirmed()
    {
        var id = await NewAccountAsync("cli-bot", autoConfirm: false);
        var environment = Environment(apiKey: GatewayNode.AdminKey, server: Server);

        var list = await CliRun.RunAsync(["accounts", "list"], environment);

        Assert.Equal((0, ""), (list.ExitCode, list.Error));
        Assert.Matches(@"^ID\s+PLATFORM\s+STATE", list.Output);
        var row = list.Output.Split('\n').Single(l => l.StartsWith(id + " ", StringComparison.Ordinal));
        Assert.Matches($@"^{id}\s+sandbox\s+unlinked\s", row);

        (await Api.SendAsync(HttpMethod.Post, $"/v1/accounts/{id}/pair", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(202);
        var unlink = await CliRun.RunAsync(["accounts", "unlink", id], environment);
        Assert.Equal((0, ""), (unlink.ExitCode, unlink.Error));
        Assert.Contains("the account is unlinked", unlink.Output, StringComparison.Ordinal);
        Assert.Equal("unlinked", (await AccountAsync(id)).GetProperty("state").GetString()); // kept, with nothing running
        Assert.Equal(0, (await CliRun.RunAsync(["accounts", "pair", id], environment)).ExitCode); // and it links again

        // Not on a terminal, nobody can be asked: without --yes nothing is deleted.
        var unconfirmed = await CliRun.RunAsync(["accounts", "delete", id], environment);
        Assert.Equal((2, ""), (unconfirmed.ExitCode, unconfirmed.Output));
        Assert.Contains("pass --yes", unconfirmed.Error, StringComparison.Ordinal);
        Assert.Equal("pairing", (await AccountAsync(id)).GetProperty("state").GetString());

        var delete = await CliRun.RunAsync(["accounts", "delete", id, "--yes"], environment);
        Assert.Equal((0, ""), (delete.ExitCode, delete.Error));
        var gone = await Api.SendAsync(HttpMethod.Get, "/v1/accounts/" + id, null, apiKey: GatewayNode.AdminKey);
        Assert.Equal((404, "not_found"), (gone.Status, gone.Code));
    }

    [Fact]
    public async Task Export_writes_the_sealed_string_without_a_byte_order_mark_and_an_import_the_platform_rejects_exits_1()
    {
        var id = await NewAccountAsync("cli-import", autoConfirm: true);
        (await Api.SendAsync(HttpMethod.Post, $"/v1/accounts/{id}/pair", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(202);
        await WaitForStateAsync(id, "connected");
        var environment = Environment(apiKey: GatewayNode.AdminKey, server: Server);
        var passphraseFile = Path.Combine(_home, "passphrase");
        await File.WriteAllTextAsync(passphraseFile, "correct horse battery staple\n");
        var sealedFile = Path.Combine(_home, id + ".sealed");

        var export = await CliRun.RunAsync(["accounts", "export", id, "--passphrase-file", passphraseFile, "--output", sealedFile], environment);

        Assert.Equal((0, ""), (export.ExitCode, export.Error));
        var bytes = await File.ReadAllBytesAsync(sealedFile);
        Assert.Equal("x1.", Encoding.ASCII.GetString(bytes, 0, 3)); // the sealed string itself, no EF BB BF before it
        Assert.Equal((byte)'\n', bytes[^1]);

        var accepted = await CliRun.RunAsync(["accounts", "import", id, "--file", sealedFile, "--passphrase-file", passphraseFile], environment);
        Assert.Equal((0, ""), (accepted.ExitCode, accepted.Error));
        Assert.Contains("the account is connected", accepted.Output, StringComparison.Ordinal);

        // The platform forgets the session: the same credentials are now refused, and the command says it failed.
        QrOrleans.Grains.Connectors.Sandbox.SandboxPlatform.Shared.RevokeSessions(id);
        var rejected = await CliRun.RunAsync(["accounts", "import", id, "--file", sealedFile, "--passphrase-file", passphraseFile], environment);

        Assert.Equal(1, rejected.ExitCode);
        Assert.Equal("", rejected.Output);
        Assert.StartsWith($"error: The platform rejected the imported credentials of {id}", rejected.Error, StringComparison.Ordinal);
        Assert.Contains("the account is bad_credentials", rejected.Error, StringComparison.Ordinal);
        Assert.Contains($"qrorleans accounts pair {id}", rejected.Error, StringComparison.Ordinal);
        Assert.Equal("bad_credentials", (await AccountAsync(id)).GetProperty("state").GetString());
    }

    private async Task<string> NewAccountAsync(string prefix, bool autoConfirm)
    {
        var id = prefix + "-" + Guid.NewGuid().ToString("N")[..8];
        var put = await Api.SendAsync(HttpMethod.Put, "/v1/accounts/" + id,
            new
            {
                platform = "sandbox", displayName = "CLI test bot", connector = new { autoConfirm },
                owner = new { webhookUrl = "http://127.0.0.1:9/owner-inbox", webhookSecret = "cli-test-webhook-secret" },
            }, apiKey: GatewayNode.AdminKey);
        Assert.True(put.Status is 201, put.Text);
        return id;
    }

    private async Task<JsonElement> AccountAsync(string id) =>
        (await Api.SendAsync(HttpMethod.Get, "/v1/accounts/" + id, null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200).Body;

    private async Task WaitForStateAsync(string id, string state)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(15);
        while ((await AccountAsync(id)).GetProperty("state").GetString() != state)
        {
            Assert.True(DateTime.UtcNow < deadline, $"{id} did not become {state}.");
            await Task.Delay(50);
        }
    }

    // Beyond what a fresh account can do: the CLI against a stand-in that answers as API.md says.

    [Fact]
    public async Task Accounts_list_prints_a_table_of_what_the_api_returns()
    {
        var server = new StandIn(request => request.RequestUri!.AbsolutePath == "/v1/accounts"
            ? StandIn.Json(HttpStatusCode.OK, """
                [
                  { "id": "support-bot", "platform": "qrorleans", "state": "connected", "stateSince": "2026-11-22T10:00:00Z",
                    "pairing": null, "rateBudget": { "available": 58, "capacity": 60 }, "linkedAt": "2026-11-22T10:00:00Z", "holder": "silo-a" },
                  { "id": "wx-sales", "platform": "ilink", "state": "pairing", "stateSince": "2026-11-22T10:05:00Z",
                    "pairing": { "cycle": 2, "maxCycles": 5, "qrExpiresAt": "2026-11-22T10:06:00Z" },
                    "lastError": { "code": "timeout", "class": "transient", "at": "2026-11-22T10:04:00Z" },
                    "rateBudget": { "available": 60, "capacity": 60 } }
                ]
                """)
            : StandIn.Json(HttpStatusCode.NotFound, """{"status":404,"code":"not_found","detail":"There is nothing at this address."}"""));

        var result = await CliRun.RunAsync(["accounts", "list", "--server", "http://accounts.test"], Environment(apiKey: "op-key", handler: server));

        Assert.Equal(0, result.ExitCode);
        var lines = result.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"^ID\s+PLATFORM\s+STATE\s+SINCE\s+PAIRING\s+BUDGET", lines[0]);
        Assert.Matches(@"^support-bot\s+qrorleans\s+connected\s+2026-11-22 10:00:00Z\s+-\s+58/60\s+-\s+-\s+silo-a$", lines[1]);
        Assert.Matches(@"^wx-sales\s+ilink\s+pairing\s+2026-11-22 10:05:00Z\s+2/5\s+60/60\s+-\s+timeout \(transient\)\s+-$", lines[2]);
        Assert.Equal("op-key", server.Requests.Single().ApiKey);
    }

    [Fact]
    public async Task In_a_terminal_accounts_list_draws_a_bordered_table_and_shows_values_as_the_server_sent_them()
    {
        var server = new StandIn(_ => StandIn.Json(HttpStatusCode.OK, """
            [ { "id": "[red]bot[/]", "platform": "sandbox", "state": "connected", "stateSince": "2026-11-22T10:00:00Z", "holder": "silo-a" } ]
            """));
        var terminal = Environment(apiKey: "op-key", handler: server, server: "http://accounts.test") with { Interactive = true, TerminalWidth = 160 };

        var result = await CliRun.RunAsync(["accounts", "list"], terminal);

        Assert.Equal((0, ""), (result.ExitCode, result.Error));
        var lines = result.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToArray();
        Assert.StartsWith("╭", lines[0], StringComparison.Ordinal);
        Assert.Matches(@"^│ ID\s+│ PLATFORM\s+│ STATE\s+│", lines[1]);
        // Markup-like text from the server is printed literally, not taken as Spectre markup.
        Assert.Contains(lines, l => l.StartsWith("│ [red]bot[/]", StringComparison.Ordinal) && l.Contains("│ silo-a", StringComparison.Ordinal));
        Assert.StartsWith("╰", lines[^1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Export_and_import_read_secrets_from_files_and_send_them_to_the_api()
    {
        var passphraseFile = Path.Combine(_home, "passphrase");
        await File.WriteAllTextAsync(passphraseFile, "correct horse battery staple\n");
        var server = new StandIn(request => request.RequestUri!.AbsolutePath switch
        {
            "/v1/accounts/support-bot/export" => StandIn.Json(HttpStatusCode.OK, """{ "sealed": "qrx1.sealed-blob" }"""),
            "/v1/accounts/support-bot/import" => StandIn.Json(HttpStatusCode.OK, """{ "id": "support-bot", "state": "connected" }"""),
            _ => StandIn.Json(HttpStatusCode.NotFound, """{"status":404,"code":"not_found"}"""),
        });
        var environment = Environment(apiKey: "op-key", handler: server, server: "http://accounts.test");
        var sealedFile = Path.Combine(_home, "support-bot.sealed");

        var export = await CliRun.RunAsync(["accounts", "export", "support-bot", "--passphrase-file", passphraseFile, "--output", sealedFile], environment);
        Assert.Equal(0, export.ExitCode);
        Assert.Equal("qrx1.sealed-blob\n", Encoding.ASCII.GetString(await File.ReadAllBytesAsync(sealedFile))); // no byte-order mark
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(sealedFile));
        Assert.Equal("correct horse battery staple", JsonDocument.Parse(server.Requests[0].Body!).RootElement.GetProperty("passphrase").GetString());
        Assert.DoesNotContain("correct horse", export.Output, StringComparison.Ordinal);

        var import = await CliRun.RunAsync(["accounts", "import", "support-bot", "--file", sealedFile, "--passphrase-file", passphraseFile], environment);
        Assert.Equal(0, import.ExitCode);
        Assert.Contains("connected", import.Output, StringComparison.Ordinal);
        var sent = JsonDocument.Parse(server.Requests[1].Body!).RootElement;
        Assert.Equal(("qrx1.sealed-blob", "correct horse battery staple"), (sent.GetProperty("sealed").GetString(), sent.GetProperty("passphrase").GetString()));

        var missing = await CliRun.RunAsync(["accounts", "import", "support-bot", "--file", Path.Combine(_home, "nope"), "--passphrase-file", passphraseFile], environment);
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("Cannot read the sealed credentials file", missing.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Pair_unlink_and_delete_call_the_api_and_its_refusals_come_back_with_their_code()
    {
        var server = new StandIn(request => (request.Method.Method, request.RequestUri!.AbsolutePath) switch
        {
            ("POST", "/v1/accounts/support-bot/pair") => StandIn.Json(HttpStatusCode.Accepted, """{ "id": "support-bot", "state": "pairing" }"""),
            ("POST", "/v1/accounts/support-bot/unlink") => StandIn.Json(HttpStatusCode.OK, """{ "id": "support-bot", "state": "unlinked" }"""),
            ("DELETE", "/v1/accounts/support-bot") => new HttpResponseMessage(HttpStatusCode.NoContent),
            ("GET", "/v1/cluster") => StandIn.Json(HttpStatusCode.ServiceUnavailable, """{"status":503,"code":"cluster_unavailable","detail":"No silo answers."}"""),
            _ => StandIn.Json(HttpStatusCode.NotFound, """{"status":404,"code":"not_found","title":"Not found","detail":"The account was not found."}"""),
        });
        var environment = Environment(apiKey: "op-key", handler: server, server: "http://accounts.test");

        var pair = await CliRun.RunAsync(["accounts", "pair", "support-bot"], environment);
        Assert.Equal((0, true), (pair.ExitCode, pair.Output.Contains("State: pairing", StringComparison.Ordinal)));
        Assert.Equal(0, (await CliRun.RunAsync(["accounts", "unlink", "support-bot"], environment)).ExitCode);
        Assert.Equal(0, (await CliRun.RunAsync(["accounts", "delete", "support-bot", "-y"], environment)).ExitCode);
        Assert.Equal(["POST /v1/accounts/support-bot/pair", "POST /v1/accounts/support-bot/unlink", "DELETE /v1/accounts/support-bot"],
            server.Requests.Select(r => $"{r.Method} {r.Path}"));

        var unknown = await CliRun.RunAsync(["accounts", "unlink", "nobody"], environment);
        Assert.Equal(3, unknown.ExitCode);
        Assert.Equal("error: The account was not found. (not_found, HTTP 404)", unknown.Error.Trim());
        var failing = await CliRun.RunAsync(["cluster", "status"], environment);
        Assert.Equal(4, failing.ExitCode);
        Assert.Equal("error: No silo answers. (cluster_unavailable, HTTP 503)", failing.Error.Trim());
    }

    [Theory]
    [InlineData("y\n", 0)]
    [InlineData("yes\n", 0)]
    [InlineData("n\n", 1)]
    [InlineData("\n", 1)]
    [InlineData("", 1)] // the terminal closed
    public async Task On_a_terminal_delete_asks_first_and_deletes_only_when_told_yes(string answer, int exitCode)
    {
        var server = new StandIn(_ => new HttpResponseMessage(HttpStatusCode.NoContent));
        var terminal = Environment(apiKey: "op-key", handler: server, server: "http://accounts.test") with { Terminal = new StringReader(answer) };

        var result = await CliRun.RunAsync(["accounts", "delete", "support-bot"], terminal);

        Assert.Equal(exitCode, result.ExitCode);
        Assert.StartsWith("Delete account support-bot for good", result.Error, StringComparison.Ordinal);
        Assert.Contains("[y/N]", result.Error, StringComparison.Ordinal);
        Assert.Equal(exitCode == 0 ? ["DELETE /v1/accounts/support-bot"] : [], server.Requests.Select(r => $"{r.Method} {r.Path}"));
        Assert.Contains(exitCode == 0 ? "Deleted support-bot" : "support-bot was not deleted", result.Output + result.Error, StringComparison.Ordinal);
    }

    private CliEnvironment Environment(string? apiKey = null, string? server = null, HttpMessageHandler? handler = null)
    {
        var variables = new Dictionary<string, string?>
        {
            ["XDG_CONFIG_HOME"] = _home,
            ["HOME"] = _home,
            [CliEnvironment.ApiKeyVariable] = apiKey,
            [CliEnvironment.ServerVariable] = server,
        };
        return new CliEnvironment { Variables = name => variables.GetValueOrDefault(name), HttpHandler = handler };
    }

    [GeneratedRegex(@"https?://\S+/l/\S+")]
    private static partial Regex QrUrl();

    [GeneratedRegex(@"pick (\d+) on your phone")]
    private static partial Regex PickNumber();
}

/// <summary>One run of the CLI's entry point with captured output.</summary>
internal sealed class CliRun
{
    private CliRun(Task<int> completion, Capture output, Capture error)
    {
        Completion = completion.WaitAsync(TimeSpan.FromSeconds(60));
        Output = output;
        Error = error;
    }

    public Task<int> Completion { get; }

    public Capture Output { get; }

    public Capture Error { get; }

    public static CliRun Start(string[] args, CliEnvironment environment, CancellationToken ct = default)
    {
        var output = new Capture();
        var error = new Capture();
        return new CliRun(Task.Run(() => CliProgram.RunAsync(args, output, error, environment, ct), CancellationToken.None), output, error);
    }

    public static async Task<(int ExitCode, string Output, string Error)> RunAsync(string[] args, CliEnvironment environment)
    {
        var run = Start(args, environment);
        return (await run.Completion, run.Output.Text, run.Error.Text);
    }
}

/// <summary>A writer the CLI writes to on its thread while the test reads what it has printed so far.</summary>
internal sealed class Capture : TextWriter
{
    private readonly StringBuilder _text = new();

    public override Encoding Encoding => Encoding.UTF8;

    public string Text
    {
        get
        {
            lock (_text)
            {
                return _text.ToString();
            }
        }
    }

    public override void Write(char value)
    {
        lock (_text)
        {
            _text.Append(value);
        }
    }

    public override void Write(string? value)
    {
        lock (_text)
        {
            _text.Append(value);
        }
    }

    public override void Write(char[] buffer, int index, int count)
    {
        lock (_text)
        {
            _text.Append(buffer, index, count);
        }
    }

    public async Task<Match> WaitForAsync(Regex pattern)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            if (pattern.Match(Text) is { Success: true } match)
            {
                return match;
            }
            if (DateTime.UtcNow > deadline)
            {
                throw new Xunit.Sdk.XunitException($"The CLI never printed /{pattern}/. It printed:\n{Text}");
            }
            await Task.Delay(25);
        }
    }
}

/// <summary>A stand-in server: answers each request with the function given, and records what was sent.</summary>
internal sealed class StandIn(Func<HttpRequestMessage, HttpResponseMessage> answer) : HttpMessageHandler
{
    public List<(string Method, string Path, string? ApiKey, string? Body)> Requests { get; } = [];

    public static HttpResponseMessage Json(HttpStatusCode status, string json) => new(status)
    {
        Content = new StringContent(json, Encoding.UTF8, (int)status >= 400 ? "application/problem+json" : "application/json"),
    };

    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var body = request.Content is null ? null : await request.Content.ReadAsStringAsync(cancellationToken);
        lock (Requests)
        {
            Requests.Add((request.Method.Method, request.RequestUri!.AbsolutePath,
                request.Headers.TryGetValues("X-Api-Key", out var keys) ? keys.Single() : null, body));
        }
        return answer(request);
    }
}
