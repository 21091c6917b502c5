using QrOrleans.Accounts;

namespace QrOrleans.Grains.Accounts;

public sealed record AccountDirectoryState
{
    public IReadOnlyList<string> Accounts { get; init; } = [];
}

/// <summary>
/// The ids of every linked account, in order (one grain, key "fleet"). An account adds itself before its creation
/// is written and removes itself once it is gone, so a listed id may name no account (it is skipped by readers)
/// but an account never goes unlisted.
/// </summary>
public sealed class AccountDirectoryGrain(
    [PersistentState("directory", OrleansNames.Storage)] IPersistentState<AccountDirectoryState> state)
    : Grain, IAccountDirectoryGrain
{
    public async Task AddAsync(string accountId, CancellationToken ct)
    {
        var accounts = state.State.Accounts;
        var at = BinarySearch(accounts, accountId);
        if (at >= 0)
        {
            return;
        }
        state.State = state.State with { Accounts = [.. accounts.Take(~at), accountId, .. accounts.Skip(~at)] };
        await state.PersistAsync(this).ConfigureAwait(true);
    }

    public async Task RemoveAsync(string accountId, CancellationToken ct)
    {
        var accounts = state.State.Accounts;
        var at = BinarySearch(accounts, accountId);
        if (at < 0)
        {
            return;
        }
        state.State = state.State with { Accounts = [.. accounts.Take(at), .. accounts.Skip(at + 1)] };
        await state.PersistAsync(this).ConfigureAwait(true);
    }

    // An array: Orleans serializes the runtime type, and a collection expression's own list type is not one it knows.
    public Task<IReadOnlyList<string>> ListAsync(CancellationToken ct) => Task.FromResult<IReadOnlyList<string>>(state.State.Accounts.ToArray());

    private static int BinarySearch(IReadOnlyList<string> sorted, string id)
    {
        int lo = 0, hi = sorted.Count - 1;
        while (lo <= hi)
        {
            var mid = (lo + hi) / 2;
            var c = string.CompareOrdinal(sorted[mid], id);
            if (c == 0)
            {
                return mid;
            }
            if (c < 0)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }
        return ~lo;
    }
}
