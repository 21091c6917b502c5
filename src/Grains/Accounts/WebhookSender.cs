using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using QrOrleans.Accounts;

namespace QrOrleans.Grains.Accounts;

/// <summary>The outcome of one delivery attempt; <see cref="Error"/> says why it failed (never the secret).</summary>
public readonly record struct WebhookResult(bool Delivered, string? Error);

/// <summary>
/// POSTs one owner webhook: the raw body, signed with HMAC-SHA256 under the owner's secret (API.md, Owner webhooks).
/// Redirects are not followed, so a signed body goes only where the owner said.
/// </summary>
public sealed class WebhookSender : IDisposable
{
    private readonly HttpClient _http;

    public WebhookSender(AccountOptions options)
    {
        _http = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, PooledConnectionLifetime = TimeSpan.FromMinutes(2) })
        {
            Timeout = options.WebhookTimeout,
        };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("QrOrleans-Webhooks", "1"));
    }

    public static string Signature(string secret, string body) =>
        "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(body)));

    public async Task<WebhookResult> SendAsync(WebhookTarget target, string deliveryId, string @event, string body, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, target.Url)
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("X-QrOrleans-Event", @event);
        request.Headers.Add("X-QrOrleans-Delivery", deliveryId);
        request.Headers.Add("X-QrOrleans-Signature", Signature(target.Secret, body));
        try
        {
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
            return response.IsSuccessStatusCode
                ? new WebhookResult(true, null)
                : new WebhookResult(false, $"HTTP {(int)response.StatusCode}");
        }
        catch (HttpRequestException e)
        {
            return new WebhookResult(false, e.HttpRequestError.ToString());
        }
        catch (TaskCanceledException) when (!ct.IsCancellationRequested)
        {
            return new WebhookResult(false, "timeout");
        }
    }

    public void Dispose() => _http.Dispose();
}
