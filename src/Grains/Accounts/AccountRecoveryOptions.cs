namespace QrOrleans.Grains.Accounts;

/// <summary>
/// How a linked account or an outbox comes back after its silo died without a word: a durable reminder of this
/// period (the cluster's RecoveryReminderPeriod, never below Orleans' minimum reminder period) while it has live
/// work. The silo's fleet watch is the fast path; this is the backstop.
/// </summary>
public sealed record AccountRecoveryOptions(TimeSpan ReminderPeriod);
