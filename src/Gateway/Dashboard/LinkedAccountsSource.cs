using System.Text.Json;
using QRCoder;
using QrOrleans.Accounts;
using QrOrleans.Gateway.Observability;
using QrOrleans.Grains.Accounts;
using QrOrleans.Runtime;
using QrOrleans.Silo.Runtime;

namespace QrOrleans.Gateway.Dashboard;

/// <summary>A linked account as the dashboard lists it (the fields of GET /v1/accounts that matter at a glance).</summary>
public sealed record LinkedAccountRow(
    string Id, string Platform, string DisplayName, string State, DateTimeOffset StateSince, int? PairingCycle, int? MaxCycles,
    DateTimeOffset? CooldownUntil, int RateAvailable, int RateCapacity, string? Holder, string? LastErrorClass,
    DateTimeOffset? LastErrorAt);

/// <summary>The current QR of an account that is pairing, as its owner is shown it; gone when the ceremony ends.</summary>
public sealed record InboxItem(string AccountId, int Cycle, int MaxCycles, DateTimeOffset ExpiresAt, string Caption, string QrSvg);

/// <param name="Available">Whether this build has linked accounts at all (the agent fleet).</param>
public sealed record LinkedAccountsView(bool Available, IReadOnlyList<LinkedAccountRow> Accounts, IReadOnlyList<InboxItem> Inbox);

/// <summary>A pairing QR an account grain committed on some node (published in that silo's stats row).</summary>
public sealed record PairingQr(string AccountId, int Cycle, int MaxCycles, DateTimeOffset ExpiresAt, string Caption, string QrContent, DateTimeOffset At);

/// <summary>Where the dashboard's linked-accounts panel and owner inbox come from.</summary>
public interface ILinkedAccountsSource
{
    /// <param name="published">The pairing QRs every silo published.</param>
    Task<LinkedAccountsView> GetAsync(IReadOnlyList<PairingQr> published, CancellationToken ct);
}

/// <summary>
/// The agent fleet: the accounts as GET /v1/accounts reads them (every leasable account row, then each
/// account grain's view), and the owner inbox: for each account that is pairing now, the QR of its current
/// cycle, as the pairing.qr notice carried it. A refreshed QR replaces the previous one (a newer cycle); a
/// finished ceremony withdraws it (the account leaves pairing, or its view stops naming a QR expiry).
/// </summary>
public sealed class FleetAccounts(IGrainFactory grains, ILeaseTable leases) : ILinkedAccountsSource
{
    public async Task<LinkedAccountsView> GetAsync(IReadOnlyList<PairingQr> published, CancellationToken ct)
    {
        var rows = await leases.ListAsync(AccountGrainTypes.Account, ct).ConfigureAwait(false);
        var views = new List<AccountView>(rows.Count);
        foreach (var chunk in rows.Chunk(32))
        {
            var read = await Task.WhenAll(chunk.Select(r => grains.GetGrain<ILinkedAccountGrain>(r.Key).GetAsync(ct))).ConfigureAwait(false);
            views.AddRange(read.OfType<AccountView>());
        }
        var accounts = views.OrderBy(v => v.Id, StringComparer.Ordinal).Select(v => new LinkedAccountRow(
            v.Id, v.Platform, v.DisplayName, v.State, v.StateSince, v.Pairing?.Cycle, v.Pairing?.MaxCycles, v.CooldownUntil,
            v.RateBudget.Available, v.RateBudget.Capacity, v.Holder, v.LastError?.Class, v.LastError?.At)).ToList();
        var inbox = new List<InboxItem>();
        foreach (var v in views.Where(v => v.State == AccountStates.Pairing && v.Pairing is { QrExpiresAt: not null }))
        {
            var current = published.Where(q => q.AccountId == v.Id && q.Cycle == v.Pairing!.Cycle).MaxBy(q => q.At);
            if (current is not null)
            {
                inbox.Add(new InboxItem(v.Id, current.Cycle, current.MaxCycles, current.ExpiresAt, current.Caption, Svg(current.QrContent)));
            }
        }
        return new LinkedAccountsView(true, accounts, inbox);
    }

    private static string Svg(string content)
    {
        using var data = QRCodeGenerator.GenerateQrCode(content, QRCodeGenerator.ECCLevel.M);
        return new SvgQRCode(data).GetGraphic(4);
    }
}

/// <summary>
/// Sees each committed turn of an account grain on this node and keeps the pairing QRs its owner notices carry,
/// so the dashboard of any node can show the owner inbox (the QR itself is never in the account's view).
/// </summary>
public sealed class PairingQrWatch(NodeStats stats) : ITurnCommitObserver
{
    public void OnCommitted(GrainId grain, long version, byte[]? previousState, byte[]? state)
    {
        if (grain.Type != AccountGrainTypes.Account || state is null)
        {
            return;
        }
        var account = JsonSerializer.Deserialize<LinkedAccountState>(state, GrainJson.Options);
        foreach (var notice in account?.Notices ?? [])
        {
            if (notice.Event == WebhookEvents.PairingQr
                && JsonSerializer.Deserialize<PairingQrEvent>(notice.Body, GrainJson.Options) is { } qr)
            {
                stats.PairingQrShown(new PairingQr(grain.Key, qr.Cycle, qr.MaxCycles, qr.ExpiresAt, qr.Caption, qr.QrUrl, qr.At));
            }
        }
    }
}
