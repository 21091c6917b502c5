using System.Text;

namespace QrOrleans.Tests.Fuzz;

/// <param name="Was">What the gateway answered before the fix.</param>
public sealed record FuzzRegression(string Name, Func<FuzzTargets, FuzzRequest> Request, int Status, string? Code, string Was);

/// <summary>Every defect the fuzzer found, as the exact request that showed it and the answer it gets now.</summary>
public static class FuzzRegressions
{
    public static readonly FuzzRegression[] All =
    [
        new("sign-in form with an encoded NUL", _ => Form("/dashboard/sign-in", "application/x-www-form-urlencoded", "key=%00"),
            400, "invalid_form", "500 (InvalidDataException from the form reader); fixed before the fuzzer, kept covered"),
        new("sign-in multipart body that ends inside a part", _ => Form("/dashboard/sign-in", "multipart/form-data; boundary=fuzz",
                "--fuzz\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nunterminated"),
            400, "invalid_form", "500 (IOException 'Unexpected end of Stream' from the multipart reader); seed 120016, case 'dashboard sign-in#2'"),
        new("sign-in form in utf-7", _ => Form("/dashboard/sign-in", "application/x-www-form-urlencoded; charset=utf-7", "k%00y=1"),
            415, "unsupported_media_type", "500 (NotSupportedException: UTF-7 is disabled); seed 12, case 'dashboard sign-in#3'"),
        new("JSON body in utf-7", t => Json("POST", $"/v1/accounts/{t.AccountId}/export", "application/json; charset=utf-7",
                "{\"passphrase\":\"correct horse battery staple\"}", ("X-Api-Key", t.AdminKey)),
            415, "unsupported_media_type", "500 (InvalidOperationException: charset 'utf-7' is not a known encoding); seed 120016, case 'export#3'"),
        new("JSON body in a made-up charset", t => Json("POST", "/v1/admin/users", "application/json; charset=nonsense",
                "{\"username\":\"charset.user\"}", ("X-Api-Key", t.AdminKey)),
            415, "unsupported_media_type", "500 (InvalidOperationException: charset 'nonsense' is not a known encoding)"),
        new("JSON body with a quoted charset", _ => Json("POST", "/v1/qr/sessions", "application/json; charset=\"utf-8\"",
                "{\"client\":{\"name\":\"Quoted\",\"kind\":\"cli\"}}"),
            201, null, "500 (the quotes taken for part of the charset's name); seed 120016, case 'create device#5'"),
        new("blank session id on qr.png", t => Get("/v1/qr/sessions/%20/qr.png", ("Authorization", "Bearer " + t.DesktopToken)),
            401, "unauthenticated", "500 (ArgumentException: Orleans refuses a blank grain key); seed 1, case 'qr.png#1'"),
        new("blank session id on qr.svg", t => Get("/v1/qr/sessions/%20/qr.svg", ("Authorization", "Bearer " + t.DesktopToken)),
            401, "unauthenticated", "500 (ArgumentException: blank grain key); seed 2, case 'qr.svg#2'"),
        new("blank session id on claim", t => Json("POST", "/v1/qr/sessions/%20/claim", null, "", ("Authorization", "Bearer " + t.DesktopToken)),
            401, "unauthenticated", "500 (ArgumentException: blank grain key); seed 3, case 'claim#8'"),
        new("blank session id on cancel", t => Json("POST", "/v1/qr/sessions/%20/cancel", null, "", ("Authorization", "Bearer " + t.DesktopToken)),
            401, "unauthenticated", "500 (ArgumentException: blank grain key)"),
        new("lone surrogate escape in an account's connector", t => Json("PUT", $"/v1/accounts/{t.AccountId}", "application/json",
                "{\"platform\":\"sandbox\",\"connector\":{\"autoConfirm\":true,\"failWith\":\"\\ud800\"}}", ("X-Api-Key", t.AdminKey)),
            400, "validation_failed", "500 (InvalidOperationException reading the string); seed 9, case 'put account#6'"),
        new("lone surrogate escape in a connector's field name", t => Json("PUT", $"/v1/accounts/{t.AccountId}", "application/json",
                "{\"connector\":{\"\\udfff\":1}}", ("X-Api-Key", t.AdminKey)),
            400, "validation_failed", "500 (InvalidOperationException reading the name)"),
        new("lone surrogate escape in a desktop key's coordinate", _ => Json("POST", "/v1/qr/sessions", "application/json",
                "{\"client\":{\"name\":\"Fuzz desktop\",\"kind\":\"browser\"},\"key\":{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"\\udfff\\ud800x\",\"y\":\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}}"),
            400, "validation_failed", "500 (InvalidOperationException reading the string); seed 130602518, case 'create session#2'"),
        new("Orleans dashboard silo view with no silo address", t => Get("/dashboard/orleans/HistoricalStats/garbage", ("X-Api-Key", t.AdminKey)),
            404, "not_found", "500 (FormatException: Invalid string SiloAddress); seed 120016, case 'orleans dashboard#5'"),
        new("Orleans dashboard silo view with an address in the wrong form", t => Get("/dashboard/orleans/SiloMetadata/1.2.3.4:5", ("X-Api-Key", t.AdminKey)),
            404, "not_found", "500 (FormatException); seed 120016, case 'orleans dashboard#8'"),
        new("Orleans dashboard silo view of a silo that is not in the cluster", t => Get("/dashboard/orleans/SiloCounters/127.0.0.1:11111@1", ("X-Api-Key", t.AdminKey)),
            404, "not_found", "503 text/plain without Retry-After ('lost connectivity with the Orleans cluster'); seed 3, case 'orleans dashboard#12'"),
        new("negotiate with a method other than POST", _ => new FuzzRequest("PATCH", "/hubs/qr/negotiate?negotiateVersion=1", [], []),
            405, "method_not_allowed", "405 text/plain with an empty body (SignalR's own); seed 120016, case 'qr hub negotiate#13'"),
        new("long-poll version that is no number", t => Get($"/v1/qr/sessions/{t.SessionId}?waitForVersion=1e400&timeout=1e9", ("Authorization", "Bearer " + t.DesktopToken)),
            400, "validation_failed", "400 bad_request (a code not in the catalog; the detail named the .NET type Nullable<long>)"),
        new("audit time that is no time", t => Get($"/v1/admin/users/{t.UserId}/audit?from=2026-13-45T99:99:99Z", ("X-Api-Key", t.AdminKey)),
            400, "validation_failed", "400 bad_request; seed 12, case 'user audit#0'"),
        new("audit limit beyond int", t => Get("/v1/me/audit?limit=9223372036854775807", ("Authorization", "Bearer " + t.AccessToken)),
            400, "validation_failed", "400 bad_request; seed 12, case 'my audit#3'"),
        new("required JSON body left out", t => Json("POST", $"/v1/accounts/{t.AccountId}/messages", null, "", ("X-Api-Key", t.AdminKey)),
            400, "invalid_json", "400 bad_request ('Implicit body inferred for parameter \"body\"…'); seed 12, case 'send message#1'"),
        new("range beyond a static file", _ => Get("/favicon.svg", ("Range", "bytes=999999-")),
            416, "range_not_satisfiable", "416 http_416 (a code not in the catalog); seed 12, case 'static file#1'"),
        new("wrong method on an API path", _ => Json("PATCH", "/v1/cluster", null, ""),
            405, "method_not_allowed", "405 method_not_allowed, a code the catalog did not list"),
    ];

    private static FuzzRequest Get(string target, params (string Name, string Value)[] headers) =>
        new("GET", target, [.. headers.Select(h => new KeyValuePair<string, string>(h.Name, h.Value))], []);

    private static FuzzRequest Form(string target, string contentType, string body) =>
        new("POST", target, [new("Content-Type", contentType)], Encoding.UTF8.GetBytes(body));

    private static FuzzRequest Json(string method, string target, string? contentType, string body, params (string Name, string Value)[] headers) =>
        new(method, target,
            [.. headers.Select(h => new KeyValuePair<string, string>(h.Name, h.Value)), .. contentType is null ? [] : new[] { new KeyValuePair<string, string>("Content-Type", contentType) }],
            Encoding.UTF8.GetBytes(body));
}
