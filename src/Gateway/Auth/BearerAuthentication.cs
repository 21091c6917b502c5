using System.Text.Json;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;
using QrOrleans.Gateway.Problems;
using QrOrleans.KeyBinding;
using QrOrleans.Users;

namespace QrOrleans.Gateway.Auth;

/// <summary>
/// Phone calls authenticate with JwtBearer, and only the endpoints that require <see cref="Policy"/> run it:
/// there is no default scheme, so desktop calls (whose <c>Authorization: Bearer</c> carries an opaque desktop
/// token, not a JWT) and everything else never reach the bearer handler. A key-bound access token (its <c>cnf.jkt</c>,
/// RFC 9449) is accepted only as <c>Authorization: DPoP &lt;token&gt;</c> with a DPoP proof of that key for the request.
/// </summary>
public static class BearerAuthentication
{
    public const string Policy = "phone";
    public const string MissingDetail = "Send 'Authorization: Bearer <access token>'.";
    public const string RefusedDetail = "The access token is invalid, expired or its device was signed out.";

    /// <summary>The codes a call that requires <see cref="Policy"/> may be refused with (for the OpenAPI document).</summary>
    public static readonly IReadOnlyList<string> Refusals = ["unauthenticated", "invalid_token", "proof_required", "invalid_proof", "proof_replayed"];

    private const string DpopScheme = "DPoP";
    private static readonly object UsedDpopScheme = new();
    private static readonly object Refusal = new();

