using QrOrleans.Grains.Connectors.Sandbox;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Accounts;

/// <summary>The operator's account calls: shapes, validation, errors, export/import, unlinking.</summary>
public sealed class AccountsApiTests(FleetNodeFixture fixture) : IClassFixture<FleetNodeFixture>
{
    private Fleet Fleet => fixture.Fleet;

    [Fact]
    public async Task An_account_shows_its_state_and_budget_but_never_its_secrets()
    {
        await using var owner = await WebhookReceiver.StartAsync();
        var id = Fleet.NewId("shape");
        var created = await Fleet.CreateAsync(id, owner, capacity: 7, displayName: "Support bot");
        Assert.Equal($"/v1/accounts/{id}", created.Headers.Location?.OriginalString);
        Assert.Equal("unlinked", created.Body.GetProperty("state").GetString());
        await Fleet.LinkAsync(Fleet.NewId("other"), owner);
        (await Fleet.PairAsync(id)).EnsureStatus(202);
        await Fleet.WaitForStateAsync(id, "connected");

        var got = (await Fleet.GetAsync(id)).EnsureStatus(200);
        var account = got.Body;
        Assert.Equal(["displayName", "holder", "id", "linkedAt", "owner", "platform", "rateBudget", "state", "stateSince", "version"],
            account.EnumerateObject().Select(p => p.Name).Order());
        Assert.Equal(("sandbox", "Support bot"), (account.GetProperty("platform").GetString(), account.GetProperty("displayName").GetString()));
        Assert.Equal(7, account.GetProperty("rateBudget").GetProperty("capacity").GetInt32());
        Assert.Equal(owner.Url, account.GetProperty("owner").GetProperty("webhookUrl").GetString());
        var list = (await Fleet.Api.SendAsync(HttpMethod.Get, "/v1/accounts", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200);
        Assert.Contains(list.Body.EnumerateArray(), a => a.GetProperty("id").GetString() == id);
        foreach (var text in new[] { got.Text, list.Text })
        {
            Assert.DoesNotContain(Fleet.WebhookSecret, text, StringComparison.Ordinal);
            Assert.DoesNotContain("sbx.", text, StringComparison.Ordinal); // the sandbox's session credentials
            Assert.DoesNotContain("webhookSecret", text, StringComparison.Ordinal);
        }

        // An update may leave the secret out: webhooks stay signed with the one set before.
        var updated = (await Fleet.PutAsync(id, new { displayName = "Renamed" })).EnsureStatus(200);
        Assert.Equal(("Renamed", "connected"), (updated.Body.GetProperty("displayName").GetString(), updated.Body.GetProperty("state").GetString()));
        var cluster = (await Fleet.Api.SendAsync(HttpMethod.Get, "/v1/cluster", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200);
        Assert.True(cluster.Body.GetProperty("grains").GetProperty("linkedAccount").GetProperty("connected").GetInt32() >= 2);
        Assert.False(cluster.Body.GetProperty("grains").GetProperty("linkedAccount").TryGetProperty("deleted", out _));
    }

    [Fact]
    public async Task Every_problem_of_a_put_is_named_at_once()
    {
        var bad = await Fleet.PutAsync("valid-id", new
        {
            platform = "myspace",
            displayName = "",
            owner = new { webhookUrl = "ftp://owner.example/hook", webhookSecret = "short" },
            rateBudget = new { capacity = 0, refillPerMinute = -1 },
            pairing = new { maxCycles = 0, qrTtlSeconds = 100_000 },
        });
        Assert.Equal((400, "validation_failed"), bad.Of());
        var detail = bad.Body.GetProperty("detail").GetString()!;
        foreach (var field in new[] { "platform", "displayName", "owner.webhookUrl", "owner.webhookSecret", "rateBudget.capacity",
                     "rateBudget.refillPerMinute", "pairing.maxCycles", "pairing.qrTtlSeconds" })
        {
            Assert.Contains(field + " ", detail, StringComparison.Ordinal);
        }

        var connector = await Fleet.PutAsync("valid-id", new
        {
            platform = "sandbox",
            owner = new { webhookUrl = "https://owner.example/hook", webhookSecret = Fleet.WebhookSecret },
            connector = new { failWith = "lightning", autoConfirm = "yes", colour = "blue" },
        });
        Assert.Equal((400, "validation_failed"), connector.Of());
        Assert.Contains("connector.failWith", connector.Text, StringComparison.Ordinal);
        Assert.Contains("connector.autoConfirm", connector.Text, StringComparison.Ordinal);
        Assert.Contains("connector.colour", connector.Text, StringComparison.Ordinal);

        Assert.Equal((400, "validation_failed"), (await Fleet.PutAsync("Not Valid!", new { platform = "sandbox" })).Of());
        var incomplete = await Fleet.PutAsync(Fleet.NewId("incomplete"), new { platform = "sandbox" });
        Assert.Equal((400, "validation_failed"), incomplete.Of());
        Assert.Contains("owner.webhookSecret", incomplete.Text, StringComparison.Ordinal);
        Assert.Equal((404, "not_found"), (await Fleet.GetAsync("valid-id")).Of()); // nothing was created
    }

    [Fact]
    public async Task Calls_need_the_operator_key_and_an_existing_account()
    {
        var anonymous = await Fleet.Api.SendAsync(HttpMethod.Get, "/v1/accounts", null);
        Assert.Equal((401, "unauthenticated"), anonymous.Of());
        Assert.Equal((401, "unauthenticated"), (await Fleet.Api.SendAsync(HttpMethod.Get, "/v1/accounts/x", null, apiKey: "wrong")).Of());
        var missing = Fleet.NewId("missing");
        Assert.Equal((404, "not_found"), (await Fleet.GetAsync(missing)).Of());
        Assert.Equal((404, "not_found"), (await Fleet.PairAsync(missing)).Of());
        Assert.Equal((404, "not_found"), (await Fleet.SendAsync(missing)).Of());
        Assert.Equal((404, "not_found"), (await Fleet.DeleteAsync(missing)).Of());
        Assert.Equal((404, "not_found"), (await Fleet.GetAsync("NOT-an-id")).Of());
    }

    [Fact]
    public async Task Pairing_sending_stopping_and_starting_check_the_state_they_start_from()
    {
        await using var owner = await WebhookReceiver.StartAsync();
        var id = Fleet.NewId("states");
        await Fleet.CreateAsync(id, owner, new { autoConfirm = false });
        Assert.Equal((409, "not_connected"), (await Fleet.SendAsync(id)).Of());
        (await Fleet.PairAsync(id)).EnsureStatus(202);
        (await Fleet.PairAsync(id)).EnsureStatus(202); // the same ceremony
        await owner.WaitForEventAsync("pairing.qr");
        SandboxPlatform.Shared.Scan(id); // the owner scans and confirms on their phone
        await Fleet.WaitForStateAsync(id, "connected");
        Assert.Equal((409, "invalid_state"), (await Fleet.PairAsync(id)).Of());
        Assert.Equal((400, "validation_failed"), (await Fleet.PostAsync($"/v1/accounts/{id}/messages", new { to = "", text = "" })).Of());

        Assert.Equal("stopped", (await Fleet.PostAsync($"/v1/accounts/{id}/stop")).EnsureStatus(200).Body.GetProperty("state").GetString());
        Assert.Equal((409, "not_connected"), (await Fleet.SendAsync(id)).Of());
        Assert.Equal("connected", (await Fleet.PostAsync($"/v1/accounts/{id}/start")).EnsureStatus(200).Body.GetProperty("state").GetString());
        Assert.Equal((409, "invalid_state"), (await Fleet.PostAsync($"/v1/accounts/{id}/start")).Of());
        (await Fleet.SendAsync(id)).EnsureStatus(202);
        Assert.Equal(["pairing.qr", "pairing.scanned", "pairing.withdrawn", "account.connected"],
            (await owner.WaitForEventAsync("account.connected")).Select(d => d.Event));
    }

    [Fact]
    public async Task Exported_credentials_import_under_their_passphrase_and_are_checked()
    {
        await using var owner = await WebhookReceiver.StartAsync();
        var id = Fleet.NewId("export");
        await Fleet.LinkAsync(id, owner);
        Assert.Equal((400, "validation_failed"), (await Fleet.PostAsync($"/v1/accounts/{id}/export", new { passphrase = "short" })).Of());
        var exported = (await Fleet.PostAsync($"/v1/accounts/{id}/export", new { passphrase = "correct horse battery staple" })).EnsureStatus(200);
        var sealedString = exported.Body.GetProperty("sealed").GetString()!;
        Assert.DoesNotContain("sbx.", sealedString, StringComparison.Ordinal);

        var wrong = await Fleet.PostAsync($"/v1/accounts/{id}/import", new { @sealed = sealedString, passphrase = "wrong horse battery staple" });
        Assert.Equal("wrong_passphrase", wrong.Code);
        Assert.Equal("connected", await Fleet.StateAsync(id));

        // The platform forgets the session: importing it checks it and finds it dead.
        SandboxPlatform.Shared.RevokeSessions(id);
        var dead = (await Fleet.PostAsync($"/v1/accounts/{id}/import", new { @sealed = sealedString, passphrase = "correct horse battery staple" })).EnsureStatus(200);
        Assert.Equal("bad_credentials", dead.Body.GetProperty("state").GetString());
    }

    [Fact]
    public async Task Deleting_an_account_logs_it_out_wipes_it_and_tells_the_owner()
    {
        await using var owner = await WebhookReceiver.StartAsync();
        var id = Fleet.NewId("bye");
        await Fleet.LinkAsync(id, owner);
        Assert.Equal(1, SandboxPlatform.Shared.SessionCount(id));

        (await Fleet.DeleteAsync(id)).EnsureStatus(204);

        Assert.Equal((404, "not_found"), (await Fleet.GetAsync(id)).Of());
        Assert.Equal(0, SandboxPlatform.Shared.SessionCount(id)); // logged out on the platform
        var delivered = await owner.WaitForEventAsync("account.unlinked");
        Assert.Equal(["pairing.qr", "pairing.scanned", "pairing.withdrawn", "account.connected", "account.unlinked"], delivered.Select(d => d.Event));
        var list = (await Fleet.Api.SendAsync(HttpMethod.Get, "/v1/accounts", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200);
        Assert.DoesNotContain(list.Body.EnumerateArray(), a => a.GetProperty("id").GetString() == id);

        // The id can be used again, for a new account with a live side of its own.
        Assert.Equal("unlinked", (await Fleet.CreateAsync(id, owner)).Body.GetProperty("state").GetString());
        (await Fleet.PairAsync(id)).EnsureStatus(202);
        await Fleet.WaitForStateAsync(id, "connected");
    }
    [Fact]
    public async Task Unlinking_logs_out_and_forgets_the_credentials_but_keeps_the_account_for_a_new_link()
    {
        await using var owner = await WebhookReceiver.StartAsync();
        var id = Fleet.NewId("unlink");
        await Fleet.LinkAsync(id, owner);
        const string passphrase = "correct horse battery staple";
        var before = (await Fleet.PostAsync($"/v1/accounts/{id}/export", new { passphrase })).EnsureStatus(200).Body.GetProperty("sealed").GetString();

        var unlinked = (await Fleet.PostAsync($"/v1/accounts/{id}/unlink")).EnsureStatus(200).Body;

        Assert.Equal(("unlinked", false), (unlinked.GetProperty("state").GetString(), unlinked.TryGetProperty("linkedAt", out _)));
        Assert.Equal(0, SandboxPlatform.Shared.SessionCount(id)); // logged out on the platform
        Assert.Equal("unlinked", await Fleet.StateAsync(id));
        Assert.Contains((await Fleet.Api.SendAsync(HttpMethod.Get, "/v1/accounts", null, apiKey: GatewayNode.AdminKey)).EnsureStatus(200).Body.EnumerateArray(),
            a => a.GetProperty("id").GetString() == id);
        Assert.Equal((409, "no_credentials"), (await Fleet.PostAsync($"/v1/accounts/{id}/export", new { passphrase })).Of());
        Assert.Equal((409, "not_connected"), (await Fleet.SendAsync(id)).Of());
        Assert.Equal("unlinked", (await Fleet.PostAsync($"/v1/accounts/{id}/unlink")).EnsureStatus(200).Body.GetProperty("state").GetString()); // again: nothing changes
        Assert.Equal(["pairing.qr", "pairing.scanned", "pairing.withdrawn", "account.connected", "account.unlinked"],
            (await owner.WaitForEventAsync("account.unlinked")).Select(d => d.Event));

        // The account answers an import: the session exported before the unlink was logged out, and the platform says so.
        var stale = (await Fleet.PostAsync($"/v1/accounts/{id}/import", new { @sealed = before, passphrase })).EnsureStatus(200).Body;
        Assert.Equal("bad_credentials", stale.GetProperty("state").GetString());

        // Pairing links it anew, with the settings it kept, and an import into it connects when the platform accepts the session.
        (await Fleet.PairAsync(id)).EnsureStatus(202);
        var relinked = await Fleet.WaitForStateAsync(id, "connected");
        Assert.Equal((id, 100), (relinked.GetProperty("displayName").GetString(), relinked.GetProperty("rateBudget").GetProperty("capacity").GetInt32()));
        var after = (await Fleet.PostAsync($"/v1/accounts/{id}/export", new { passphrase })).EnsureStatus(200).Body.GetProperty("sealed").GetString();
        Assert.Equal("connected", (await Fleet.PostAsync($"/v1/accounts/{id}/import", new { @sealed = after, passphrase })).EnsureStatus(200)
            .Body.GetProperty("state").GetString());
    }
}
