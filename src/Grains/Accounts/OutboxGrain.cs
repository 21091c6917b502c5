using Microsoft.Extensions.Logging;
using QrOrleans.Accounts;
using QrOrleans.Runtime;

namespace QrOrleans.Grains.Accounts;

public sealed record PendingDelivery(
    string DeliveryId, string Event, string Body, DateTimeOffset CreatedAt, int Attempts, DateTimeOffset NextAttemptAt, string? LastError);

/// <summary>
/// The deliveries of one account, oldest first. <see cref="Incarnation"/> and <see cref="AcceptedSeq"/> are
/// the last notice accepted, so that a notice handed over twice is queued once.
/// </summary>
public sealed record OutboxState
{
    public WebhookTarget? Target { get; init; }
    public string? Incarnation { get; init; }
    public long AcceptedSeq { get; init; }
    public IReadOnlyList<PendingDelivery> Queue { get; init; } = [];
    public long Delivered { get; init; }

    /// <summary>The account is gone: delete this outbox once the queue is empty.</summary>
    public bool Retired { get; init; }
}

/// <summary>
/// An account's owner webhooks, delivered in order: only the head of the queue is ever sent, from the "deliver"
/// reminder, so at most one delivery is in flight per account (the reminder is claimed by one node at a time,
/// and the HTTP timeout stays below the reminder lease). A failure keeps the head and moves the reminder out by
/// a doubling backoff; a node restart finds the queue and the reminder in storage and carries on.
/// </summary>
public sealed partial class OutboxGrain(
    GrainId id, IGrainRuntime runtime, WebhookSender sender, AccountOptions options, ILogger<OutboxGrain> log)
    : Grain<OutboxState>(id, runtime), IOutboxGrain, IRemindable
{
    private const string DeliverReminder = "deliver";

    public Task AcceptAsync(WebhookTarget target, IReadOnlyList<WebhookNotice> notices, CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            var s = turn.State ?? new OutboxState();
            var next = s.Target == target ? s : s with { Target = target };
            var queue = s.Queue.ToList();
            foreach (var n in notices)
            {
                if (n.Incarnation == next.Incarnation && n.Seq <= next.AcceptedSeq)
                {
                    continue; // handed over before
                }
                queue.Add(new PendingDelivery(n.DeliveryId, n.Event, n.Body, n.CreatedAt, 0, turn.Now, null));
                next = next with { Incarnation = n.Incarnation, AcceptedSeq = n.Seq, Retired = false };
            }
            if (queue.Count > options.OutboxCapacity)
            {
                // Keep the head (it may be in flight) and the newest; drop the oldest waiting ones.
                queue.RemoveRange(1, queue.Count - options.OutboxCapacity);
            }
            if (queue.Count != s.Queue.Count)
            {
                next = next with { Queue = queue };
                if (s.Queue.Count == 0)
                {
                    turn.SetReminder(DeliverReminder, turn.Now); // nothing was queued, so nothing is in flight
                }
            }
            if (!ReferenceEquals(next, s) || turn.State is null)
            {
                turn.State = next;
            }
            return true;
        }, ct);

    public Task RetireAsync(CancellationToken ct) =>
        Transition<bool>(turn =>
        {
            if (turn.State is { } s)
            {
                turn.State = s.Queue.Count == 0 ? null : s with { Retired = true };
            }
            return true;
        }, ct);

    public async Task<OutboxStatus> GetStatusAsync(CancellationToken ct)
    {
        var s = (await ReadAsync(ct).ConfigureAwait(false))?.State ?? new OutboxState();
        var head = s.Queue.FirstOrDefault();
        return new OutboxStatus(s.Queue.Count, s.Delivered, head?.Event, head?.Attempts ?? 0, head?.LastError);
    }

    public async Task ReceiveReminderAsync(string name, DateTimeOffset dueAt, CancellationToken ct)
    {
        if (await ReadAsync(ct).ConfigureAwait(false) is not { State: { Target: { } target } s } || s.Queue.Count == 0)
        {
            return;
        }
        var head = s.Queue[0];
        if (head.NextAttemptAt > Runtime.Time.GetUtcNow())
        {
            await Transition<bool>(turn =>
            {
                turn.SetReminder(DeliverReminder, head.NextAttemptAt); // fired early (clock skew): back to the backoff
                return true;
            }, ct).ConfigureAwait(false);
            return;
        }
        var result = await sender.SendAsync(target, head.DeliveryId, head.Event, head.Body, ct).ConfigureAwait(false);
        if (!result.Delivered)
        {
            LogFailed(log, head.Event, head.DeliveryId, Id.Key, head.Attempts + 1, result.Error);
        }
        await Transition<bool>(turn =>
        {
            if (turn.State is not { } now || now.Queue.FirstOrDefault()?.DeliveryId != head.DeliveryId)
            {
                return false; // someone else finished it meanwhile
            }
            if (result.Delivered)
            {
                var rest = now.Queue.Skip(1).ToArray();
                if (rest.Length > 0)
                {
                    turn.SetReminder(DeliverReminder, turn.Now);
                }
                turn.State = rest.Length == 0 && now.Retired ? null : now with { Queue = rest, Delivered = now.Delivered + 1 };
                return true;
            }
            var attempts = head.Attempts + 1;
            var retryAt = turn.Now + AccountOptions.Backoff(options.WebhookRetryBase, options.WebhookRetryMax, attempts);
            turn.State = now with { Queue = [head with { Attempts = attempts, NextAttemptAt = retryAt, LastError = result.Error }, .. now.Queue.Skip(1)] };
            turn.SetReminder(DeliverReminder, retryAt);
            return false;
        }, ct).ConfigureAwait(false);
    }

    [LoggerMessage(LogLevel.Information, "Webhook {Event} ({Delivery}) of account {Account} failed on attempt {Attempt}: {Error}; retrying")]
    private static partial void LogFailed(ILogger log, string @event, string delivery, string account, int attempt, string? error);
}
