using System.Net.Http.Headers;
using System.Text.Json;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Api;

/// <summary>
/// Two gateways with short windows: on the first a session expires 5 s after it was shown, scanned or approved and
/// is kept for long after it finished; on the second a finished session is deleted a second after it ended. The expired and
/// deleted sessions are made once, up front, since waiting for them is the slow part.
/// </summary>
public sealed class ConformanceFixture : IAsyncLifetime
{
    private readonly Dictionary<string, Arranged> _waitedFor = [];

    public Parties Live { get; private set; } = null!;

    public Parties Gone { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        Live = await Parties.StartAsync(new Dictionary<string, string?>
        {
            ["QrOrleans:QrSession:QrTtl"] = "00:00:05",
            ["QrOrleans:QrSession:MaxRotations"] = "1",
            ["QrOrleans:QrSession:ApprovalWindow"] = "00:00:05",
            ["QrOrleans:QrSession:ClaimWindow"] = "00:00:05",
            ["QrOrleans:QrSession:TerminalGrace"] = "00:30:00",
        });
        Gone = await Parties.StartAsync(new Dictionary<string, string?>
        {
            ["QrOrleans:QrSession:QrTtl"] = "00:00:03",
            ["QrOrleans:QrSession:MaxRotations"] = "1",
            ["QrOrleans:QrSession:ApprovalWindow"] = "00:00:02",
            ["QrOrleans:QrSession:TerminalGrace"] = "00:00:01",
        });
        var expiring = new[]
        {
            (ContractConformanceTests.ExpiredUnscanned, ContractConformanceTests.Pending),
            (ContractConformanceTests.ExpiredUnapproved, ContractConformanceTests.Scanned),
            (ContractConformanceTests.ExpiredUnclaimed, ContractConformanceTests.Approved),
        };
        foreach (var (state, from) in expiring)
        {
            _waitedFor[state] = await Live.ArrangeAsync(from);
        }
        // Scanned, then the approval window ran out, then the grace period: the record is deleted.
        _waitedFor[ContractConformanceTests.Deleted] = await Gone.ArrangeAsync(ContractConformanceTests.Scanned);
        await Task.WhenAll(expiring.Select(e => UntilAsync(_waitedFor[e.Item1], "expired"))
            .Append(UntilAsync(_waitedFor[ContractConformanceTests.Deleted], "gone")));
    }

    public Task<Arranged> ArrangeAsync(string state) =>
        _waitedFor.TryGetValue(state, out var arranged) ? Task.FromResult(arranged) : Live.ArrangeAsync(state);

    private static async Task UntilAsync(Arranged arranged, string state)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (await arranged.StateAsync() != state)
        {
            Assert.True(DateTime.UtcNow < deadline, $"the session did not become {state}");
            await Task.Delay(200);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Live.Node.DisposeAsync();
        await Gone.Node.DisposeAsync();
    }
}

/// <summary>A gateway with the two phones of the table and another session's desktop token (a wrong one here).</summary>
public sealed record Parties(GatewayNode Node, ApiClient Api, string ScannerToken, string OtherToken, string WrongDesktopToken)
{
    public static async Task<Parties> StartAsync(Dictionary<string, string?> settings)
    {
        var node = await GatewayNode.StartAsync(settings);
        var api = new ApiClient(node.Http);
        var scanner = await api.NewPhoneAsync();
        var other = await api.NewPhoneAsync();
        var elsewhere = await api.CreateSessionAsync();
        return new Parties(node, api, scanner.AccessToken, other.AccessToken, elsewhere.DesktopToken);
    }

    /// <summary>A new session brought to <paramref name="state"/> the way a desktop and the scanning phone would.</summary>
    public async Task<Arranged> ArrangeAsync(string state)
    {
        var session = await Api.CreateSessionAsync();
        string? number = null;
        if (state != ContractConformanceTests.Pending)
        {
            (await Api.ScanAsync(ScannerToken, session.QrUrl)).EnsureStatus(200);
            number = (await Api.SnapshotAsync(session)).EnsureStatus(200).Body.GetProperty("numberMatch").GetString();
        }
        if (state is ContractConformanceTests.Approved or ContractConformanceTests.Completed)
        {
            (await Api.ApproveAsync(ScannerToken, session.SessionId, number!)).EnsureStatus(200);
        }
        var last = state switch
        {
            ContractConformanceTests.Completed => await Api.ClaimAsync(session),
            ContractConformanceTests.Rejected => await Api.RejectAsync(ScannerToken, session.SessionId),
            ContractConformanceTests.Cancelled => await Api.CancelAsync(session),
            _ => null,
        };
        last?.EnsureStatus(200);
        var arranged = new Arranged(this, session, number);
        Assert.Equal(state, await arranged.StateAsync());
        return arranged;
    }
}

