using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace QrOrleans.Tests.Fuzz;

/// <summary>Real ids and credentials of the node under test, so a malformed request can also reach past authentication.</summary>
public sealed record FuzzTargets(
    string SessionId, string DesktopToken, string QrToken, string AccessToken, string UserId, string DeviceId,
    string SpareDeviceId, string SpareRefreshToken, string AccountId, string AdminKey, string DashboardCookie, string Sealed);

public enum Credential { None, Desktop, Phone, Operator, Dashboard }

public enum BodyKind { None, Json, Form }

/// <summary>
/// One endpoint of API.md as the fuzzer sees it. <paramref name="Path"/> may hold {sid} {aid} {uid} {did} {tok}
/// {orleans} {static} {any}; <paramref name="MayWait"/>: a long-poll or a stream, whose silence is an answer.
/// </summary>
public sealed record FuzzEndpoint(
    string Name, string Method, string Path, Credential Credential, BodyKind Body = BodyKind.None,
    Func<FuzzTargets, JsonObject>? Template = null, string[]? Query = null, bool MayWait = false);

/// <summary>
/// Generates malformed requests: every case is a pure function of (seed, endpoint, case number), so a printed
/// seed replays exactly what failed, in any order.
/// </summary>
public static class FuzzCases
{
    public static readonly FuzzEndpoint[] Endpoints =
    [
        // desktop
        new("create session", "POST", "/v1/qr/sessions", Credential.None, BodyKind.Json, t => new JsonObject
        {
            ["client"] = new JsonObject { ["name"] = "Fuzz desktop", ["kind"] = "browser" },
            ["key"] = new JsonObject { ["kty"] = "EC", ["crv"] = "P-256", ["x"] = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", ["y"] = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" },
        }),
        new("snapshot", "GET", "/v1/qr/sessions/{sid}", Credential.Desktop, Query: ["waitForVersion", "timeout"], MayWait: true),
        new("events", "GET", "/v1/qr/sessions/{sid}/events", Credential.Desktop, MayWait: true),
        new("qr.svg", "GET", "/v1/qr/sessions/{sid}/qr.svg", Credential.Desktop),
        new("qr.png", "GET", "/v1/qr/sessions/{sid}/qr.png", Credential.Desktop),
        new("cancel", "POST", "/v1/qr/sessions/{sid}/cancel", Credential.Desktop),
        new("claim", "POST", "/v1/qr/sessions/{sid}/claim", Credential.Desktop),
        // phone
        new("scan", "POST", "/v1/qr/scan", Credential.Phone, BodyKind.Json, t => new JsonObject { ["url"] = "http://127.0.0.1/l/" + t.QrToken, ["token"] = t.QrToken }),
        new("approve", "POST", "/v1/qr/sessions/{sid}/approve", Credential.Phone, BodyKind.Json, _ => new JsonObject { ["number"] = "42" }),
        new("reject", "POST", "/v1/qr/sessions/{sid}/reject", Credential.Phone),
        new("me", "GET", "/v1/me", Credential.Phone),
        new("devices", "GET", "/v1/devices", Credential.Phone),
        new("revoke device", "DELETE", "/v1/devices/{did}", Credential.Phone),
        new("refresh", "POST", "/v1/auth/refresh", Credential.None, BodyKind.Json, t => new JsonObject { ["refreshToken"] = t.SpareRefreshToken }),
        new("my audit", "GET", "/v1/me/audit", Credential.Phone, Query: ["limit"]),
        // operator
        new("create user", "POST", "/v1/admin/users", Credential.Operator, BodyKind.Json, _ => new JsonObject { ["username"] = "fuzz.user", ["displayName"] = "Fuzz" }),
        new("create device", "POST", "/v1/admin/users/{uid}/devices", Credential.Operator, BodyKind.Json, _ => new JsonObject { ["name"] = "Fuzz phone", ["kind"] = "phone" }),
        new("user audit", "GET", "/v1/admin/users/{uid}/audit", Credential.Operator, Query: ["from", "to", "limit"]),
        new("put account", "PUT", "/v1/accounts/{aid}", Credential.Operator, BodyKind.Json, _ => new JsonObject
        {
            ["platform"] = "sandbox",
            ["displayName"] = "Fuzz bot",
            ["rateBudget"] = new JsonObject { ["capacity"] = 10, ["refillPerMinute"] = 60.5 },
            ["pairing"] = new JsonObject { ["maxCycles"] = 2, ["qrTtlSeconds"] = 30 },
            ["connector"] = new JsonObject { ["autoConfirm"] = true, ["failWith"] = null },
        }),
        new("list accounts", "GET", "/v1/accounts", Credential.Operator),
        new("get account", "GET", "/v1/accounts/{aid}", Credential.Operator),
        new("pair", "POST", "/v1/accounts/{aid}/pair", Credential.Operator),
        new("stop", "POST", "/v1/accounts/{aid}/stop", Credential.Operator),
        new("start", "POST", "/v1/accounts/{aid}/start", Credential.Operator),
        new("send message", "POST", "/v1/accounts/{aid}/messages", Credential.Operator, BodyKind.Json, _ => new JsonObject { ["to"] = "wxid_friend", ["text"] = "hello" }),
        new("export", "POST", "/v1/accounts/{aid}/export", Credential.Operator, BodyKind.Json, _ => new JsonObject { ["passphrase"] = "correct horse battery staple" }),
        new("import", "POST", "/v1/accounts/{aid}/import", Credential.Operator, BodyKind.Json, t => new JsonObject { ["sealed"] = t.Sealed, ["passphrase"] = "correct horse battery staple" }),
        new("unlink", "POST", "/v1/accounts/{aid}/unlink", Credential.Operator),
        new("delete account", "DELETE", "/v1/accounts/{aid}", Credential.Operator),
        new("reseal", "POST", "/v1/admin/vault/reseal", Credential.Operator),
        new("cluster", "GET", "/v1/cluster", Credential.Operator),
        new("dashboard data", "GET", "/v1/dashboard", Credential.Dashboard),
        // pages and the dashboard
        new("dashboard page", "GET", "/dashboard", Credential.None),
        new("dashboard sign-in", "POST", "/dashboard/sign-in", Credential.None, BodyKind.Form),
        new("dashboard sign-out", "POST", "/dashboard/sign-out", Credential.Dashboard),
        new("orleans dashboard", "GET", "/dashboard/orleans/{orleans}", Credential.Dashboard, MayWait: true),
        new("home page", "GET", "/", Credential.None),
        new("link page", "GET", "/l/{tok}", Credential.None),
        new("phone page", "GET", "/phone", Credential.None),
        new("static file", "GET", "/{static}", Credential.None),
        new("openapi document", "GET", "/openapi/v1.json", Credential.None),
        new("openapi page", "GET", "/openapi", Credential.None),
        new("unknown path", "GET", "/{any}", Credential.None),
        // health and keys
        new("healthz", "GET", "/healthz", Credential.None),
        new("readyz", "GET", "/readyz", Credential.None),
        new("jwks", "GET", "/.well-known/jwks.json", Credential.None),
        new("metrics", "GET", "/metrics", Credential.Operator),
        // hubs
        new("qr hub negotiate", "POST", "/hubs/qr/negotiate", Credential.None, Query: ["negotiateVersion"]),
        new("dashboard hub negotiate", "POST", "/hubs/dashboard/negotiate", Credential.Dashboard, Query: ["negotiateVersion"]),
    ];

