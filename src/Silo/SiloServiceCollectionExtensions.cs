using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using QrOrleans.Grains.QrSessions;
using QrOrleans.Grains.Users;
using QrOrleans.QrSessions;
using QrOrleans.Runtime;
using Npgsql;
using QrOrleans.Silo.Accounts;
using QrOrleans.Silo.Memory;
using QrOrleans.Silo.PostgreSql;
using QrOrleans.Silo.Runtime;
using QrOrleans.Users;

namespace QrOrleans.Silo;

public static class SiloServiceCollectionExtensions
{
    /// <summary>Hosts a silo in this process: the runtime, its provider, the reminder poller and the stream fan-out.</summary>
    public static IServiceCollection AddQrSilo(this IServiceCollection services, Action<SiloOptions> configure)
    {
        var options = new SiloOptions();
        configure(options);
        services.AddSingleton(options);
        services.TryAddSingleton(TimeProvider.System);

        switch (options.Provider)
        {
            case StorageProvider.Memory:
                services.AddSingleton<MemoryGrainStore>();
                services.AddSingleton<IGrainStore>(sp => sp.GetRequiredService<MemoryGrainStore>());
                services.AddSingleton<IReminderTable>(sp => sp.GetRequiredService<MemoryGrainStore>());
                services.AddSingleton<IStreamSource>(sp => sp.GetRequiredService<MemoryGrainStore>());
                services.AddSingleton<IGrainStatistics>(sp => sp.GetRequiredService<MemoryGrainStore>());
                services.AddSingleton<IMembershipTable, MemoryMembershipTable>();
                services.AddSingleton<ILeaseTable, MemoryLeaseTable>();
                break;
            case StorageProvider.PostgreSql:
                if (string.IsNullOrWhiteSpace(options.ConnectionString))
                {
                    throw new InvalidOperationException("QrOrleans:Storage:ConnectionString is required for the PostgreSql provider.");
                }
                services.AddSingleton(_ => NpgsqlDataSource.Create(PostgreSqlConnections.Pooled(options.ConnectionString)));
                // Before every other silo service: the tables must exist first.
                services.AddHostedService<SchemaMigrator>();
                services.AddSingleton<PostgreSqlGrainStore>();
                services.AddSingleton<IGrainStore>(sp => sp.GetRequiredService<PostgreSqlGrainStore>());
                services.AddSingleton<IReminderTable>(sp => sp.GetRequiredService<PostgreSqlGrainStore>());
                services.AddSingleton<IGrainStatistics>(sp => sp.GetRequiredService<PostgreSqlGrainStore>());
                services.AddSingleton<PostgreSqlStreamSource>();
                services.AddSingleton<IStreamSource>(sp => sp.GetRequiredService<PostgreSqlStreamSource>());
                services.AddSingleton<IMembershipTable, PostgreSqlMembershipTable>();
                services.AddSingleton<ILeaseTable, PostgreSqlLeaseTable>();
                break;
        }

        services.AddGrain<IQrSessionGrain, QrSessionGrain>(GrainTypes.QrSession);
        services.AddGrain<IUserGrain, UserGrain>(GrainTypes.User);
        services.AddGrain<IUsernameGrain, UsernameGrain>(GrainTypes.Username);
        services.AddGrain<IDeviceGrain, DeviceGrain>(GrainTypes.Device);
        services.AddGrain<ISigningKeyGrain, SigningKeyGrain>(GrainTypes.SigningKey);
        services.AddLinkedAccounts();
        services.AddGrain<QrOrleans.Audit.IAuditGrain, QrOrleans.Grains.Audit.AuditGrain>(QrOrleans.Audit.AuditGrainTypes.Audit);
        services.TryAddSingleton(new QrOrleans.Grains.Audit.AuditOptions()); // defaults; the gateway registers the configured one

        services.AddSingleton<GrainCatalog>();
        services.AddSingleton<GrainRuntime>();
        services.AddSingleton<IGrainRuntime>(sp => sp.GetRequiredService<GrainRuntime>());
        services.AddSingleton<IGrainFactory>(sp => sp.GetRequiredService<GrainRuntime>());
        services.AddSingleton<StreamHub>();
        services.AddSingleton<IGrainStreams>(sp => sp.GetRequiredService<StreamHub>());
        services.AddHostedService(sp => sp.GetRequiredService<StreamHub>());
        services.AddSingleton<SiloIdentity>();
        services.AddHostedService<MembershipService>();
        services.AddSingleton<ReminderService>();
        services.AddHostedService(sp => sp.GetRequiredService<ReminderService>());
        return services;
    }

    public static IServiceCollection AddGrain<TInterface, TImplementation>(this IServiceCollection services, string typeName)
        where TInterface : IGrain
        where TImplementation : TInterface =>
        services.AddSingleton(new GrainRegistration(typeName, typeof(TInterface), typeof(TImplementation)));
}
