using System.Text.Json;
using QrOrleans.Tests.Api;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Audit;

/// <summary>The audit trail of real ceremonies over HTTP: what the user sees at /v1/me/audit and the operator's query.</summary>
public sealed class AuditTrailApiTests(NodeFixture fixture) : IClassFixture<NodeFixture>
{
    private ApiClient Api => fixture.Api;

    [Fact]
    public async Task A_full_ceremony_then_a_revocation_is_in_the_users_trail_with_who_when_ip_and_client()
    {
        var phone = await Api.NewPhoneAsync();
        var before = DateTimeOffset.UtcNow.AddSeconds(-1);
        var session = await Api.CreateSessionAsync(new { client = new { name = "Build agent 7", kind = "agent" } });
        await Api.ScanAndApproveAsync(phone.AccessToken, session);
        var claim = (await Api.ClaimAsync(session)).EnsureStatus(200);
        var linkedDevice = claim.Body.GetProperty("device").GetProperty("id").GetString()!;
        (await Api.SendAsync(HttpMethod.Delete, "/v1/devices/" + linkedDevice, null, phone.AccessToken)).EnsureStatus(204);

        var trail = (await Api.SendAsync(HttpMethod.Get, "/v1/me/audit", null, phone.AccessToken)).EnsureStatus(200).Body;

        var entries = trail.EnumerateArray().ToList();
        Assert.Equal(["device_revoked", "device_linked", "qr_approved", "qr_scanned"], entries.Select(e => e.GetProperty("action").GetString()));
        foreach (var e in entries)
        {
            Assert.Equal("127.0.0.1", e.GetProperty("ip").GetString());
            Assert.InRange(e.GetProperty("at").GetDateTimeOffset(), before, DateTimeOffset.UtcNow.AddSeconds(1));
        }
        var scanned = entries[3];
        Assert.Equal(phone.DeviceId, scanned.GetProperty("actorDeviceId").GetString());
        Assert.Equal(session.SessionId, scanned.GetProperty("sessionId").GetString());
        Assert.Contains("Build agent 7 (agent)", scanned.GetProperty("detail").GetString());
        var linked = entries[1];
        Assert.Equal(linkedDevice, linked.GetProperty("deviceId").GetString());
        Assert.Equal("Build agent 7 (agent)", linked.GetProperty("client").GetString());
        Assert.Equal(linkedDevice, entries[0].GetProperty("deviceId").GetString());
        Assert.Equal("signed out Build agent 7", entries[0].GetProperty("detail").GetString());
        AssertNoSecrets(trail, session, claim.Body);
    }

    [Fact]
    public async Task A_wrong_number_a_rejection_and_a_replayed_refresh_token_are_recorded()
    {
        var phone = await Api.NewPhoneAsync();
        var wrong = await Api.CreateSessionAsync();
        var scan = (await Api.ScanAsync(phone.AccessToken, wrong.QrUrl)).EnsureStatus(200);
        var number = (await Api.SnapshotAsync(wrong)).Body.GetProperty("numberMatch").GetString();
        var other = scan.Body.GetProperty("numberChoices").EnumerateArray().Select(c => c.GetString()).First(c => c != number)!;
        Assert.Equal(422, (await Api.ApproveAsync(phone.AccessToken, wrong.SessionId, other)).Status);
        var rejected = await Api.CreateSessionAsync();
        (await Api.ScanAsync(phone.AccessToken, rejected.QrUrl)).EnsureStatus(200);
        (await Api.RejectAsync(phone.AccessToken, rejected.SessionId)).EnsureStatus(200);
        (await Api.SendAsync(HttpMethod.Post, "/v1/auth/refresh", new { refreshToken = phone.RefreshToken })).EnsureStatus(200);
        Assert.Equal(401, (await Api.SendAsync(HttpMethod.Post, "/v1/auth/refresh", new { refreshToken = phone.RefreshToken })).Status);

        var trail = (await Api.SendAsync(HttpMethod.Get, $"/v1/admin/users/{phone.UserId}/audit", null, apiKey: GatewayNode.AdminKey))
            .EnsureStatus(200).Body.EnumerateArray().ToList();

        Assert.Equal(["refresh_token_reused", "qr_rejected", "qr_scanned", "qr_rejected", "qr_scanned"], trail.Select(e => e.GetProperty("action").GetString()));
        Assert.Equal("rejected on the phone", trail[1].GetProperty("detail").GetString());
        Assert.Equal("wrong number picked", trail[3].GetProperty("detail").GetString());
        Assert.Equal(phone.DeviceId, trail[0].GetProperty("deviceId").GetString());
    }

    [Fact]
    public async Task The_operator_queries_a_user_by_time_and_nobody_else_can()
    {
        var phone = await Api.NewPhoneAsync();
        var first = await Api.CreateSessionAsync();
        (await Api.ScanAsync(phone.AccessToken, first.QrUrl)).EnsureStatus(200);
        await Task.Delay(50);
        var middle = DateTimeOffset.UtcNow;
        await Task.Delay(50);
        (await Api.RejectAsync(phone.AccessToken, first.SessionId)).EnsureStatus(200);
        var path = $"/v1/admin/users/{phone.UserId}/audit";

        var after = (await Api.SendAsync(HttpMethod.Get, $"{path}?from={Uri.EscapeDataString(middle.ToString("O"))}", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200);
        var until = (await Api.SendAsync(HttpMethod.Get, $"{path}?to={Uri.EscapeDataString(middle.ToString("O"))}", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200);

        Assert.Equal(["qr_rejected"], after.Body.EnumerateArray().Select(e => e.GetProperty("action").GetString()));
        Assert.Equal(["qr_scanned"], until.Body.EnumerateArray().Select(e => e.GetProperty("action").GetString()));
        var noKey = await Api.SendAsync(HttpMethod.Get, path, null);
        Assert.Equal((401, "unauthenticated"), (noKey.Status, noKey.Code));
        Assert.Equal(401, (await Api.SendAsync(HttpMethod.Get, path, null, apiKey: "wrong")).Status);
        Assert.Equal(401, (await Api.SendAsync(HttpMethod.Get, path, null, bearer: phone.AccessToken)).Status);
        Assert.Equal(401, (await Api.SendAsync(HttpMethod.Get, "/v1/me/audit", null)).Status);
        var someoneElse = await Api.NewPhoneAsync();
        Assert.Empty((await Api.SendAsync(HttpMethod.Get, "/v1/me/audit", null, someoneElse.AccessToken)).EnsureStatus(200).Body.EnumerateArray());
        Assert.Equal(400, (await Api.SendAsync(HttpMethod.Get, $"{path}?limit=0", null, apiKey: GatewayNode.AdminKey)).Status);
    }

    /// <summary>The trail names sessions and devices, never a credential that was in play.</summary>
    private static void AssertNoSecrets(JsonElement trail, NewSession session, JsonElement claim)
    {
        var text = trail.GetRawText();
        var qrSecret = session.QrUrl[(session.QrUrl.LastIndexOf('.') + 1)..];
        foreach (var secret in new[] { session.DesktopToken, qrSecret, claim.GetProperty("accessToken").GetString()!, claim.GetProperty("refreshToken").GetString()! })
        {
            Assert.DoesNotContain(secret, text, StringComparison.Ordinal);
        }
    }
}
