using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Orleans.Dashboard;
using QrOrleans.Gateway.Observability;
using QrOrleans.Gateway.Problems;
using QrOrleans.Grains.QrSessions;

namespace QrOrleans.Gateway.Dashboard;

/// <summary>
/// The cluster dashboard: the page (/dashboard, which holds no data), its sign-in with the operator key, its data
/// (GET /v1/dashboard) and its live feed (hub /hubs/dashboard); and Orleans' own dashboard at /dashboard/orleans/.
/// Everything but the page and the sign-in answers 401 without the cookie of a standing sign-in; a sign-out ends
/// the sign-in on every node, and closes what it holds open (see <see cref="SignInWatch"/>).
/// </summary>
public static class DashboardApi
{
    public const string HubPath = "/hubs/dashboard";
    public const string OrleansPath = "/dashboard/orleans";
    private const string SignInLimit = "dashboard-sign-in";

    public static IServiceCollection AddDashboard(this IServiceCollection services, RateLimitOptions limits)
    {
        services.AddSingleton<DashboardSessions>();
        services.AddSingleton<SignInWatch>();
        services.AddHostedService(sp => sp.GetRequiredService<SignInWatch>());
        services.AddSingleton<ClusterRoster>();
        services.AddSingleton<DashboardQuery>();
        services.TryAddSingleton<ILinkedAccountsSource, FleetAccounts>();
        services.AddSingleton<DashboardFeed>();
        services.AddHostedService(sp => sp.GetRequiredService<DashboardFeed>());
        services.AddHostedService<SiloStatsPublisher>();
        // The silo-side feed of this node's figures: committed session transitions (write conflicts are counted where
        // they are retried, Problems.ConflictRetry). Only a co-hosted silo runs QR session grains; on a Client-role
        // gateway it is inert. TryAddEnumerable: one observer however often this is registered, so no transition counts twice.
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IQrSessionObserver, CeremonyTelemetry>(sp => sp.GetRequiredService<CeremonyTelemetry>()));
        // Guessing the operator key through the form: a few tries a minute per address.
        services.Configure<RateLimiterOptions>(o => o.AddPolicy(SignInLimit, context => limits.Enabled
            ? RateLimitPartition.GetFixedWindowLimiter("ip:" + context.Connection.RemoteIpAddress,
                _ => new FixedWindowRateLimiterOptions { PermitLimit = 10, Window = TimeSpan.FromMinutes(1), QueueLimit = 0 })
            : RateLimitPartition.GetNoLimiter("ip")));
        return services;
    }

    public static WebApplication MapDashboard(this WebApplication app)
    {
        var sessions = app.Services.GetRequiredService<DashboardSessions>();
        var watch = app.Services.GetRequiredService<SignInWatch>();
        // Negotiate, WebSocket, SSE and long-poll requests of the hub all carry the cookie; none passes without it.
        app.UseWhen(context => context.Request.Path.StartsWithSegments(HubPath), hub => hub.Use(async (context, next) =>
        {
            if (!await sessions.IsSignedInAsync(context).ConfigureAwait(false))
            {
                await ProblemResponses.Write(context, Unauthenticated()).ConfigureAwait(false);
                return;
            }
            await next(context).ConfigureAwait(false);
        }));
        // Orleans' dashboard (its page, assets, JSON and log stream) behind the same sign-in. A browser opening it
        // signed out is sent to the sign-in form; anything else gets 401.
        app.UseWhen(context => context.Request.Path.StartsWithSegments(OrleansPath), orleans => orleans.Use(async (context, next) =>
        {
            if (!await sessions.IsSignedInAsync(context).ConfigureAwait(false))
            {
                if (HttpMethods.IsGet(context.Request.Method) && WantsPage(context.Request))
                {
                    context.Response.Headers.CacheControl = "no-store";
                    await new SeeOtherResult("/dashboard").ExecuteAsync(context).ConfigureAwait(false);
                    return;
                }
                await ProblemResponses.Write(context, Unauthenticated()).ConfigureAwait(false);
                return;
            }
            // Its grain-state view reads any grain's stored state: the live QR secret of a pending session, hashes of
            // desktop tokens, linked accounts' sealed credentials. None of that leaves the cluster through a page.
            if (context.Request.Path.StartsWithSegments(OrleansPath + "/GrainState", StringComparison.OrdinalIgnoreCase))
            {
                await ProblemResponses.Write(context, ProblemResponses.Create(403, "forbidden", "Forbidden",
                    "Grain state holds secrets; read grains through the API.")).ConfigureAwait(false);
                return;
            }
            // Its silo views fail with a 500 on an address that is none, and a text/plain 503 on one no silo has.
            if (SiloRouteAddress(context.Request.Path) is { } address && !await IsActiveSiloAsync(context, address).ConfigureAwait(false))
            {
                await ProblemResponses.Write(context, ProblemResponses.Create(404, "not_found", "Not found", "There is no silo at that address.")).ConfigureAwait(false);
                return;
            }
            context.Response.Headers.CacheControl = "no-store";
            context.Response.Headers["X-Frame-Options"] = "DENY";
            // A request that stays open (its log stream) is cut when its sign-in ends.
            using var watched = sessions.IsOperatorKey(context.Request.Headers["X-Api-Key"]) || sessions.SignInOf(context) is not { } signIn
                ? null
                : watch.Watch(signIn, () =>
                {
                    context.Abort();
                    return Task.CompletedTask;
                });
            await next(context).ConfigureAwait(false);
        }));
        if (app.Services.GetRequiredService<Silo.Hosting.ClusterSettings>().OrleansDashboard)
        {
            app.MapOrleansDashboard(OrleansPath).ExcludeFromDescription();
        }
        app.MapGet("/dashboard", Page).ExcludeFromDescription();
        app.MapPost("/dashboard/sign-in", SignInAsync).RequireRateLimiting(SignInLimit).ExcludeFromDescription()
            .ProducesProblems("cross_origin", "unsupported_media_type", "invalid_form", "unauthenticated");
        app.MapPost("/dashboard/sign-out", SignOutAsync).ExcludeFromDescription()
            .ProducesProblems("cross_origin");
        app.MapGet("/v1/dashboard", GetAsync).WithTags("Operator")
            .WithSummary("What the dashboard shows, once")
            .WithDescription("Operator key, or the dashboard's sign-in cookie. Silos, sessions by state, rates and latencies, linked "
                + "accounts; the page follows it live over SignalR.")
            .ProducesProblems("unauthenticated");
        app.MapHub<DashboardHub>(HubPath);
        return app;
    }

    private static IResult Page(HttpContext context, IWebHostEnvironment env)
    {
        var headers = context.Response.Headers;
        headers.CacheControl = "no-store";
        headers["X-Frame-Options"] = "DENY";
        headers["Referrer-Policy"] = "same-origin";
        headers.ContentSecurityPolicy =
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; form-action 'self'";
        return TypedResults.PhysicalFile(Path.Combine(env.WebRootPath, "dashboard.html"), "text/html; charset=utf-8");
    }

    /// <summary>
    /// The sign-in form posts the key (form field "key"), so it never appears in a URL. A browser is sent back to
    /// /dashboard (with ?signin=failed when the key is wrong); a script asking for JSON gets 204 or 401.
    /// </summary>
    private static async Task<IResult> SignInAsync(HttpContext context, DashboardSessions sessions)
    {
        // A page of another site posting here is refused ("null" is what a no-referrer page sends: allowed, since
        // the key in the form is what counts here).
        RequireSameOrigin(context.Request, allowNull: true, "Sign in from the dashboard page of this server.");
        if (!context.Request.HasFormContentType)
        {
            throw new GrainException("unsupported_media_type", 415, "Unsupported media type", "Post the sign-in form (application/x-www-form-urlencoded).");
        }
        IFormCollection form;
        try
        {
            form = await context.Request.ReadFormAsync(context.RequestAborted).ConfigureAwait(false);
        }
        catch (Exception e) when (e is InvalidDataException or IOException and not BadHttpRequestException)
        {
            // The form reader refuses a value it cannot decode (an encoded NUL, a key too long), and the multipart
            // reader a body that ends inside a part (IOException): the client's mistake. A BadHttpRequestException
            // (also an IOException: a body over the size limit) keeps its own answer.
            throw new GrainException("invalid_form", 400, "Malformed form", "The sign-in form could not be read; post it from the dashboard page.");
        }
        var wantsJson = context.Request.Headers.Accept.ToString().Contains("application/json", StringComparison.OrdinalIgnoreCase);
        if (!sessions.IsOperatorKey(form["key"]))
        {
            // A failed attempt leaves no sign-in standing behind a cookie the browser no longer has.
            await sessions.SignOutAsync(context).ConfigureAwait(false);
            return wantsJson ? TypedResults.Problem(Unauthenticated()) : SeeOther("/dashboard?signin=failed");
        }
        await sessions.SignInAsync(context).ConfigureAwait(false);
        return wantsJson ? TypedResults.NoContent() : SeeOther("/dashboard");
    }

    /// <summary>
    /// Ends the cookie's sign-in in the cluster: the next request with it, on any node, is refused, and what it holds
    /// open (the live feed, Orleans' log stream) closes. Protected as the sign-in is, by the origin, and stricter: the
    /// cookie alone is the authority here, so a "null" origin and a cross-site or same-site fetch are refused too
    /// (the cookie being SameSite=Strict, a cross-site post would not carry it anyway).
    /// </summary>
    private static async Task<IResult> SignOutAsync(HttpContext context, DashboardSessions sessions, SignInWatch watch)
    {
        RequireSameOrigin(context.Request, allowNull: false, "Sign out from the dashboard page of this server.");
        if (context.Request.Headers["Sec-Fetch-Site"] is [{ } site] && site is not ("same-origin" or "none"))
        {
            throw CrossOrigin("Sign out from the dashboard page of this server.");
        }
        if (await sessions.SignOutAsync(context).ConfigureAwait(false) is { } signIn)
        {
            await watch.EndedAsync(signIn).ConfigureAwait(false);
        }
        return context.Request.Headers.Accept.ToString().Contains("application/json", StringComparison.OrdinalIgnoreCase)
            ? TypedResults.NoContent()
            : SeeOther("/dashboard");
    }

    private static async Task<Ok<DashboardSnapshot>> GetAsync(HttpContext context, DashboardSessions sessions, DashboardFeed feed) =>
        await sessions.IsSignedInAsync(context).ConfigureAwait(false)
            ? TypedResults.Ok(await feed.CurrentAsync(context.RequestAborted).ConfigureAwait(false))
            : throw Errors.Unauthenticated("Sign in at /dashboard, or send the operator key in the X-Api-Key header.");

    private static void RequireSameOrigin(HttpRequest request, bool allowNull, string detail)
    {
        if (request.Headers.Origin is [{ } origin] && !(allowNull && origin == "null") && !SameOrigin(request, origin))
        {
            throw CrossOrigin(detail);
        }
    }

    private static GrainException CrossOrigin(string detail) => new("cross_origin", 403, "Forbidden", detail);

    private static readonly string[] SiloRoutes = ["HistoricalStats", "SiloProperties", "SiloMetadata", "SiloStats", "SiloCounters"];

    /// <summary>The silo address of an Orleans dashboard path like /dashboard/orleans/SiloStats/{address}, else null.</summary>
    private static string? SiloRouteAddress(PathString path)
    {
        foreach (var route in SiloRoutes)
        {
            if (path.StartsWithSegments(OrleansPath + "/" + route, StringComparison.OrdinalIgnoreCase, out var rest))
            {
                return rest.Value?.TrimStart('/') ?? "";
            }
        }
        return null;
    }

    private static async Task<bool> IsActiveSiloAsync(HttpContext context, string address) =>
        Orleans.Runtime.SiloAddress.TryParse(address, out var silo)
        && (await context.RequestServices.GetRequiredService<IGrainFactory>().GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true).ConfigureAwait(false))
            .ContainsKey(silo);

    private static bool WantsPage(HttpRequest request) =>
        request.Headers.Accept.ToString().Contains("text/html", StringComparison.OrdinalIgnoreCase);

    private static Microsoft.AspNetCore.Mvc.ProblemDetails Unauthenticated() =>
        ProblemResponses.Create(401, "unauthenticated", "Unauthenticated", "Sign in at /dashboard with the operator key.");

    /// <summary>303: the browser follows with a GET, so a reload never re-posts the form.</summary>
    private static IResult SeeOther(string location) => new SeeOtherResult(location);

    private static bool SameOrigin(HttpRequest request, string origin) =>
        Uri.TryCreate(origin, UriKind.Absolute, out var o)
        && string.Equals(o.Scheme, request.Scheme, StringComparison.OrdinalIgnoreCase)
        && string.Equals(o.Authority, request.Host.Value, StringComparison.OrdinalIgnoreCase);

    private sealed class SeeOtherResult(string location) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.StatusCode = StatusCodes.Status303SeeOther;
            httpContext.Response.Headers.Location = location;
            return Task.CompletedTask;
        }
    }
}