public sealed record Arranged(Parties With, NewSession Session, string? Number)
{
    /// <summary>The state the desktop reads now; "gone" once the session answers its own desktop 401.</summary>
    public async Task<string> StateAsync()
    {
        var snapshot = await With.Api.SnapshotAsync(Session);
        return snapshot.Status == 401 ? "gone" : snapshot.EnsureStatus(200).Body.GetProperty("state").GetString()!;
    }
}

/// <summary>
/// API.md as a table over the real HTTP gateway: every state of a session × every caller × every call, and the
/// answer each gets. A refusal leaves the session as it was. (Claims of key-bound sessions are DPoP's own tests.)
/// </summary>
public sealed class ContractConformanceTests(ConformanceFixture fixture) : IClassFixture<ConformanceFixture>
{
    public const string Pending = "pending";
    public const string Scanned = "scanned";
    public const string Approved = "approved";
    public const string Completed = "completed";
    public const string Rejected = "rejected";
    public const string Cancelled = "cancelled";
    public const string ExpiredUnscanned = "expired before a scan";
    public const string ExpiredUnapproved = "expired before approval";
    public const string ExpiredUnclaimed = "expired before the claim";
    public const string Deleted = "deleted after the grace period";

    private const string Scanner = "the scanning phone";
    private const string Other = "another phone";
    private const string Desktop = "the desktop";
    private const string WrongDesktop = "a wrong desktop token";
    private const string NoToken = "no token";

    private const string Unauthenticated = "401 unauthenticated";

    private static readonly string[] States =
        [Pending, Scanned, Approved, Completed, Rejected, Cancelled, ExpiredUnscanned, ExpiredUnapproved, ExpiredUnclaimed, Deleted];

    /// <summary>
    /// The phone's calls, per state in the order of <see cref="States"/>: (the scanning phone, another phone).
    /// "200 x" is a success after which the session is x. API.md: qr_already_scanned while someone else's scan is live,
    /// qr_already_used once the session finished (for everyone), qr_expired once it expired, qr_invalid once gone.
    /// </summary>
    private static readonly Dictionary<string, (string Scanner, string Other)[]> PhoneCalls = new()
    {
        ["scan"] =
        [
            ("200 scanned", "200 scanned"),
            ("200 scanned", "409 qr_already_scanned"), // the same phone again sees the same question
            ("409 invalid_state", "409 qr_already_scanned"),
            ("409 qr_already_used", "409 qr_already_used"),
            ("409 qr_already_used", "409 qr_already_used"),
            ("409 qr_already_used", "409 qr_already_used"),
            ("410 qr_expired", "410 qr_expired"),
            ("410 qr_expired", "410 qr_expired"),
            ("410 qr_expired", "410 qr_expired"),
            ("404 qr_invalid", "404 qr_invalid"),
        ],
        ["approve"] =
        [
            ("409 invalid_state", "409 invalid_state"),
            ("200 approved", "403 not_scanner"),
            ("409 invalid_state", "403 not_scanner"),
            ("409 qr_already_used", "409 qr_already_used"),
            ("409 qr_already_used", "409 qr_already_used"),
            ("409 qr_already_used", "409 qr_already_used"),
            ("410 qr_expired", "410 qr_expired"),
            ("410 qr_expired", "410 qr_expired"),
            ("410 qr_expired", "410 qr_expired"),
            ("404 qr_invalid", "404 qr_invalid"),
        ],
        ["reject"] =
        [
            ("409 invalid_state", "409 invalid_state"),
            ("200 rejected", "403 not_scanner"),
            ("409 invalid_state", "403 not_scanner"),
            ("409 qr_already_used", "409 qr_already_used"),
            ("409 qr_already_used", "409 qr_already_used"),
            ("409 qr_already_used", "409 qr_already_used"),
            ("410 qr_expired", "410 qr_expired"),
            ("410 qr_expired", "410 qr_expired"),
            ("410 qr_expired", "410 qr_expired"),
            ("404 qr_invalid", "404 qr_invalid"),
        ],
    };