    public static IServiceCollection AddQrAccessTokens(this IServiceCollection services)
    {
        // A single registered scheme would otherwise become the default, and UseAuthentication would run it on every
        // request that carries an Authorization header (documented ASP.NET Core 7 switch).
        AppContext.SetSwitch("Microsoft.AspNetCore.Authentication.SuppressAutoDefaultScheme", true);
        services.AddSingleton<SigningKeys>();
        services.AddSingleton<AccessTokens>();
        services.AddSingleton<DpopProofs>();
        services.AddSingleton<DeviceStatus>();
        services.AddHostedService(sp => sp.GetRequiredService<DeviceStatus>());
        services.AddAuthentication().AddJwtBearer(JwtBearerDefaults.AuthenticationScheme, o =>
        {
            o.MapInboundClaims = false; // keep "sub" and "did" as issued
            o.TokenValidationParameters = new TokenValidationParameters
            {
                ValidIssuer = AccessTokens.Issuer,
                ValidAudience = AccessTokens.Audience,
                ValidAlgorithms = [SecurityAlgorithms.EcdsaSha256],
                ValidTypes = ["JWT"],
                RequireExpirationTime = true,
                RequireSignedTokens = true,
                ClockSkew = TimeSpan.FromSeconds(30),
                NameClaimType = Caller.UserClaim,
            };
            o.RefreshOnIssuerKeyNotFound = false; // the key never rotates; a foreign key must not trigger reloads
            o.Events = new AccessTokenEvents();
        });
        // The issuer and key come from the grain, loaded on the first bearer call (see SigningKeys).
        services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme)
            .Configure<SigningKeys>((o, keys) => o.ConfigurationManager = keys);
        services.AddAuthorizationBuilder().AddPolicy(Policy, p => p
            .AddAuthenticationSchemes(JwtBearerDefaults.AuthenticationScheme)
            .RequireAuthenticatedUser());
        return services;
    }

    /// <summary>After the rate limiter: a limited caller costs no signature check.</summary>
    public static IApplicationBuilder UseQrAuthentication(this IApplicationBuilder app) =>
        app.UseAuthentication().UseAuthorization();

    /// <summary>The thumbprint a validated access token is bound to (its cnf.jkt), or null for a bearer token.</summary>
    public static string? BoundThumbprint(JsonWebToken token) =>
        // The handler has parsed the payload already: read the claim from it rather than decode the token again.
        token.TryGetPayloadValue<JsonElement>("cnf", out var cnf) && cnf.ValueKind == JsonValueKind.Object
        && cnf.TryGetProperty("jkt", out var jkt) && jkt.ValueKind == JsonValueKind.String
            ? jkt.GetString()
            : null;

    /// <summary>Revocation at once, key binding, and one answer for every refusal.</summary>
    private sealed class AccessTokenEvents : JwtBearerEvents
    {
        /// <summary>Takes the token of <c>Authorization: DPoP &lt;token&gt;</c> too; JwtBearer itself reads only Bearer.</summary>
        public override Task MessageReceived(MessageReceivedContext context)
        {
            var header = context.Request.Headers.Authorization.ToString();
            if (header.StartsWith(DpopScheme + " ", StringComparison.OrdinalIgnoreCase))
            {
                context.Token = header[(DpopScheme.Length + 1)..].Trim();
                context.HttpContext.Items[UsedDpopScheme] = true;
            }
            return Task.CompletedTask;
        }

        /// <summary>
        /// A signed, unexpired token is honoured only while its device is not revoked (<see cref="DeviceStatus"/>), and a bound
        /// one only with a proof of its key for this request: RFC 9449 §7.1, checked after the signature, so the proof's
        /// jti is spent only by a genuine token.
        /// </summary>
        public override async Task TokenValidated(TokenValidatedContext context)
        {
            if (Caller.From(context.Principal) is not { } caller)
            {
                context.Fail("The token names no user or device.");
                return;
            }
            var http = context.HttpContext;
            var devices = http.RequestServices.GetRequiredService<DeviceStatus>();
            // A storage failure here propagates: the problem middleware answers 503, not a 401 that signs the phone out.
            if (!await devices.IsActiveAsync(caller.UserId, caller.DeviceId, http.RequestAborted).ConfigureAwait(false))
            {
                context.Fail("The device was signed out.");
                return;
            }
            if (context.SecurityToken is not JsonWebToken token)
            {
                context.Fail("The token is not a JWS.");
                return;
            }
            var boundTo = BoundThumbprint(token);
            var usedDpop = http.Items.ContainsKey(UsedDpopScheme);
            if (boundTo is null && !usedDpop)
            {
                return; // a bearer token, as it always was
            }
            if (!usedDpop || boundTo is null)
            {
                Refuse(context, KeyBindingErrors.InvalidToken(boundTo is null
                    ? "This access token is not bound to a key: send it as 'Authorization: Bearer <token>'."
                    : "This access token is bound to a key: send it as 'Authorization: DPoP <token>' with a DPoP proof."));
                return;
            }
            try
            {
                await http.RequestServices.GetRequiredService<DpopProofs>()
                    .VerifyAsync(http.Request, token.EncodedToken, boundTo, http.RequestAborted).ConfigureAwait(false);
            }
            catch (GrainException refusal) when (refusal.Status == StatusCodes.Status401Unauthorized)
            {
                Refuse(context, refusal);
            }
        }

        /// <summary>
        /// Wrong key, unknown issuer or audience, alg none, malformed, expired or revoked: the same body and the same
        /// bare challenge (no error_description), so a forger learns nothing about which rule broke. A genuine token
        /// refused for its key binding gets that binding's own code, and a DPoP challenge (RFC 9449 §7.1).
        /// </summary>
        public override async Task Challenge(JwtBearerChallengeContext context)
        {
            context.HandleResponse();
            var http = context.HttpContext;
            GrainException refusal;
            if (http.Items[Refusal] is GrainException binding)
            {
                refusal = binding;
                http.Response.Headers.WWWAuthenticate = binding.Code == "invalid_token"
                    ? DpopScheme + " error=\"invalid_token\""
                    : DpopScheme + " error=\"invalid_dpop_proof\"";
            }
            else
            {
                refusal = Errors.Unauthenticated(context.AuthenticateFailure is null ? MissingDetail : RefusedDetail);
                http.Response.Headers.WWWAuthenticate = !http.Items.ContainsKey(UsedDpopScheme) ? JwtBearerDefaults.AuthenticationScheme
                    : context.AuthenticateFailure is null ? DpopScheme
                    : DpopScheme + " error=\"invalid_token\"";
            }
            await ProblemResponses.Write(http, ProblemResponses.Create(refusal.Status, refusal.Code, refusal.Title, refusal.Detail)).ConfigureAwait(false);
        }

        private static void Refuse(TokenValidatedContext context, GrainException refusal)
        {
            context.HttpContext.Items[Refusal] = refusal;
            context.Fail(refusal.Detail ?? refusal.Title);
        }
    }
}
