namespace QrOrleans;

/// <summary>
/// <c>GetGrain&lt;T&gt;(string)</c> resolves T's grain interface type by reflection (it reads T's custom attributes)
/// on every call: about 3 % of a busy node's CPU in a profile of ceremonies (docs/benchmarks.md). <see cref="Grain{T}"/>
/// resolves each interface once and builds the same reference from the grain id, for the calls made per request.
/// </summary>
public static class GrainLookup
{
    public static T Grain<T>(this IGrainFactory grains, string key) where T : IGrainWithStringKey
    {
        var (type, interfaceType) = Types<T>.Of(grains);
        return (T)grains.GetGrain(GrainId.Create(type, key), interfaceType);
    }

    private static class Types<T> where T : IGrainWithStringKey
    {
        // Grain and interface types are names derived from the classes: the same for every factory in the process.
        private static (GrainType, GrainInterfaceType)? s_types;

        public static (GrainType, GrainInterfaceType) Of(IGrainFactory grains)
        {
            if (s_types is not { } types)
            {
                var probe = (GrainReference)(object)grains.GetGrain<T>("type-probe");
                s_types = types = (probe.GrainId.Type, probe.InterfaceType);
            }
            return types;
        }
    }
}
