using System.Collections.Concurrent;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using QrOrleans.Gateway;
using QrOrleans.Tests.Infrastructure;

namespace QrOrleans.Tests.Observability;

/// <summary>
/// Records everything any log provider could write: the formatted message, every state value, the exception
/// text, and the state of every scope begun. One line per entry, "level category: text". Configured by its alias,
/// "Logging:Captured:LogLevel:…", as an operator would configure "Logging:Console:LogLevel:…".
/// </summary>
[ProviderAlias("Captured")]
public sealed class CapturingLoggerProvider : ILoggerProvider
{
    public ConcurrentQueue<(LogLevel Level, string Category, string Text)> Lines { get; } = new();

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private static string Describe(object? state)
    {
        if (state is null)
        {
            return "";
        }
        var text = state.ToString() ?? "";
        if (state is IEnumerable<KeyValuePair<string, object?>> values)
        {
            text += " | " + string.Join(" | ", values.Select(v => $"{v.Key}={Flatten(v.Value)}"));
        }
        return text;
    }

    private static string Flatten(object? value) => value switch
    {
        null => "",
        string s => s,
        System.Collections.IEnumerable items => string.Join(",", items.Cast<object?>().Select(i => i?.ToString())),
        _ => value.ToString() ?? "",
    };

    private sealed class Logger(CapturingLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull
        {
            owner.Lines.Enqueue((LogLevel.None, category, "scope: " + Describe(state)));
            return null;
        }

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner.Lines.Enqueue((logLevel, category, formatter(state, exception) + " | " + Describe(state) + " | " + exception));
    }
}

/// <summary>A gateway like <see cref="GatewayNode"/>, whose logs (at Debug, for every category) go to a capturing provider.</summary>
public sealed class LoggedGateway : IAsyncDisposable
{
    private readonly WebApplication _app;

    private LoggedGateway(WebApplication app, Uri baseAddress, CapturingLoggerProvider logs)
    {
        _app = app;
        BaseAddress = baseAddress;
        Logs = logs;
        Http = new HttpClient { BaseAddress = baseAddress, Timeout = TimeSpan.FromSeconds(30) };
    }

    public Uri BaseAddress { get; }

    public HttpClient Http { get; }

    public CapturingLoggerProvider Logs { get; }

    public IServiceProvider Services => _app.Services;

    public static async Task<LoggedGateway> StartAsync(IDictionary<string, string?>? settings = null, Action<WebApplicationBuilder>? configure = null)
    {
        var logs = new CapturingLoggerProvider();
        var config = new Dictionary<string, string?>
        {
            ["QrOrleans:AdminApiKey"] = GatewayNode.AdminKey,
            ["QrOrleans:Demo"] = "false",
            ["QrOrleans:RateLimiting:Enabled"] = "false",
            ["Logging:LogLevel:Default"] = "Debug",
            ["Logging:LogLevel:Microsoft"] = "Debug",
            ["Logging:LogLevel:Microsoft.AspNetCore"] = "Debug",
        };
        foreach (var (k, v) in settings ?? new Dictionary<string, string?>())
        {
            config[k] = v;
        }
        var app = GatewayApp.Create(["--urls", "http://127.0.0.1:0", "--contentRoot", GatewayNode.GatewayContentRoot()], builder =>
        {
            builder.Configuration.AddInMemoryCollection(config);
            builder.Logging.ClearProviders();
            builder.Logging.AddProvider(logs);
            configure?.Invoke(builder);
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new LoggedGateway(app, new Uri(address), logs);
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
