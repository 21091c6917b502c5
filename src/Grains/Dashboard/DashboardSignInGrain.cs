using Microsoft.Extensions.DependencyInjection;
using QrOrleans.Dashboard;

namespace QrOrleans.Grains.Dashboard;

public sealed record DashboardSignInState
{
    public DateTimeOffset ExpiresAt { get; init; }
}

/// <summary>
/// A dashboard sign-in: begun, then ended by the sign-out or by its expiry, whichever comes first. Its record is in
/// grain storage (Redis in a cluster) and a durable reminder falls due when the cookie ends, so an expired sign-in
/// leaves neither state nor reminder nor activation, even when nobody asks about it again.
/// </summary>
public sealed class DashboardSignInGrain(
    [PersistentState("signIn", OrleansNames.Storage)] IPersistentState<DashboardSignInState> signIn,
    [FromKeyedServices(OrleansNames.Clock)] TimeProvider time)
    : Grain, IDashboardSignInGrain, IRemindable
{
    private const string ExpiryReminder = "expiry";

    /// <summary>
    /// Orleans' floor for a production reminder period. The reminder is forgotten at its first tick; the period only
    /// matters if forgetting it failed, and then it tries again a minute later.
    /// </summary>
    private static readonly TimeSpan RetryPeriod = TimeSpan.FromMinutes(1);

    public async Task BeginAsync(DateTimeOffset expiresAt, CancellationToken ct)
    {
        var due = expiresAt - time.GetUtcNow();
        // The reminder first: a record is never stored without the reminder that removes it.
        await this.RegisterOrUpdateReminder(ExpiryReminder, due > TimeSpan.Zero ? due : TimeSpan.Zero, RetryPeriod);
        signIn.State = new DashboardSignInState { ExpiresAt = expiresAt };
        await signIn.PersistAsync(this);
    }

    public async Task<bool> IsActiveAsync(CancellationToken ct)
    {
        if (!signIn.RecordExists)
        {
            DeactivateOnIdle(); // signed out (or never signed in): no activation stays for it
            return false;
        }
        if (signIn.State.ExpiresAt > time.GetUtcNow())
        {
            return true;
        }
        await EndAsync(ct);
        return false;
    }

    public async Task EndAsync(CancellationToken ct)
    {
        // The record first: once it is gone the sign-in is refused everywhere. A reminder left over by a failure
        // after this finds nothing at its tick and forgets itself.
        if (signIn.RecordExists)
        {
            await signIn.DeleteAsync(this);
        }
        await this.ForgetReminderAsync(ExpiryReminder);
        DeactivateOnIdle();
    }

    public async Task ReceiveReminder(string reminderName, TickStatus status)
    {
        if (signIn.RecordExists && signIn.State.ExpiresAt > time.GetUtcNow())
        {
            return; // early by this clock: the next tick ends it
        }
        await EndAsync(CancellationToken.None);
    }
}
