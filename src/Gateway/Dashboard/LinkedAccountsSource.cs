using QRCoder;
using Orleans;
using QrOrleans.Accounts;
using QrOrleans.Gateway.Accounts;

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

/// <summary>Where the dashboard's linked-accounts panel and owner inbox come from.</summary>
public interface ILinkedAccountsSource
{
    Task<LinkedAccountsView> GetAsync(CancellationToken ct);
}

/// <summary>
/// The agent fleet: the accounts as GET /v1/accounts reads them (the directory, then each account grain's view),
/// and the owner inbox: for each account that is pairing now, the QR of its current cycle as the account grain
/// holds it. A refreshed QR replaces the previous one (the grain keeps only the current cycle's); a finished
/// ceremony withdraws it (the grain forgets it when the account leaves pairing). The same changes arrive live on
/// each account's stream (<see cref="LinkedAccountChanged"/>, namespace <see cref="AccountStreams.Namespace"/>).
/// </summary>
public sealed class FleetAccounts(IGrainFactory grains) : ILinkedAccountsSource
{
    public async Task<LinkedAccountsView> GetAsync(CancellationToken ct)
    {
        var views = await AccountsApi.ReadAllAsync(grains, ct).ConfigureAwait(false);
        var accounts = views.Select(v => new LinkedAccountRow(
            v.Id, v.Platform, v.DisplayName, v.State, v.StateSince, v.Pairing?.Cycle, v.Pairing?.MaxCycles, v.CooldownUntil,
            v.RateBudget.Available, v.RateBudget.Capacity, v.Holder, v.LastError?.Class, v.LastError?.At)).ToList();
        var pairing = views.Where(v => v.State == AccountStates.Pairing && v.Pairing is { QrExpiresAt: not null }).ToArray();
        var qrs = await Task.WhenAll(pairing.Select(v => grains.GetGrain<ILinkedAccountGrain>(v.Id).GetOwnerQrAsync(ct))).ConfigureAwait(false);
        var inbox = pairing.Zip(qrs)
            .Where(p => p.Second is not null)
            .Select(p => new InboxItem(p.First.Id, p.Second!.Cycle, p.Second.MaxCycles, p.Second.ExpiresAt, p.Second.Caption, Svg(p.Second.QrContent)))
            .ToList();
        return new LinkedAccountsView(true, accounts, inbox);
    }

    private static string Svg(string content)
    {
        using var data = QRCodeGenerator.GenerateQrCode(content, QRCodeGenerator.ECCLevel.M);
        return new SvgQRCode(data).GetGraphic(4);
    }
}