    private static readonly string[] Methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "FUZZ"];

    private static readonly string[] OrleansPaths =
    [
        "", "index.html", "version", "DashboardCounters", "ClusterStats", "Reminders", "Reminders/-1", "Reminders/99999999999",
        "HistoricalStats/", "HistoricalStats/garbage", "SiloProperties/garbage", "SiloMetadata/1.2.3.4:5", "SiloStats/%00",
        "SiloCounters/S127.0.0.1:1:1", "SiloStats/1.2.3.4:5@6", "SiloCounters/127.0.0.1:11111@1", "SiloProperties/", "GrainStats/", "GrainStats/System.String", "GrainStats/%3Cscript%3E", "TopGrainMethods",
        "GrainState?grainId=x&grainType=y", "LifecycleStages", "GrainTypes", "Trace", "fonts/%2e%2e%2f%2e%2e%2fappsettings.json",
        "img/..%2f..%2fGateway.csproj",
    ];

    private static readonly string[] StaticPaths =
    [
        "index.html", "app.css", "dashboard.css", "favicon.ico", "favicon.svg", "link.html", "js/", "lib/", "nothing.js",
        "%2e%2e/appsettings.json", "..%2fappsettings.json", "lib/..%2f..%2fGateway.csproj", "index.html%00.js", "INDEX.HTML",
        "app.css/", "app.css%20", "%E2%80%AE", "wwwroot/index.html", "dashboard.html", "phone.html",
    ];

    /// <summary>The deterministic generator of one case.</summary>
    public static Random CaseRandom(int seed, FuzzEndpoint endpoint, int index)
    {
        // FNV-1a of the name, not the list index: adding an endpoint leaves every other case as it was.
        var hash = 2166136261u;
        foreach (var c in endpoint.Name)
        {
            hash = (hash ^ c) * 16777619u;
        }
        var mixed = unchecked((ulong)(uint)seed * 0x9E3779B97F4A7C15UL ^ hash * 0xC2B2AE3D27D4EB4FUL ^ (ulong)index * 0x165667B19E3779F9UL);
        mixed ^= mixed >> 29;
        return new Random(unchecked((int)mixed ^ (int)(mixed >> 32)));
    }

    public static FuzzRequest Generate(int seed, FuzzEndpoint endpoint, int index, FuzzTargets t, string forwardedFor)
    {
        var rng = CaseRandom(seed, endpoint, index);
        var mayRefuse = false;
        var method = rng.Next(10) == 0 ? Pick(rng, Methods) : endpoint.Method;
        var path = FillPath(rng, endpoint.Path, t, ref mayRefuse);
        mayRefuse |= path.Contains("%00", StringComparison.Ordinal); // Kestrel refuses an encoded NUL in the path itself
        var query = Query(rng, endpoint, ref mayRefuse);
        var headers = new List<KeyValuePair<string, string>>();
        Credentials(rng, endpoint.Credential, t, headers, ref mayRefuse);
        Extras(rng, endpoint, t, headers, forwardedFor, ref mayRefuse);
        var (body, contentType) = Body(rng, endpoint, t, method);
        if (contentType is not null)
        {
            headers.Add(new("Content-Type", contentType));
        }
        return new FuzzRequest(method, path + query, headers, body, mayRefuse);
    }

    // ---- path and query ----

    private static string FillPath(Random rng, string template, FuzzTargets t, ref bool mayRefuse)
    {
        var path = template;
        path = Fill(rng, path, "{sid}", t.SessionId, ref mayRefuse);
        path = Fill(rng, path, "{aid}", t.AccountId, ref mayRefuse);
        path = Fill(rng, path, "{uid}", t.UserId, ref mayRefuse);
        path = Fill(rng, path, "{did}", t.SpareDeviceId, ref mayRefuse);
        path = Fill(rng, path, "{tok}", t.QrToken, ref mayRefuse);
        path = path.Replace("{orleans}", rng.Next(4) == 0 ? WeirdId(rng, ref mayRefuse) : Pick(rng, OrleansPaths), StringComparison.Ordinal);
        path = path.Replace("{static}", rng.Next(4) == 0 ? WeirdId(rng, ref mayRefuse) : Pick(rng, StaticPaths), StringComparison.Ordinal);
        path = path.Replace("{any}", Pick(rng, ["v1", "v1/qr", "v1/nope", "v2/qr/sessions", "api", ".env", "%2e%2e/%2e%2e/etc/passwd", "hubs", "hubs/qr/x"]) + "/" + WeirdId(rng, ref mayRefuse), StringComparison.Ordinal);
        return path;
    }

    private static string Fill(Random rng, string path, string placeholder, string valid, ref bool mayRefuse) =>
        path.Contains(placeholder, StringComparison.Ordinal)
            ? path.Replace(placeholder, rng.Next(100) < 60 ? valid : rng.Next(4) == 0 ? Tweak(rng, valid) : WeirdId(rng, ref mayRefuse), StringComparison.Ordinal)
            : path;

    /// <summary>The real value, slightly wrong: one character changed, cut, doubled, upper-cased, padded.</summary>
    private static string Tweak(Random rng, string valid) => rng.Next(6) switch
    {
        0 when valid.Length > 1 => valid[..^1] + (valid[^1] == 'A' ? 'B' : 'A'),
        1 when valid.Length > 1 => valid[..(valid.Length / 2)],
        2 => valid + valid,
        3 => valid.ToUpperInvariant(),
        4 => valid + "%20",
        _ => "%20" + valid,
    };

    private static string WeirdId(Random rng, ref bool mayRefuse)
    {
        switch (rng.Next(24))
        {
            case 0: return "%00";
            case 1: return "a%00b";
            case 2: return "%2e%2e%2f%2e%2e%2fetc%2fpasswd";
            case 3: return "..%2f..%2f";
            case 4: return "%2F";
            case 5: return "%";
            case 6: return "%zz";
            case 7: return "%C0%AF";
            case 8: return "%E2%80%AE%F0%9F%98%80";
            case 9: return "%F0%9F%98%80%F0%9F%98%80";
            case 10: return "%CE%A9";
            case 11: return new string('a', 4000);
            case 12:
                mayRefuse = true; // beyond Kestrel's 8 KB request line
                return new string('b', 12_000);
            case 13: return "AAAAAAAAAAAAAAAAAAAAAA";
            case 14: return "%20";
            case 15: return "%0d%0aX-Injected:%201";
            case 16: return "null";
            case 17: return "-1";
            case 18: return "%5B%5D";
            case 19: return "%7Bid%7D";
            case 20: return ".";
            case 21: return "%ff%fe";
            case 22: return "a;b=c";
            default: return Convert.ToHexStringLower(RandomBytes(rng, 8));
        }
    }

    private static string Query(Random rng, FuzzEndpoint endpoint, ref bool mayRefuse)
    {
        var parts = new List<string>();
        foreach (var name in endpoint.Query ?? [])
        {
            if (rng.Next(100) < 70)
            {
                parts.Add(name + "=" + QueryValue(rng, name));
            }
            if (rng.Next(10) == 0)
            {
                parts.Add(name + "=" + QueryValue(rng, name)); // the same parameter twice
            }
        }
        if (rng.Next(6) == 0)
        {
            parts.Add(Pick(rng, ["__proto__=1", "%24type=System.Object", "a=%00", "%00=1", "=", "&&&", "x=%", "x=%zz", "x=" + new string('q', 3000)]));
        }
        if (rng.Next(40) == 0)
        {
            mayRefuse = true;
            parts.Add("big=" + new string('z', 9000));
        }
        return parts.Count == 0 ? "" : "?" + string.Join("&", parts);
    }

    private static string QueryValue(Random rng, string name)
    {
        if (name is "negotiateVersion" && rng.Next(3) == 0)
        {
            return "1";
        }
        if (name is "from" or "to")
        {
            return Pick(rng, ["2026-01-01T00:00:00Z", "garbage", "", "9999-12-31T23:59:59.9999999Z", "0001-01-01", "2026-13-45T99:99:99Z", "1e9", "%00", "-1", "2026-01-01T00:00:00%2B14:00", "2026-01-01T00:00:00-99:00"]);
        }
        if (name is "timeout" && rng.Next(3) == 0)
        {
            return Pick(rng, ["0", "1"]); // a long-poll that answers soon
        }
        return Pick(rng, ["-5", "0", "1", "2", "1e9", "1e400", "abc", "", "99999999999999999999", "2147483648", "-2147483649",
            "9223372036854775807", "-9223372036854775808", "9223372036854775808", "1.5", "%00", "NaN", "0x10", "%201", "1,2", "%E2%91%A0", "1000000000"]);
    }

    // ---- headers ----

    private static void Credentials(Random rng, Credential expected, FuzzTargets t, List<KeyValuePair<string, string>> headers, ref bool mayRefuse)
    {
        if (rng.Next(100) < 45)
        {
            switch (expected)
            {
                case Credential.Desktop: headers.Add(new("Authorization", "Bearer " + t.DesktopToken)); return;
                case Credential.Phone: headers.Add(new("Authorization", "Bearer " + t.AccessToken)); return;
                case Credential.Operator: headers.Add(new("X-Api-Key", t.AdminKey)); return;
                case Credential.Dashboard:
                    headers.Add(rng.Next(2) == 0 ? new("X-Api-Key", t.AdminKey) : new("Cookie", "qro_dashboard=" + t.DashboardCookie));
                    return;
            }
        }
        if (rng.Next(100) < 75)
        {
            headers.Add(new("Authorization", Authorization(rng, t, ref mayRefuse)));
        }
        if (rng.Next(100) < 30)
        {
            headers.Add(new("X-Api-Key", Pick(rng, ["", "wrong", t.AdminKey + " ", " " + t.AdminKey, t.AdminKey.ToUpperInvariant(), t.AdminKey + t.AdminKey, "%00", new string('k', 5000)])));
        }
    }

    private static string Authorization(Random rng, FuzzTargets t, ref bool mayRefuse)
    {
        switch (rng.Next(22))
        {
            case 0: return "";
            case 1: return "Bearer";
            case 2: return "Bearer ";
            case 3: return "Bearer " + Convert.ToBase64String(RandomBytes(rng, 24));
            case 4: return "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("admin:" + t.AdminKey));
            case 5: return "Basic %%%";
            case 6:
                mayRefuse = true; // 64 KB: beyond Kestrel's 32 KB of request headers
                return "Bearer " + new string('A', 64 * 1024);
            case 7: return "Bearer " + Jwt(rng, new JsonObject { ["alg"] = "none", ["typ"] = "JWT" }, Claims(t), signature: "");
            case 8: return "Bearer " + Jwt(rng, new JsonObject { ["alg"] = "ES256", ["typ"] = "JWT" }, Claims(t), signature: "");
            case 9: return "Bearer " + t.AccessToken[..rng.Next(1, t.AccessToken.Length)];
            case 10: return "Bearer " + Jwt(rng, new JsonObject { ["alg"] = "HS256", ["typ"] = "JWT", ["kid"] = "../../../../dev/null" }, Claims(t), signature: "AAAA");
            case 11: return "Bearer " + Jwt(rng, new JsonObject { ["alg"] = "ES256", ["jku"] = "http://127.0.0.1:1/jwks", ["x5u"] = "file:///etc/passwd" },
                new JsonObject { ["sub"] = 12, ["did"] = new JsonArray(1, 2), ["exp"] = "tomorrow", ["iss"] = true }, signature: "x");
            case 12: return "DPoP " + t.AccessToken;
            case 13: return "DPoP " + Convert.ToBase64String(RandomBytes(rng, 40));
            case 14: return "DPoP";
            case 15: return "bearer " + t.DesktopToken;
            case 16: return "Bearer " + t.AccessToken + " " + t.AccessToken;
            case 17: return "Bearer\t" + t.DesktopToken;
            case 18: return "Bearer a.b.c";
            case 19: return "Bearer " + Jwt(rng, new JsonObject { ["alg"] = "ES256", ["typ"] = "JWT" },
                new JsonObject { ["sub"] = t.UserId, ["did"] = t.DeviceId, ["exp"] = 1e300, ["nbf"] = -1e300, ["iat"] = "x" }, signature: "AAAA");
            case 20:
                mayRefuse = true; // non-ASCII bytes in a header
                return "Bearer ✓" + t.DesktopToken;
            default: return "Negotiate " + Convert.ToBase64String(RandomBytes(rng, 16));
        }
    }

    private static JsonObject Claims(FuzzTargets t) => new()
    {
        ["sub"] = t.UserId, ["did"] = t.DeviceId, ["iss"] = "qrorleans", ["aud"] = "qrorleans",
        ["exp"] = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeSeconds(),
    };

    private static string Jwt(Random rng, JsonObject header, JsonObject payload, string signature)
    {
        var text = B64(header.ToJsonString()) + "." + B64(payload.ToJsonString()) + "." + signature;
        return rng.Next(5) == 0 ? text[..rng.Next(1, text.Length)] : text; // sometimes truncated
    }

    private static string B64(string text) => Convert.ToBase64String(Encoding.UTF8.GetBytes(text)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    /// <summary>A few of the other headers a hostile or broken client sends, each with a value of the wrong shape.</summary>
    private static void Extras(Random rng, FuzzEndpoint endpoint, FuzzTargets t, List<KeyValuePair<string, string>> headers, string forwardedFor, ref bool mayRefuse)
    {
        void Maybe(int percent, string name, params string[] values)
        {
            if (rng.Next(100) < percent)
            {
                headers.Add(new(name, Pick(rng, values)));
            }
        }

        // A proxy in front (the fuzz node trusts loopback as one): usually a well-formed address.
        headers.Add(new("X-Forwarded-For", rng.Next(100) < 80 ? forwardedFor
            : Pick(rng, ["garbage", "1.2.3.4, garbage", "999.999.999.999", "unknown", "[::1]:80", "1.2.3.4:99999", "", ",,,,",
                string.Join(", ", Enumerable.Range(0, 300).Select(i => $"10.0.{i / 256}.{i % 256}")), "fe80::1%eth0", "::ffff:300.1.1.1"])));
        Maybe(10, "X-Forwarded-Proto", "garbage", "https", "javascript", "http, https", "", "h t t p");
        Maybe(15, "DPoP", "garbage", "a.b.c", "", Jwt(rng, new JsonObject { ["typ"] = "dpop+jwt", ["alg"] = "none" }, new JsonObject { ["htm"] = "POST", ["htu"] = "x", ["iat"] = "now", ["jti"] = 1 }, ""),
            Jwt(rng, new JsonObject { ["typ"] = "dpop+jwt", ["alg"] = "ES256", ["jwk"] = new JsonObject { ["kty"] = "EC", ["crv"] = "P-256", ["x"] = "AA", ["y"] = "%%" } },
                new JsonObject { ["htm"] = 5, ["htu"] = new JsonArray(), ["iat"] = "1e400" }, "sig"),
            new string('d', 6000), t.AccessToken);
        Maybe(15, "Cookie", "qro_dashboard=garbage", "qro_dashboard=AAAA.BBBB", "qro_dashboard=" + new string('A', 32) + "." + new string('B', 43),
            "qro_dashboard=" + string.Concat(Enumerable.Repeat("a.", 95)), "qro_dashboard=%00", "=;;;=", "a=\"unterminated", "qro_dashboard=1; qro_dashboard=2",
            "qro_dashboard=" + t.DashboardCookie[..^2] + "AA", "qro_dashboard=" + new string('c', 8000), "qro_dashboard=....", "qro_dashboard=%zz");
        if (endpoint.Name == "events" || rng.Next(100) < 5)
        {
            Maybe(70, "Last-Event-ID", "-1", "abc", "99999999999999999999", "1e9", "", " 5", "0x10", "9223372036854775807", "-9223372036854775808", new string('9', 5000));
        }
        Maybe(10, "User-Agent", "", "garbage", new string('x', 6000), string.Concat(Enumerable.Repeat("Mozilla/5.0 (Chrome/ Edg/ OPR/ Firefox/ ", 150)),
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/" + new string('1', 3000), "curl/");
        Maybe(10, "Accept", "text/html", "application/json", "*/*;q=garbage", "text/html;;;", "application/problem+json, text/event-stream", "", "a/b/c");
        Maybe(8, "Origin", "null", "http://evil.example", "garbage://", "http://[::1", "", "http://127.0.0.1:1", "file://");
        Maybe(8, "Range", "bytes=garbage", "bytes=999999-", "bytes=-0", "bytes=0-1,1-2,2-3,3-4", "bytes=5-1", "items=0-1");
        Maybe(5, "If-None-Match", "garbage", "*", "\"\"", "W/");
        Maybe(5, "If-Modified-Since", "garbage", "Sat, 29 Feb 2025 25:61:61 GMT", "0", "9999999999999");
        Maybe(5, "Content-Encoding", "gzip", "br", "garbage");
        Maybe(5, "Accept-Charset", "utf-7", "garbage");
        if (rng.Next(40) == 0)
        {
            mayRefuse = true;
            headers.Add(new("Host", Pick(rng, ["evil.example", "[::1", "a b", "127.0.0.1:99999", ""])));
        }
        if (rng.Next(60) == 0)
        {
            mayRefuse = true;
            headers.Add(new("X-Null", "a\0b"));
        }
    }

    // ---- bodies ----

    private static (byte[] Body, string? ContentType) Body(Random rng, FuzzEndpoint endpoint, FuzzTargets t, string method)
    {
        var kind = endpoint.Body;
        if (kind == BodyKind.None && rng.Next(100) < 70)
        {
            return ([], rng.Next(8) == 0 ? OddContentType(rng) : null);
        }
        if (kind == BodyKind.None)
        {
            kind = rng.Next(2) == 0 ? BodyKind.Json : BodyKind.Form;
        }
        var (body, natural) = kind == BodyKind.Form ? FormBody(rng, t) : JsonBody(rng, endpoint, t);
        if (rng.Next(100) < 15)
        {
            // The other kind of body, under the content type of this one, or the other way round.
            (body, _) = kind == BodyKind.Form ? JsonBody(rng, endpoint, t) : FormBody(rng, t);
        }
        var contentType = rng.Next(100) < 70 ? natural : OddContentType(rng);
        return (body, contentType);
    }

    private static string? OddContentType(Random rng) => Pick<string?>(rng,
    [
        null, "", "application/json; charset=utf-7", "application/json; charset=nonsense", "application/json; charset=utf-16",
        "application/json; charset=\"utf-8\"", "text/plain", "text/plain; charset=utf-8", "multipart/form-data", "multipart/form-data; boundary=",
        "multipart/form-data; boundary=" + new string('b', 100), "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
        "application/x-www-form-urlencoded; charset=utf-7", "application/octet-stream", "application/problem+json", "application/vnd.api+json",
        "a/b/c;;;", "application/json;", "*/*", "application/json, text/plain", "APPLICATION/JSON", "application/json; charset=latin1",
        "application/x-www-form-urlencoded; charset=nonsense",
    ]);

    private static (byte[] Body, string ContentType) JsonBody(Random rng, FuzzEndpoint endpoint, FuzzTargets t)
    {
        var template = endpoint.Template?.Invoke(t) ?? new JsonObject { ["reason"] = "fuzz" };
        string text;
        switch (rng.Next(100))
        {
            case < 15:
                text = template.ToJsonString();
                break;
            case < 65:
                text = Mutate(rng, template);
                break;
            default:
                return WholeBody(rng, template);
        }
        return (Encoding.UTF8.GetBytes(text), "application/json");
    }

    private const string Marker = "\u0001FUZZ\u0001";

    /// <summary>The template with one value replaced by raw JSON text (which may be no valid JSON), or a field added.</summary>
    private static string Mutate(Random rng, JsonObject template)
    {
        var objects = new List<JsonObject>();
        Collect(template, objects);
        var target = Pick(rng, objects);
        string raw;
        switch (rng.Next(10))
        {
            case < 6 when target.Count > 0:
                var name = target.ElementAt(rng.Next(target.Count)).Key;
                target[name] = Marker;
                raw = RawValue(rng);
                break;
            case < 8:
                target[Pick(rng, ["$type", "$id", "$ref", "$values", "__proto__", "constructor", "prototype", "unknownField", "", "\u0000"])] = Marker;
                raw = Pick(rng, ["\"System.IO.FileInfo, System.IO.FileSystem\"", "{\"polluted\":true}", "1", "{\"$ref\":\"#\"}", "[\"$\"]", "null"]);
                break;
            default:
                // A key written twice: text-level, which no serializer produces.
                var text = template.ToJsonString();
                var key = target.Count > 0 ? target.First().Key : "number";
                var insert = $"\"{key}\":{RawValue(rng)},";
                var at = text.IndexOf('{', StringComparison.Ordinal) + 1;
                return text.Insert(at, insert);
        }
        var json = template.ToJsonString();
        return json.Replace("\"\\u0001FUZZ\\u0001\"", raw, StringComparison.Ordinal);
    }

    private static void Collect(JsonObject node, List<JsonObject> into)
    {
        into.Add(node);
        foreach (var (_, value) in node)
        {
            if (value is JsonObject child)
            {
                Collect(child, into);
            }
        }
    }

    private static string RawValue(Random rng) => rng.Next(36) switch
    {
        0 => "1e400",
        1 => "-1e400",
        2 => "1180591620717411303424", // 2^70
        3 => "-1180591620717411303424",
        4 => "1e-400",
        5 => "1.5",
        6 => "-0",
        7 => "NaN",
        8 => "Infinity",
        9 => "00012",
        10 => "0x1F",
        11 => "\"\"",
        12 => "null",
        13 => "true",
        14 => "[]",
        15 => "{}",
        16 => "[1,\"two\",{\"three\":3}]",
        17 => "\"\\u0000\"",
        18 => "\"\\ud800\"",
        19 => "\"\\udfff\\ud800x\"",
        20 => "\"" + new string('a', 12_000) + "\"",
        21 => "\"" + new string('b', 40_000) + "\"", // beyond the 16 KB body limit
        22 => Nested(100, '[', ']'),
        23 => Nested(10_000, '[', ']'),
        24 => string.Concat(Enumerable.Repeat("{\"a\":", 10_000)) + "1" + new string('}', 10_000),
        25 => "\"\u202e\ud83d\ude00\u0130\u00df\"",
        26 => "'single'",
        27 => "\"unterminated",
        28 => "12345678901234567890123456789012345678901234567890",
        29 => "\"2026-13-45T99:99:99Z\"",
        30 => "\"12\"",
        31 => "2147483648",
        32 => "-2147483649",
        33 => "\"\\x41\"",
        34 => "\"" + new string(' ', 100) + "\"",
        _ => "9007199254740993.0000001",
    };

    private static string Nested(int depth, char open, char close) => new string(open, depth) + new string(close, depth);

    private static (byte[] Body, string ContentType) WholeBody(Random rng, JsonObject template)
    {
        var json = template.ToJsonString();
        var bytes = Encoding.UTF8.GetBytes(json);
        return rng.Next(22) switch
        {
            0 => ([], "application/json"),
            1 => ("null"u8.ToArray(), "application/json"),
            2 => ("true"u8.ToArray(), "application/json"),
            3 => ("\"str\""u8.ToArray(), "application/json"),
            4 => ("[]"u8.ToArray(), "application/json"),
            5 => (Encoding.UTF8.GetBytes(Nested(10_000, '[', ']')), "application/json"),
            6 => (Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("{\"a\":", 10_000)) + "1" + new string('}', 10_000)), "application/json"),
            7 => (Encoding.UTF8.GetBytes(new string('[', 15_000)), "application/json"),
            8 => (bytes[..rng.Next(0, bytes.Length)], "application/json"),
            9 => (RandomBytes(rng, rng.Next(1, 2048)), Pick(rng, ["application/json", "application/octet-stream"])),
            10 => ([0xEF, 0xBB, 0xBF, .. bytes], "application/json"),
            11 => (Encoding.Unicode.GetBytes(json), "application/json; charset=utf-16"),
            12 => (Encoding.Unicode.GetBytes(json), "application/json"),
            13 => (Encoding.UTF8.GetBytes(json.Replace("}", ",}", StringComparison.Ordinal)), "application/json"),
            14 => (Encoding.UTF8.GetBytes("/* comment */" + json), "application/json"),
            15 => (Encoding.UTF8.GetBytes(json + json), "application/json"),
            16 => (Encoding.UTF8.GetBytes(json + " x"), "application/json"),
            17 => ([.. "{\"x\":\""u8, 0xC3, 0x28, 0xFF, 0xFE, .. "\"}"u8], "application/json"),
            18 => (Encoding.UTF8.GetBytes("{\"x\":\"" + new string('z', 30_000) + "\"}"), "application/json"),
            19 => (Encoding.UTF8.GetBytes(json.Replace("\"", "'", StringComparison.Ordinal)), "application/json"),
            20 => ([.. "{\"a\":\"\0\"}"u8], "application/json"),
            _ => (Encoding.UTF8.GetBytes("{" + string.Join(",", Enumerable.Range(0, 1500).Select(i => $"\"k{i}\":{i}")) + "}"), "application/json"),
        };
    }

    private static (byte[] Body, string ContentType) FormBody(Random rng, FuzzTargets t)
    {
        const string Form = "application/x-www-form-urlencoded";
        const string Multipart = "multipart/form-data; boundary=fuzz";
        return rng.Next(24) switch
        {
            0 => ("key=%00"u8.ToArray(), Form),
            1 => ("key=abc%00def"u8.ToArray(), Form),
            2 => ("k%00y=1"u8.ToArray(), Form),
            3 => ("key=%zz"u8.ToArray(), Form),
            4 => ("key=%"u8.ToArray(), Form),
            5 => ("key=%E0%A4%A"u8.ToArray(), Form),
            6 => ("key=%C0%AF%ED%A0%80"u8.ToArray(), Form),
            7 => ([.. "key="u8, 0, .. "x"u8, 0], Form),
            8 => (Encoding.UTF8.GetBytes("key=" + Uri.EscapeDataString(t.AdminKey)), Form),
            9 => (Encoding.UTF8.GetBytes("key=a&key=" + Uri.EscapeDataString(t.AdminKey)), Form),
            10 => (Encoding.UTF8.GetBytes(string.Concat(Enumerable.Repeat("a=1&", 1500))), Form), // more fields than the reader allows
            11 => (Encoding.UTF8.GetBytes(new string('k', 3000) + "=1"), Form), // a key longer than the reader allows
            12 => ("=&=&&==&"u8.ToArray(), Form),
            13 => (Encoding.UTF8.GetBytes("key=" + new string('v', 15_000)), Form),
            14 => (RandomBytes(rng, rng.Next(1, 1024)), Form),
            15 => ([], Form),
            16 => (Encoding.UTF8.GetBytes("--fuzz\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\n" + t.AdminKey + "\r\n--fuzz--\r\n"), Multipart),
            17 => ("--fuzz\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nunterminated"u8.ToArray(), Multipart),
            18 => ("--fuzz\r\nContent-Disposition: form-data; name=\"key\"; filename=\"../../x.exe\"\r\nContent-Type: application/x-msdownload\r\n\r\nMZ\r\n--fuzz--\r\n"u8.ToArray(), Multipart),
            19 => ("no boundary here"u8.ToArray(), Multipart),
            20 => (Encoding.UTF8.GetBytes("--fuzz\r\n" + new string('H', 20_000) + "\r\n\r\nx\r\n--fuzz--\r\n"), Multipart),
            21 => ("--fuzz\r\nContent-Disposition: garbage\r\n\r\nx\r\n--fuzz--\r\n"u8.ToArray(), Multipart),
            22 => ("key=%F0%9F%98%80&%E2%80%AE=%CE%A9"u8.ToArray(), Form + "; charset=utf-8"),
            _ => ("key=x"u8.ToArray(), "multipart/form-data"),
        };
    }

    private static byte[] RandomBytes(Random rng, int count)
    {
        var bytes = new byte[count];
        rng.NextBytes(bytes);
        return bytes;
    }

    private static T Pick<T>(Random rng, IReadOnlyList<T> items) => items[rng.Next(items.Count)];

    /// <summary>A random but valid-looking client address for X-Forwarded-For (spreads the per-IP limits).</summary>
    public static string ClientAddress(Random rng) => $"198.51.{rng.Next(0, 256)}.{rng.Next(1, 255)}";

    /// <summary>SHA-256 prefix of a body: identifies it in a report without printing all of it.</summary>
    public static string Fingerprint(byte[] body) => Convert.ToHexStringLower(SHA256.HashData(body))[..12];
}
