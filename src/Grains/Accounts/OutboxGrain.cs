using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Storage;
using QrOrleans.Accounts;

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
/// An account's owner webhooks, delivered in order: only the head of the queue is ever sent, one at a time. The
/// send runs on an interleaving timer, so the account handing over new notices never waits behind a slow
/// receiver; every change of the queue is one write, made under a gate so interleaved writes never race. A
/// failure keeps the head and retries it after a doubling backoff. While anything is queued a durable reminder
/// stands by, so that a node restart (or the death of this silo) finds queue and reminder in storage and carries on.
/// </summary>
public sealed partial class OutboxGrain(
    [PersistentState("outbox", OrleansNames.Storage)] IPersistentState<OutboxState> state,
    WebhookSender sender,
    ICredentialVault vault,
    AccountOptions options,
    AccountRecoveryOptions recovery,
    [FromKeyedServices(OrleansNames.Clock)] TimeProvider time,
    ILogger<OutboxGrain> log)
    : Grain, IOutboxGrain, IRemindable
{
    private const string DeliverReminder = "deliver";

    private readonly SemaphoreSlim _gate = new(1, 1);
    private IGrainTimer? _deliver;
    private bool _sending;
    private bool? _reminder;
    private Task _background = Task.CompletedTask;

    private string Key => this.GetPrimaryKeyString();

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (state.State.Target is { LegacySecret: not null } legacy)
        {
            // An outbox stored before webhook secrets were sealed: sealed now, in one write.
            state.State = state.State with { Target = WebhookSecrets.Sealed(vault, Key, legacy) };
            await state.PersistAsync(this).ConfigureAwait(true);
        }
        Schedule();
    }

    public async Task AcceptAsync(WebhookTarget target, IReadOnlyList<WebhookNotice> notices, CancellationToken ct)
    {
        await _gate.WaitAsync(ct).ConfigureAwait(true);
        try
        {
            var s = state.State;
            // A node not yet upgraded hands over a plain-text secret: it is stored sealed all the same.
            target = WebhookSecrets.Sealed(vault, Key, target);
            var next = s.Target == target ? s : s with { Target = target };
            var queue = s.Queue.ToList();
            var now = time.GetUtcNow();
            foreach (var n in notices)
            {
                if (n.Incarnation == next.Incarnation && n.Seq <= next.AcceptedSeq)
                {
                    continue; // handed over before
                }
                queue.Add(new PendingDelivery(n.DeliveryId, n.Event, n.Body, n.CreatedAt, 0, now, null));
                next = next with { Incarnation = n.Incarnation, AcceptedSeq = n.Seq, Retired = false };
            }
            if (queue.Count > options.OutboxCapacity)
            {
                // Keep the head (it may be in flight) and the newest; drop the oldest waiting ones.
                queue.RemoveRange(1, queue.Count - options.OutboxCapacity);
            }
            if (queue.Count != s.Queue.Count || queue.Where((d, i) => d.DeliveryId != s.Queue[i].DeliveryId).Any())
            {
                next = next with { Queue = queue };
            }
            if (!ReferenceEquals(next, s) || !state.RecordExists)
            {
                state.State = next;
                await state.PersistAsync(this).ConfigureAwait(true);
            }
        }
        finally
        {
            _gate.Release();
        }
        Schedule();
    }

    public async Task RetireAsync(CancellationToken ct)
    {
        await _gate.WaitAsync(ct).ConfigureAwait(true);
        try
        {
            if (!state.RecordExists)
            {
                return;
            }
            if (state.State.Queue.Count == 0)
            {
                await state.DeleteAsync(this).ConfigureAwait(true);
            }
            else
            {
                state.State = state.State with { Retired = true };
                await state.PersistAsync(this).ConfigureAwait(true);
            }
        }
        finally
        {
            _gate.Release();
        }
        Schedule();
    }

    public Task ResumeAsync(CancellationToken ct) => Task.CompletedTask; // activating schedules what is queued

    public Task<OutboxStatus> GetStatusAsync(CancellationToken ct)
    {
        var s = state.State;
        var head = s.Queue.FirstOrDefault();
        return Task.FromResult(new OutboxStatus(s.Queue.Count, s.Delivered, head?.Event, head?.Attempts ?? 0, head?.LastError));
    }

    public Task ReceiveReminder(string reminderName, TickStatus status)
    {
        Schedule();
        return Task.CompletedTask;
    }

    /// <summary>Sends the head if it is due; otherwise sets the timer for when it is.</summary>
    private async Task DeliverAsync(CancellationToken ct)
    {
        if (_sending || state.State is not { Target: { } target, Queue: [var head, ..] })
        {
            return;
        }
        if (head.NextAttemptAt > time.GetUtcNow())
        {
            Schedule();
            return;
        }
        _sending = true;
        WebhookResult result;
        try
        {
            result = await sender.SendAsync(Key, target, head.DeliveryId, head.Event, head.Body, ct).ConfigureAwait(true);
        }
        finally
        {
            _sending = false;
        }
        if (!result.Delivered)
        {
            LogFailed(log, head.Event, head.DeliveryId, Key, head.Attempts + 1, result.Error);
        }
        await _gate.WaitAsync(CancellationToken.None).ConfigureAwait(true);
        try
        {
            var now = state.State;
            if (now.Queue.FirstOrDefault()?.DeliveryId != head.DeliveryId)
            {
                return; // dropped meanwhile (the queue overflowed)
            }
            if (result.Delivered)
            {
                var rest = now.Queue.Skip(1).ToArray();
                if (rest.Length == 0 && now.Retired)
                {
                    await state.DeleteAsync(this).ConfigureAwait(true);
                }
                else
                {
                    state.State = now with { Queue = rest, Delivered = now.Delivered + 1 };
                    await state.PersistAsync(this).ConfigureAwait(true);
                }
            }
            else
            {
                var attempts = head.Attempts + 1;
                var retryAt = time.GetUtcNow() + AccountOptions.Backoff(options.WebhookRetryBase, options.WebhookRetryMax, attempts);
                state.State = now with { Queue = [head with { Attempts = attempts, NextAttemptAt = retryAt, LastError = result.Error }, .. now.Queue.Skip(1)] };
                await state.PersistAsync(this).ConfigureAwait(true);
            }
        }
        finally
        {
            _gate.Release();
        }
        Schedule();
    }

    /// <summary>The timer for the head's next attempt, and the reminder while anything is queued.</summary>
    private void Schedule()
    {
        var head = state.State.Queue.FirstOrDefault();
        if (!_sending)
        {
            // A fresh one-shot timer each time, so that setting it from inside its own callback never depends on how a running timer treats a change.
            _deliver?.Dispose();
            var wait = head is null ? (TimeSpan?)null : head.NextAttemptAt - time.GetUtcNow();
            _deliver = wait is { } w
                ? this.RegisterGrainTimer(DeliverAsync, new GrainTimerCreationOptions(w > TimeSpan.Zero ? w : TimeSpan.Zero, Timeout.InfiniteTimeSpan) { Interleave = true })
                : null;
        }
        var needed = head is not null;
        if (_reminder != needed)
        {
            // Not awaited: the reminder service may sit on a silo that just died, and deliveries must not wait for it.
            _background = After(_background, () => SyncReminderAsync(needed));
        }
    }

    private static async Task After(Task previous, Func<Task> work)
    {
        await previous.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing | ConfigureAwaitOptions.ContinueOnCapturedContext);
        await work().ConfigureAwait(true);
    }

    private async Task SyncReminderAsync(bool needed)
    {
        if (_reminder == needed)
        {
            return;
        }
        try
        {
            await this.KeepReminderAsync(DeliverReminder, recovery.ReminderPeriod, needed).ConfigureAwait(true);
            _reminder = needed;
        }
        catch (Exception e) when (e is not InconsistentStateException)
        {
            LogReminderFailed(log, Key, e);
        }
    }

    [LoggerMessage(LogLevel.Information, "Webhook {Event} ({Delivery}) of account {Account} failed on attempt {Attempt}: {Error}; retrying")]
    private static partial void LogFailed(ILogger log, string @event, string delivery, string account, int attempt, string? error);

    [LoggerMessage(LogLevel.Warning, "Outbox {Account}: the delivery reminder could not be updated")]
    private static partial void LogReminderFailed(ILogger log, string account, Exception e);
}
