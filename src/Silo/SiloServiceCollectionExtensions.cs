using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using QrOrleans.Grains.QrSessions;
using QrOrleans.Grains.Users;
using QrOrleans.QrSessions;
using QrOrleans.Runtime;
using QrOrleans.Silo.Memory;
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
                break;
            default:
                throw new NotSupportedException($"Storage provider {options.Provider} is not available in this build.");
        }

        services.AddGrain<IQrSessionGrain, QrSessionGrain>(GrainTypes.QrSession);
        services.AddGrain<IUserGrain, UserGrain>(GrainTypes.User);
        services.AddGrain<IUsernameGrain, UsernameGrain>(GrainTypes.Username);
        services.AddGrain<ISigningKeyGrain, SigningKeyGrain>(GrainTypes.SigningKey);

        services.AddSingleton<GrainCatalog>();
        services.AddSingleton<GrainRuntime>();
        services.AddSingleton<IGrainRuntime>(sp => sp.GetRequiredService<GrainRuntime>());
        services.AddSingleton<IGrainFactory>(sp => sp.GetRequiredService<GrainRuntime>());
        services.AddSingleton<StreamHub>();
        services.AddSingleton<IGrainStreams>(sp => sp.GetRequiredService<StreamHub>());
        services.AddHostedService(sp => sp.GetRequiredService<StreamHub>());
        services.AddSingleton<ReminderService>();
        services.AddHostedService(sp => sp.GetRequiredService<ReminderService>());
        return services;
    }

    public static IServiceCollection AddGrain<TInterface, TImplementation>(this IServiceCollection services, string typeName)
        where TInterface : IGrain
        where TImplementation : TInterface =>
        services.AddSingleton(new GrainRegistration(typeName, typeof(TInterface), typeof(TImplementation)));
}
