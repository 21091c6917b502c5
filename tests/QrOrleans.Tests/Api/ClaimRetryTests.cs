using Microsoft.Extensions.DependencyInjection;
using QrOrleans.QrSessions;
using QrOrleans.Tests.Infrastructure;
using QrOrleans.Users;

namespace QrOrleans.Tests.Api;

/// <summary>
/// Failures injected between the steps of a claim, as a node dying or storage failing there would cause them: an
/// Orleans grain call filter throws at a chosen point of the real claim path (before or after the device is
/// registered, after the session's claim step answered, before the confirmation).
/// </summary>
public sealed class ClaimFaults : IIncomingGrainCallFilter
{
    public enum Point
    {
        /// <summary>The session recorded the pending grant; the device was not registered.</summary>
        BeforeAddDevice,

        /// <summary>The device was registered with a refresh token that never reaches anyone.</summary>
        AfterAddDevice,

        /// <summary>The session's claim step finished; its answer is lost on the way to the gateway.</summary>
        AfterBeginClaim,

        /// <summary>The gateway minted the tokens and dies before confirming.</summary>
        BeforeConfirm,
    }

    private readonly HashSet<Point> _armed = [];

    public int Fired { get; private set; }

    public void Arm(params Point[] points)
    {
        lock (_armed)
        {
            _armed.Clear();
            _armed.UnionWith(points);
        }
    }

    public async Task Invoke(IIncomingGrainCallContext context)
    {
        var (type, method) = (context.InterfaceMethod.DeclaringType, context.InterfaceMethod.Name);
        var (before, after) = (type, method) switch
        {
            _ when type == typeof(IUserGrain) && method == nameof(IUserGrain.AddDeviceAsync) => (Point.BeforeAddDevice, Point.AfterAddDevice),
            _ when type == typeof(IQrSessionGrain) && method == nameof(IQrSessionGrain.BeginClaimAsync) => ((Point?)null, Point.AfterBeginClaim),
            _ when type == typeof(IQrSessionGrain) && method == nameof(IQrSessionGrain.ConfirmClaimAsync) => (Point.BeforeConfirm, (Point?)null),
            _ => ((Point?)null, (Point?)null),
        };
        Fire(before);
        await context.Invoke();
        Fire(after);
    }

    private void Fire(Point? point)
    {
        lock (_armed)
        {
            if (point is not { } p || !_armed.Remove(p))
            {
                return;
            }
            Fired++;
        }
        throw new InvalidOperationException($"injected fault at {point}");
    }
}

public sealed class FaultyNodeFixture : IAsyncLifetime
{
    public ClaimFaults Faults { get; } = new();

    public GatewayNode Node { get; private set; } = null!;

    public ApiClient Api => new(Node.Http);

    public async ValueTask InitializeAsync() =>
        Node = await GatewayNode.StartAsync(configure: b => b.Services.AddSingleton<IIncomingGrainCallFilter>(Faults));

    public ValueTask DisposeAsync() => Node.DisposeAsync();
}

/// <summary>
/// Issue 13 point 5: a claim that fails on the server between its steps is retried by the same desktop (same desktop
/// token, same key with a fresh proof) and then gets its grant; there is one device per session whatever happened,
/// with a working token pair, and a confirmed claim is final.
/// </summary>
public sealed class ClaimRetryTests(FaultyNodeFixture fixture) : IClassFixture<FaultyNodeFixture>
{
    private const int Rounds = 32;

    private ApiClient Api => fixture.Api;

