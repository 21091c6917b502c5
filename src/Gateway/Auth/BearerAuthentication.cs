using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.IdentityModel.Tokens;
using QrOrleans.Gateway.Problems;
using QrOrleans.Users;

namespace QrOrleans.Gateway.Auth;

/// <summary>
/// Phone calls authenticate with JwtBearer, and only the endpoints that require <see cref="Policy"/> run it:
/// there is no default scheme, so desktop calls (whose <c>Authorization: Bearer</c> carries an opaque desktop
/// token, not a JWT) and everything else never reach the bearer handler.
/// </summary>
public static class BearerAuthentication
{
    public const string Policy = "phone";
    public const string MissingDetail = "Send 'Authorization: Bearer <access token>'.";
    public const string RefusedDetail = "The access token is invalid, expired or its device was signed out.";

    public static IServiceCollection AddQrAccessTokens(this IServiceCollection services)
    {
        // A single registered scheme would otherwise become the default, and UseAuthentication would run it on every
        // request that carries an Authorization header (documented ASP.NET Core 7 switch).
        AppContext.SetSwitch("Microsoft.AspNetCore.Authentication.SuppressAutoDefaultScheme", true);
        services.AddSingleton<SigningKeys>();
        services.AddSingleton<AccessTokens>();
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

    /// <summary>Revocation at once, and one answer for every refusal.</summary>
    private sealed class AccessTokenEvents : JwtBearerEvents
    {
        /// <summary>A signed, unexpired token is honoured only while its device is not revoked (asked on every call).</summary>
        public override async Task TokenValidated(TokenValidatedContext context)
        {
            if (Caller.From(context.Principal) is not { } caller)
            {
                context.Fail("The token names no user or device.");
                return;
            }
            var grains = context.HttpContext.RequestServices.GetRequiredService<IGrainFactory>();
            // A storage failure here propagates: the problem middleware answers 503, not a 401 that signs the phone out.
            if (!await grains.GetGrain<IDeviceGrain>(caller.DeviceId).IsActiveAsync(caller.UserId, context.HttpContext.RequestAborted).ConfigureAwait(false))
            {
                context.Fail("The device was signed out.");
            }
        }

        /// <summary>
        /// Wrong key, unknown issuer or audience, alg none, malformed, expired or revoked: the same body and the same
        /// bare challenge (no error_description), so a forger learns nothing about which rule broke.
        /// </summary>
        public override async Task Challenge(JwtBearerChallengeContext context)
        {
            context.HandleResponse();
            context.Response.Headers.WWWAuthenticate = JwtBearerDefaults.AuthenticationScheme;
            var refusal = Errors.Unauthenticated(context.AuthenticateFailure is null ? MissingDetail : RefusedDetail);
            await ProblemResponses.Write(context.HttpContext,
                ProblemResponses.Create(refusal.Status, refusal.Code, refusal.Title, refusal.Detail)).ConfigureAwait(false);
        }
    }
}
