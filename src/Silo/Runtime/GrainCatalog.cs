using Microsoft.Extensions.DependencyInjection;
using QrOrleans.Runtime;

namespace QrOrleans.Silo.Runtime;

/// <summary>A grain type: its name in grain ids, its interface, and how to make an instance for a key.</summary>
public sealed record GrainRegistration(string TypeName, Type Interface, Type Implementation);

/// <summary>Maps grain interfaces and type names to implementations; instances are cheap and made per call.</summary>
public sealed class GrainCatalog
{
    private readonly Dictionary<Type, (string TypeName, ObjectFactory Factory)> _byInterface = [];
    private readonly Dictionary<string, ObjectFactory> _byTypeName = [];
    private readonly IServiceProvider _services;

    public GrainCatalog(IEnumerable<GrainRegistration> registrations, IServiceProvider services)
    {
        _services = services;
        foreach (var r in registrations)
        {
            var factory = ActivatorUtilities.CreateFactory(r.Implementation, [typeof(GrainId)]);
            _byInterface[r.Interface] = (r.TypeName, factory);
            _byTypeName[r.TypeName] = factory;
        }
    }

    public TGrain Get<TGrain>(string key)
    {
        if (!_byInterface.TryGetValue(typeof(TGrain), out var entry))
        {
            throw new InvalidOperationException($"No grain implements {typeof(TGrain).Name}.");
        }
        return (TGrain)entry.Factory(_services, [new GrainId(entry.TypeName, key)]);
    }

    public object Get(GrainId id) =>
        _byTypeName.TryGetValue(id.Type, out var factory)
            ? factory(_services, [id])
            : throw new InvalidOperationException($"No grain type '{id.Type}'.");
}