    [Fact]
    public async Task A_claim_that_failed_between_its_steps_is_retried_to_one_device_with_a_working_token_pair()
    {
        var phone = await Api.NewPhoneAsync();
        var points = Enum.GetValues<ClaimFaults.Point>();
        var random = new Random(13);
        var devices = new HashSet<string> { phone.DeviceId };
        for (var round = 0; round < Rounds; round++)
        {
            using var key = round % 2 == 0 ? new DpopKey() : null;
            var session = await Api.ApprovedKeyedSessionAsync(phone.AccessToken, key);
            // One or two failures in a row, at points of the claim chosen at random.
            var faults = points.OrderBy(_ => random.Next()).Take(1 + (round % 3 == 2 ? 1 : 0)).ToArray();
            fixture.Faults.Arm(faults);
            var what = $"round {round} ({(key is null ? "unkeyed" : "keyed")}, faults {string.Join(", ", faults)})";

            Reply claim;
            var failures = 0;
            while ((claim = await Api.ClaimWithProofAsync(session, key)).Status != 200)
            {
                Assert.True(claim.Status == 500, $"{what}: a failed claim answered {claim.Status} {claim.Text}");
                Assert.True(++failures <= faults.Length, $"{what}: more failures than faults injected");
                // Nothing final happened: the desktop still sees its session approved.
                Assert.Equal("approved", (await Api.SnapshotAsync(session)).EnsureStatus(200).Body.GetProperty("state").GetString());
            }
            Assert.True(failures == faults.Length, $"{what}: {failures} failed claims for {faults.Length} faults");
            Assert.Equal(key is null ? "Bearer" : "DPoP", claim.Body.GetProperty("tokenType").GetString());
            var deviceId = claim.Body.GetProperty("device").GetProperty("id").GetString()!;
            devices.Add(deviceId);

            // Exactly one device more for this session, not signed out.
            var listed = (await Api.SendAsync(HttpMethod.Get, "/v1/devices", null, phone.AccessToken)).EnsureStatus(200).Body.EnumerateArray().ToList();
            Assert.True(listed.Count == devices.Count, $"{what}: {listed.Count} devices listed for {devices.Count} expected");
            Assert.Equal(devices.Order(), listed.Select(d => d.GetProperty("id").GetString()!).Order());
            Assert.DoesNotContain(listed, d => d.GetProperty("revoked").GetBoolean());

            // Its token pair works: the access token on a phone call, the refresh token once.
            var access = claim.Body.GetProperty("accessToken").GetString()!;
            var refresh = claim.Body.GetProperty("refreshToken").GetString()!;
            var refreshUrl = Api.Url("/v1/auth/refresh");
            if (key is null)
            {
                (await Api.SendAsync(HttpMethod.Get, "/v1/me", null, access)).EnsureStatus(200);
                (await Api.RefreshAsync(refresh)).EnsureStatus(200);
            }
            else
            {
                (await Api.GetBoundAsync("/v1/me", access, key)).EnsureStatus(200);
                (await Api.RefreshAsync(refresh, key.Proof("POST", refreshUrl))).EnsureStatus(200);
            }
            // Confirmed is final.
            var again = await Api.ClaimWithProofAsync(session, key);
            Assert.Equal((410, "already_claimed"), (again.Status, again.Code));
            Assert.Equal("completed", (await Api.SnapshotAsync(session)).EnsureStatus(200).Body.GetProperty("state").GetString());
        }
        Assert.True(fixture.Faults.Fired >= Rounds, $"only {fixture.Faults.Fired} faults fired in {Rounds} rounds");
    }

    [Fact]
    public async Task Two_claims_of_the_same_desktop_at_once_one_gets_the_grant_and_its_refresh_token_is_the_valid_one()
    {
        fixture.Faults.Arm();
        var phone = await Api.NewPhoneAsync();
        for (var round = 0; round < Rounds; round++)
        {
            using var key = new DpopKey();
            var session = await Api.ApprovedKeyedSessionAsync(phone.AccessToken, key);
            var claims = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ => Task.Run(() => Api.ClaimWithProofAsync(session, key))));

            var won = Assert.Single(claims, c => c.Status == 200);
            var lost = Assert.Single(claims, c => c.Status != 200);
            Assert.Equal((410, "already_claimed"), (lost.Status, lost.Code));
            // The grant answered is the latest: its refresh token was not rotated out by the other claim.
            (await Api.RefreshAsync(won.Body.GetProperty("refreshToken").GetString()!, key.Proof("POST", Api.Url("/v1/auth/refresh")))).EnsureStatus(200);
            (await Api.GetBoundAsync("/v1/me", won.Body.GetProperty("accessToken").GetString()!, key)).EnsureStatus(200);
        }
        var listed = (await Api.SendAsync(HttpMethod.Get, "/v1/devices", null, phone.AccessToken)).EnsureStatus(200).Body;
        Assert.Equal(1 + Rounds, listed.GetArrayLength());
    }

    [Fact]
    public async Task A_grant_left_pending_when_the_claim_window_ends_signs_its_device_out()
    {
        var faults = new ClaimFaults();
        await using var node = await GatewayNode.StartAsync(
            new Dictionary<string, string?> { ["QrOrleans:QrSession:ClaimWindow"] = "00:00:03" },
            b => b.Services.AddSingleton<IIncomingGrainCallFilter>(faults));
        var api = new ApiClient(node.Http);
        using var key = new DpopKey();
        var phone = await api.NewPhoneAsync();
        var session = await api.ApprovedKeyedSessionAsync(phone.AccessToken, key);

        faults.Arm(ClaimFaults.Point.AfterAddDevice);
        (await api.ClaimWithProofAsync(session, key)).EnsureStatus(500);
        var pending = (await api.SendAsync(HttpMethod.Get, "/v1/devices", null, phone.AccessToken)).EnsureStatus(200).Body.EnumerateArray()
            .Single(d => d.GetProperty("id").GetString() != phone.DeviceId);
        Assert.False(pending.GetProperty("revoked").GetBoolean());

        await QrOrleans.Tests.Cluster.Diagnostics.EventuallyAsync(TimeSpan.FromSeconds(15), async () =>
            (await api.SnapshotAsync(session)).Body.GetProperty("state").GetString() == "expired", () => "the session expired");
        var after = (await api.SendAsync(HttpMethod.Get, "/v1/devices", null, phone.AccessToken)).EnsureStatus(200).Body.EnumerateArray()
            .Single(d => d.GetProperty("id").GetString() == pending.GetProperty("id").GetString());
        Assert.True(after.GetProperty("revoked").GetBoolean(), "the undelivered device is still signed in");
        var late = await api.ClaimWithProofAsync(session, key);
        Assert.Equal((410, "qr_expired"), (late.Status, late.Code));
    }
}
