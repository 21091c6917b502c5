using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace QrOrleans.Tests.Accounts;

/// <summary>One POST the owner's endpoint received, and what it answered.</summary>
public sealed record ReceivedWebhook(string Event, string Delivery, string Signature, string Body, int Answered, DateTimeOffset At)
{
    public JsonElement Json => JsonDocument.Parse(Body).RootElement;

    public bool SignedWith(string secret) =>
        Signature == "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(Body)));
}

/// <summary>
/// An owner's webhook endpoint: a small Kestrel app on loopback that records every request with its raw body and
/// can be told to answer 500 for a while.
/// </summary>
public sealed class WebhookReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly List<ReceivedWebhook> _requests = [];
    private int _failNext;

    private WebhookReceiver(WebApplication app) => _app = app;

    public string Url { get; private set; } = "";

    public static async Task<WebhookReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        var app = builder.Build();
        var receiver = new WebhookReceiver(app);
        app.MapPost("/hook", async (HttpContext context) =>
        {
            using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
            var body = await reader.ReadToEndAsync();
            var status = receiver.Record(context.Request.Headers, body);
            return Results.StatusCode(status);
        });
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        receiver.Url = address + "/hook";
        return receiver;
    }

    /// <summary>Answer 500 to the next <paramref name="times"/> requests (int.MaxValue: until told otherwise).</summary>
    public void FailNext(int times) => Interlocked.Exchange(ref _failNext, times);

    /// <summary>Every request, failed ones included, in arrival order.</summary>
    public IReadOnlyList<ReceivedWebhook> Requests
    {
        get
        {
            lock (_requests)
            {
                return _requests.ToArray();
            }
        }
    }

    /// <summary>The deliveries that were accepted (2xx), in arrival order.</summary>
    public IReadOnlyList<ReceivedWebhook> Delivered => Requests.Where(r => r.Answered < 300).ToArray();

    public IReadOnlyList<string> DeliveredEvents => Delivered.Select(r => r.Event).ToArray();

    public async Task<IReadOnlyList<ReceivedWebhook>> WaitForAsync(Func<IReadOnlyList<ReceivedWebhook>, bool> done, TimeSpan timeout, string what)
    {
        var deadline = DateTimeOffset.UtcNow + timeout;
        while (!done(Delivered))
        {
            if (DateTimeOffset.UtcNow > deadline)
            {
                throw new Xunit.Sdk.XunitException($"Timed out waiting for {what}; delivered so far: {string.Join(", ", DeliveredEvents)}");
            }
            await Task.Delay(25);
        }
        return Delivered;
    }

    /// <summary>Waits until <paramref name="event"/> has been delivered <paramref name="count"/> times.</summary>
    public Task<IReadOnlyList<ReceivedWebhook>> WaitForEventAsync(string @event, int count = 1, double seconds = 10) =>
        WaitForAsync(d => d.Count(r => r.Event == @event) >= count, TimeSpan.FromSeconds(seconds), $"{count}× {@event}");

    private int Record(IHeaderDictionary headers, string body)
    {
        var fail = Interlocked.Decrement(ref _failNext) >= 0;
        if (!fail)
        {
            Interlocked.Exchange(ref _failNext, 0);
        }
        var status = fail ? 500 : 204;
        lock (_requests)
        {
            _requests.Add(new ReceivedWebhook(headers["X-QrOrleans-Event"].ToString(), headers["X-QrOrleans-Delivery"].ToString(),
                headers["X-QrOrleans-Signature"].ToString(), body, status, DateTimeOffset.UtcNow));
        }
        return status;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}
