using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Orleans;
using Orleans.Configuration;
using Orleans.Hosting;
using Orleans.Runtime;
using Orleans.Storage;
using Orleans.TestingHost;
using QrOrleans.Accounts;
using QrOrleans.Grains.Accounts;
using QrOrleans.Grains.Vault;
using QrOrleans.Silo.Accounts;
using QrOrleans.Silo.Hosting;

namespace QrOrleans.Tests.Accounts;

/// <summary>
/// An Orleans TestingHost cluster of the agent fleet: silos configured as the product configures them
/// (UseQrOrleansSilo + AddQrFleet), one vault key, and grain storage that outlives a killed silo, as Redis does
/// (Orleans' memory storage lives in grains, so a killed silo would take part of it along).
/// </summary>
public sealed class FleetCluster : IAsyncDisposable
{
    private FleetCluster(InProcessTestCluster cluster, SharedGrainStorage storage, ICredentialVault vault)
    {
        Cluster = cluster;
        Storage = storage;
        Vault = vault;
    }

    public InProcessTestCluster Cluster { get; }

    public SharedGrainStorage Storage { get; }

    public ICredentialVault Vault { get; }

    public IGrainFactory Grains => Cluster.Client;

    /// <param name="clock">The clock grains read "now" from; null for the real one.</param>
    /// <param name="restartOf">A cluster that was stopped: this one starts on its storage and its vault key, as a restarted cluster on Redis would.</param>
    public static async Task<FleetCluster> StartAsync(short silos, AccountOptions options, FakeTimeProvider? clock = null, FleetCluster? restartOf = null)
    {
        var storage = restartOf?.Storage ?? new SharedGrainStorage();
        var vault = restartOf?.Vault ?? new CredentialVault(new VaultOptions { Keys = { ["1"] = CredentialVault.GenerateKey() }, CurrentVersion = 1 });
        // Stream pub-sub state and reminders: one store and one table for all the silos, as on Redis, so a killed
        // silo takes none of them along. A restarted cluster starts without them, as it did on Orleans' memory providers.
        var store = new LocalStateStore();
        var reminders = new LocalReminderTable();
        var builder = new InProcessTestClusterBuilder(silos);
        builder.ConfigureSilo((_, silo) =>
        {
            silo.Services.AddSingleton(store);
            silo.Services.AddSingleton(reminders);
            // Production's reminder periods (Orleans' 1-minute floor): recovery within seconds must come from the
            // fleet watch, not from a reminder.
            silo.UseQrOrleansSilo(new ClusterSettings
            {
                MinimumReminderPeriod = TimeSpan.FromMinutes(1),
                RecoveryReminderPeriod = TimeSpan.FromMinutes(1),
            });
            silo.AddQrFleet();
            silo.Services.AddSingleton(options);
            silo.Services.AddSingleton<ICredentialVault>(vault);
            silo.Services.AddKeyedSingleton<IGrainStorage>(OrleansNames.Storage, storage);
            if (clock is not null)
            {
                silo.Services.AddKeyedSingleton<TimeProvider>(OrleansNames.Clock, clock);
            }
            // As the Redis provider does: a killed silo is declared dead within a few seconds.
            silo.Configure<ClusterMembershipOptions>(o =>
            {
                o.ProbeTimeout = TimeSpan.FromSeconds(1);
                o.NumMissedProbesLimit = 2;
                o.NumVotesForDeathDeclaration = 1;
                o.TableRefreshTimeout = TimeSpan.FromSeconds(2);
            });
        });
        builder.ConfigureClient(client => client.AddMemoryStreams(OrleansNames.Streams));
        var cluster = builder.Build();
        await cluster.DeployAsync();
        return new FleetCluster(cluster, storage, vault);
    }

    public ILinkedAccountGrain Account(string id) => Grains.GetGrain<ILinkedAccountGrain>(id);

    public IOutboxGrain Outbox(string id) => Grains.GetGrain<IOutboxGrain>(id);

    public async ValueTask DisposeAsync() => await Cluster.DisposeAsync();
}

/// <summary>
/// Grain storage for one test cluster that every silo shares and no silo owns: JSON documents as the product's
/// serializer writes them, with ETags, so a stale activation's write is refused as Redis would refuse it.
/// </summary>
public sealed class SharedGrainStorage : IGrainStorage, ILifecycleParticipant<ISiloLifecycle>
{
    private readonly ConcurrentDictionary<(string State, GrainId Grain), (BinaryData Data, string ETag)> _documents = new();
    private readonly Orleans.Storage.IGrainStorageSerializer _serializer = GrainStateJson.Serializer;
    private long _etag;

    /// <summary>The stored document of a grain, as text.</summary>
    public string? Raw(string stateName, GrainId grain) =>
        _documents.TryGetValue((stateName, grain), out var d) ? d.Data.ToString() : null;

    /// <summary>Stores a document as it is, e.g. as an earlier version of the product wrote it.</summary>
    public void Put(string stateName, GrainId grain, string json) =>
        _documents[(stateName, grain)] = (BinaryData.FromString(json), Interlocked.Increment(ref _etag).ToString(System.Globalization.CultureInfo.InvariantCulture));

    public Task ReadStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        if (_documents.TryGetValue((stateName, grainId), out var d))
        {
            grainState.State = _serializer.Deserialize<T>(d.Data);
            grainState.ETag = d.ETag;
            grainState.RecordExists = true;
        }
        else
        {
            grainState.State = Activator.CreateInstance<T>();
            grainState.ETag = null;
            grainState.RecordExists = false;
        }
        return Task.CompletedTask;
    }

    public Task WriteStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        var etag = Interlocked.Increment(ref _etag).ToString(System.Globalization.CultureInfo.InvariantCulture);
        var data = _serializer.Serialize(grainState.State);
        lock (_documents)
        {
            var key = (stateName, grainId);
            var current = _documents.TryGetValue(key, out var d) ? d.ETag : null;
            if (current != grainState.ETag)
            {
                throw new InconsistentStateException($"ETag mismatch for {grainId}", current ?? "", grainState.ETag ?? "");
            }
            _documents[key] = (data, etag);
        }
        grainState.ETag = etag;
        grainState.RecordExists = true;
        return Task.CompletedTask;
    }

    public Task ClearStateAsync<T>(string stateName, GrainId grainId, IGrainState<T> grainState)
    {
        lock (_documents)
        {
            var key = (stateName, grainId);
            var current = _documents.TryGetValue(key, out var d) ? d.ETag : null;
            if (current != grainState.ETag)
            {
                throw new InconsistentStateException($"ETag mismatch for {grainId}", current ?? "", grainState.ETag ?? "");
            }
            _documents.TryRemove(key, out _);
        }
        grainState.State = Activator.CreateInstance<T>();
        grainState.ETag = null;
        grainState.RecordExists = false;
        return Task.CompletedTask;
    }

    public void Participate(ISiloLifecycle lifecycle)
    {
        // nothing to open or close: the documents live as long as the test
    }
}
