using System.Text.Json;

namespace QrOrleans.Runtime;

/// <summary>Marker for grain interfaces handed out by <see cref="IGrainFactory"/>.</summary>
public interface IGrain;

public interface IGrainFactory
{
    TGrain GetGrain<TGrain>(string key) where TGrain : IGrain;
}

/// <summary>A grain that receives durable reminders. Delivery is at least once: handlers are idempotent.</summary>
public interface IRemindable
{
    Task ReceiveReminderAsync(string name, DateTimeOffset dueAt, CancellationToken ct);
}

public interface IGrainRuntime
{
    /// <summary>
    /// Runs <paramref name="body"/> as one turn of the grain: alone for its key on this node, on fresh state,
    /// and commits the state, reminders and events it produced only if nobody else committed meanwhile;
    /// otherwise it runs the body again on the newer state. The body must therefore not have side effects
    /// outside the <see cref="Turn{TState}"/>.
    /// </summary>
    Task<TResult> RunTurnAsync<TState, TResult>(GrainId id, Func<Turn<TState>, TResult> body, CancellationToken ct)
        where TState : class;

    /// <summary>A read outside any turn: the last committed state and its version, or null.</summary>
    Task<(TState State, long Version)?> ReadAsync<TState>(GrainId id, CancellationToken ct) where TState : class;

    TimeProvider Time { get; }
}

/// <summary>The mutable view a turn body works on. Nothing here is persisted unless the turn commits.</summary>
public sealed class Turn<TState> where TState : class
{
    private readonly List<ReminderChange> _reminders = [];
    private string? _event;
    private TState? _state;

    public Turn(GrainId id, TState? state, long version, DateTimeOffset now)
    {
        Id = id;
        _state = state;
        Version = version;
        Now = now;
    }

    public GrainId Id { get; }

    /// <summary>The committed version the turn started from (0 = the grain does not exist yet).</summary>
    public long Version { get; }

    /// <summary>The version the grain will have if this turn commits.</summary>
    public long NextVersion => Version + 1;

    public DateTimeOffset Now { get; }

    public bool Changed { get; private set; }

    /// <summary>The grain's state; assign null to delete the grain.</summary>
    public TState? State
    {
        get => _state;
        set
        {
            _state = value;
            Changed = true;
        }
    }

    public void SetReminder(string name, DateTimeOffset dueAt, TimeSpan? period = null)
    {
        _reminders.Add(new ReminderChange(name, dueAt, period));
        Changed = true;
    }

    public void ClearReminder(string name)
    {
        _reminders.Add(new ReminderChange(name, null, null));
        Changed = true;
    }

    /// <summary>
    /// Publishes a payload on the grain's stream, stamped with <see cref="NextVersion"/>. A turn publishes at
    /// most one event, the state it ends in: a later call in the same turn replaces an earlier one, since
    /// subscribers keep only versions newer than what they hold.
    /// </summary>
    public void Publish<T>(T payload, JsonSerializerOptions options)
    {
        _event = JsonSerializer.Serialize(payload, options);
        Changed = true;
    }

    public TurnEffects Effects() =>
        _reminders.Count == 0 && _event is null
            ? TurnEffects.None
            : new TurnEffects(_reminders.ToArray(), _event is null ? [] : [new StreamEvent(Id, NextVersion, _event)]);
}

/// <summary>Receives a grain's stream on this node. Callbacks must not block: they run on the dispatch loop.</summary>
public interface IStreamObserver
{
    void OnNext(StreamEvent e);

    /// <summary>Events may have been lost (e.g. the database connection dropped): re-read the snapshot.</summary>
    void OnResync();
}

public interface IGrainStreams
{
    IDisposable Subscribe(GrainId grain, IStreamObserver observer);
}
