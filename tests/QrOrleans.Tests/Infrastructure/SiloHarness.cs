using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using QrOrleans.Grains.QrSessions;
using QrOrleans.Runtime;
using QrOrleans.Silo;
using QrOrleans.Silo.Runtime;

namespace QrOrleans.Tests.Infrastructure;

/// <summary>A clock the test moves by hand.</summary>
public sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    private DateTimeOffset _now = start;

    public ManualClock() : this(new DateTimeOffset(2026, 11, 22, 12, 0, 0, TimeSpan.Zero)) { }

    public override DateTimeOffset GetUtcNow() => _now;

    public void Advance(TimeSpan by) => _now += by;
}

/// <summary>
/// A silo without its background loops: grains, the in-memory store and reminder table, and a hand-moved
/// clock. <see cref="FireDueRemindersAsync"/> does one pass of what the reminder service does.
/// </summary>
public sealed class SiloHarness : IAsyncDisposable
{
    private readonly ServiceProvider _services;

    public SiloHarness(Action<QrSessionOptions>? configure = null, TimeProvider? clock = null,
        Action<IServiceCollection>? services = null, Action<SiloOptions>? silo = null)
    {
        var options = new QrSessionOptions { PublicOrigin = "https://qr.example" };
        configure?.Invoke(options);
        Clock = clock as ManualClock;
        var collection = new ServiceCollection();
        collection
            .AddLogging(l => l.SetMinimumLevel(LogLevel.Warning))
            .AddSingleton(clock ?? Clock ?? (Clock = new ManualClock()))
            .AddSingleton(options)
            .AddQrSilo(o =>
            {
                o.UseMemory();
                silo?.Invoke(o);
            });
        services?.Invoke(collection);
        _services = collection.BuildServiceProvider();
    }

    public ManualClock? Clock { get; private set; }

    public IServiceProvider Services => _services;

    public IGrainFactory Grains => _services.GetRequiredService<IGrainFactory>();

    public GrainRuntime Runtime => _services.GetRequiredService<GrainRuntime>();

    public IReminderTable Reminders => _services.GetRequiredService<IReminderTable>();

    public IStreamSource Streams => _services.GetRequiredService<IStreamSource>();

    public async Task<int> FireDueRemindersAsync()
    {
        var now = _services.GetRequiredService<TimeProvider>().GetUtcNow();
        var due = await Reminders.ClaimDueAsync(now, TimeSpan.FromSeconds(5), 10_000, CancellationToken.None);
        foreach (var r in due)
        {
            await Runtime.DeliverReminderAsync(r, CancellationToken.None);
            await Reminders.CompleteAsync(r, now, CancellationToken.None);
        }
        return due.Count;
    }

    /// <summary>Runs the provider's start-up work (schema migrations for PostgreSQL); no background loops.</summary>
    public async Task<SiloHarness> PrepareAsync()
    {
        foreach (var migrator in _services.GetServices<Microsoft.Extensions.Hosting.IHostedService>().OfType<Silo.PostgreSql.SchemaMigrator>())
        {
            await migrator.StartAsync(CancellationToken.None);
        }
        return this;
    }

    public ValueTask DisposeAsync() => _services.DisposeAsync();
}
