using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using QrOrleans.Accounts;
using QrOrleans.Grains.Vault;

namespace QrOrleans.Grains.Accounts;

/// <summary>The outcome of one delivery attempt; <see cref="Error"/> says why it failed (never the secret).</summary>
public readonly record struct WebhookResult(bool Delivered, string? Error);

/// <summary>
/// POSTs one owner webhook: the raw body, signed with HMAC-SHA256 under the owner's secret (API.md, Owner webhooks).
/// Redirects are not followed, so a signed body goes only where the owner said. The secret arrives sealed and is
/// opened here, for the one signature: the only place it is ever plain text after the operator's PUT.
/// </summary>
public sealed class WebhookSender : IDisposable
{
    private readonly HttpClient _http;
    private readonly ICredentialVault _vault;

    public WebhookSender(AccountOptions options, ICredentialVault vault)
    {
        _vault = vault;
        _http = new HttpClient(new SocketsHttpHandler { AllowAutoRedirect = false, PooledConnectionLifetime = TimeSpan.FromMinutes(2) })
        {
            Timeout = options.WebhookTimeout,
        };
        _http.DefaultRequestHeaders.UserAgent.Add(new ProductInfoHeaderValue("QrOrleans-Webhooks", "1"));
    }

    public static string Signature(string secret, string body) =>
        "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(body)));

    public async Task<WebhookResult> SendAsync(string accountId, WebhookTarget target, string deliveryId, string @event, string body, CancellationToken ct)
    {
        string signature;
        try
        {
            signature = target.SealedSecret is { } sealedSecret
                ? Signature(WebhookSecrets.Unseal(_vault, accountId, sealedSecret), body)
                : Signature(target.LegacySecret ?? throw VaultErrors.InvalidSealed("The owner's webhook secret is missing."), body);
        }
        catch (GrainException e)
        {
            // A key version this node lacks, or a tampered value: retried with backoff, and the code says why.
            return new WebhookResult(false, e.Code);
        }
        using var request = new HttpRequestMessage(HttpMethod.Post, target.Url)
        {
            Content = new StringContent(body, Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("X-QrOrleans-Event", @event);
        request.Headers.Add("X-QrOrleans-Delivery", deliveryId);
        request.Headers.Add("X-QrOrleans-Signature", signature);
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