    /// <summary>The desktop's calls with its own token, per state in the order of <see cref="States"/>.</summary>
    private static readonly Dictionary<string, string[]> DesktopCalls = new()
    {
        ["cancel"] =
        [
            "200 cancelled", "200 cancelled", "200 cancelled", "409 invalid_state", "409 invalid_state", "200 cancelled",
            "410 qr_expired", "410 qr_expired", "410 qr_expired", Unauthenticated,
        ],
        ["claim"] =
        [
            "409 not_approved", "409 not_approved", "200 completed", "410 already_claimed", "409 invalid_state", "409 invalid_state",
            "410 qr_expired", "410 qr_expired", "410 qr_expired", Unauthenticated,
        ],
        ["snapshot"] = Reads(),
        ["long-poll"] = Reads(),
        ["events"] = Reads(),
        ["qr.svg"] =
        [
            "200 pending", "409 invalid_state", "409 invalid_state", "409 invalid_state", "409 invalid_state", "409 invalid_state",
            "410 qr_expired", "410 qr_expired", "410 qr_expired", Unauthenticated,
        ],
    };

    /// <summary>Reading the session works in every state while it exists; deleted, it is 401 like a wrong token.</summary>
    private static string[] Reads() =>
        ["200 pending", "200 scanned", "200 approved", "200 completed", "200 rejected", "200 cancelled",
            "200 expired", "200 expired", "200 expired", Unauthenticated];

