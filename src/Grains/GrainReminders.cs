namespace QrOrleans.Grains;

public static class GrainReminders
{
    /// <summary>
    /// Makes the durable reminder <paramref name="name"/> exist (first tick one <paramref name="period"/> from now)
    /// or not, as <paramref name="needed"/> says. Both are idempotent.
    /// </summary>
    public static Task KeepReminderAsync(this Grain grain, string name, TimeSpan period, bool needed) =>
        needed ? grain.RegisterOrUpdateReminder(name, period, period) : grain.ForgetReminderAsync(name);

    /// <summary>Unregisters the reminder <paramref name="name"/> if the grain has it.</summary>
    public static async Task ForgetReminderAsync(this Grain grain, string name)
    {
        if (await grain.GetReminder(name).ConfigureAwait(true) is { } reminder)
        {
            await grain.UnregisterReminder(reminder).ConfigureAwait(true);
        }
    }
}
