namespace QrOrleans.Gateway.Pages;

/// <summary>The three web pages of API.md. They are static files; their scripts talk to the public API.</summary>
public static class Pages
{
    public static IEndpointRouteBuilder MapPages(this IEndpointRouteBuilder app)
    {
        // A code opens /l/#<token>: the token stays in the browser, and the page posts it to /v1/qr/scan.
        app.MapGet("/l/", (IWebHostEnvironment env) => Page(env, "link.html")).ExcludeFromDescription();
        // Codes printed before the upgrade carry the token in the path; the page reads it from there too.
        app.MapGet("/l/{token}", (IWebHostEnvironment env) => Page(env, "link.html")).ExcludeFromDescription();
        app.MapGet("/phone", (IWebHostEnvironment env) => Page(env, "phone.html")).ExcludeFromDescription();
        return app;
    }

    private static IResult Page(IWebHostEnvironment env, string file) =>
        TypedResults.PhysicalFile(Path.Combine(env.WebRootPath, file), "text/html; charset=utf-8");
}