    public static TheoryData<string, string, string, string> Cases()
    {
        var cases = new TheoryData<string, string, string, string>();
        for (var i = 0; i < States.Length; i++)
        {
            foreach (var (action, answers) in PhoneCalls)
            {
                cases.Add(States[i], action, Scanner, answers[i].Scanner);
                cases.Add(States[i], action, Other, answers[i].Other);
                // A phone call needs a phone's access token: a desktop token, right or wrong, is none.
                cases.Add(States[i], action, Desktop, Unauthenticated);
                cases.Add(States[i], action, WrongDesktop, Unauthenticated);
                cases.Add(States[i], action, NoToken, Unauthenticated);
            }
            foreach (var (action, answers) in DesktopCalls)
            {
                cases.Add(States[i], action, Desktop, answers[i]);
                // Any other token is a wrong desktop token: 401 whatever the session, revealing nothing.
                cases.Add(States[i], action, Scanner, Unauthenticated);
                cases.Add(States[i], action, Other, Unauthenticated);
                cases.Add(States[i], action, WrongDesktop, Unauthenticated);
                cases.Add(States[i], action, NoToken, Unauthenticated);
            }
        }
        return cases;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Every_call_answers_what_the_contract_gives_for_its_state_and_caller(string state, string action, string caller, string expected)
    {
        var arranged = await fixture.ArrangeAsync(state);
        var before = await arranged.StateAsync();
        var p = arranged.With;
        var token = caller switch
        {
            Scanner => p.ScannerToken,
            Other => p.OtherToken,
            Desktop => arranged.Session.DesktopToken,
            WrongDesktop => p.WrongDesktopToken,
            _ => null,
        };

        var answer = await CallAsync(arranged, action, token);

        var after = await arranged.StateAsync();
        var outcome = answer.Status == 200 ? $"200 {after}" : $"{answer.Status} {answer.Code}";
        Assert.True(expected == outcome, $"{caller} calling {action} on a session {state}: expected {expected}, got {outcome}: {answer.Text}");
        if (answer.Status == 200)
        {
            // A read answers the session as it is; the image is of the live code.
            if (answer.State is { } read)
            {
                Assert.Equal(after, read);
            }
            if (action == "qr.svg")
            {
                Assert.Equal("image/svg+xml", answer.ContentType);
            }
        }
        else
        {
            Assert.Equal("application/problem+json", answer.ContentType);
            Assert.Equal(before, after); // a refusal changes nothing
        }
    }

    [Fact]
    public async Task A_code_scans_by_its_url_of_either_shape_or_by_its_token()
    {
        var p = fixture.Live;
        foreach (var shape in new Func<NewSession, object>[]
                 {
                     s => new { url = s.QrUrl },                                   // …/l/#<id>.<secret>
                     s => new { url = s.QrUrl.Replace("/l/#", "/l/", StringComparison.Ordinal) }, // codes printed before the upgrade
                     s => new { token = s.QrUrl[(s.QrUrl.IndexOf('#') + 1)..] },
                     s => new { token = s.QrUrl[s.QrUrl.IndexOf('#')..] },        // as location.hash gives it
                 })
        {
            var session = await p.Api.CreateSessionAsync();
            Assert.Matches(@"/l/#[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{22}$", session.QrUrl);
            var scan = (await p.Api.SendAsync(HttpMethod.Post, "/v1/qr/scan", shape(session), p.ScannerToken)).EnsureStatus(200);
            Assert.Equal(session.SessionId, scan.Body.GetProperty("sessionId").GetString());
        }
        var none = await p.Api.SendAsync(HttpMethod.Post, "/v1/qr/scan", new { url = p.Node.BaseAddress + "l/#" }, p.ScannerToken);
        Assert.Equal((404, "qr_invalid"), (none.Status, none.Code));
    }

    [Fact]
    public async Task The_page_a_code_opens_is_served_at_l_and_at_the_earlier_path()
    {
        var session = await fixture.Live.Api.CreateSessionAsync();
        foreach (var url in new[] { session.QrUrl, session.QrUrl.Replace("/l/#", "/l/", StringComparison.Ordinal) })
        {
            using var page = await fixture.Live.Node.Http.GetAsync(url, TestContext.Current.CancellationToken);
            Assert.Equal(200, (int)page.StatusCode);
            Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
            Assert.Contains("/js/link.js", await page.Content.ReadAsStringAsync(TestContext.Current.CancellationToken), StringComparison.Ordinal);
        }
    }

    private sealed record Answer(int Status, string? Code, string? State, string? ContentType, string Text);

    private static async Task<Answer> CallAsync(Arranged arranged, string action, string? token)
    {
        var api = arranged.With.Api;
        var id = arranged.Session.SessionId;
        var reply = action switch
        {
            "scan" => await api.SendAsync(HttpMethod.Post, "/v1/qr/scan", new { url = arranged.Session.QrUrl }, token),
            "approve" => await api.SendAsync(HttpMethod.Post, $"/v1/qr/sessions/{id}/approve", new { number = arranged.Number ?? "42" }, token),
            "reject" => await api.SendAsync(HttpMethod.Post, $"/v1/qr/sessions/{id}/reject", null, token),
            "cancel" => await api.SendAsync(HttpMethod.Post, $"/v1/qr/sessions/{id}/cancel", null, token),
            "claim" => await api.SendAsync(HttpMethod.Post, $"/v1/qr/sessions/{id}/claim", null, token),
            "snapshot" => await api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{id}", null, token),
            "long-poll" => await api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{id}?waitForVersion=0&timeout=5", null, token),
            "qr.svg" => await api.SendAsync(HttpMethod.Get, $"/v1/qr/sessions/{id}/qr.svg", null, token),
            "events" => null,
            _ => throw new ArgumentOutOfRangeException(nameof(action), action, null),
        };
        if (reply is not null)
        {
            var read = action is "snapshot" or "long-poll" && reply.Status == 200 ? reply.Body.GetProperty("state").GetString() : null;
            return new Answer(reply.Status, reply.Code, read, reply.ContentType, reply.Text);
        }
        return await FirstEventAsync(api.Http, $"/v1/qr/sessions/{id}/events", token);
    }

    /// <summary>Opens the event stream and reads its first event (the current snapshot), or the refusal.</summary>
    private static async Task<Answer> FirstEventAsync(HttpClient http, string path, string? token)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (token is not null)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
        }
        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
        if (!response.IsSuccessStatusCode)
        {
            var refused = await Reply.ReadAsync(response);
            return new Answer(refused.Status, refused.Code, null, refused.ContentType, refused.Text);
        }
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(timeout.Token));
        while (await reader.ReadLineAsync(timeout.Token) is { } line)
        {
            if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                var state = JsonDocument.Parse(line["data: ".Length..]).RootElement.GetProperty("state").GetString();
                return new Answer(200, null, state, response.Content.Headers.ContentType?.MediaType, line);
            }
        }
        return new Answer(200, null, null, response.Content.Headers.ContentType?.MediaType, "");
    }
}
