namespace QrOrleans.KeyBinding;

/// <summary>The refusals of key binding (RFC 9449 DPoP), with their status: API.md "Key binding".</summary>
public static class KeyBindingErrors
{
    public static GrainException KeyRequired() =>
        new("key_required", 400, "Key required", "This server requires a public key (key: an EC P-256 JWK) when a session is created.");

    public static GrainException ProofRequired(string detail = "Send a DPoP header: a proof signed with the key this credential is bound to.") =>
        new("proof_required", 401, "Proof of possession required", detail);

    public static GrainException InvalidProof(string detail = "The DPoP proof is not valid.") =>
        new("invalid_proof", 401, "Invalid proof of possession", detail);

    public static GrainException ProofReplayed() =>
        new("proof_replayed", 401, "Proof replayed", "This DPoP proof (its jti) was already used; sign a fresh one for every request.");

    public static GrainException InvalidToken(string detail = "This access token is bound to a key: send it as 'Authorization: DPoP <token>' with a DPoP proof.") =>
        new("invalid_token", 401, "Invalid token", detail);

    /// <summary>A proof by a key other than the one the session or device is bound to.</summary>
    public static GrainException OtherKey() => InvalidProof("The DPoP proof is signed by another key than the one this credential is bound to.");

    /// <summary>
    /// What a holder of a credential bound to <paramref name="boundTo"/> must show: null when unbound, else the
    /// refusal for the proof's thumbprint (null when it matches). Checked before anything changes, so a wrong key never
    /// consumes the credential.
    /// </summary>
    public static GrainException? Check(string? boundTo, string? proofThumbprint) =>
        boundTo is null ? null
        : proofThumbprint is null ? ProofRequired()
        : string.Equals(boundTo, proofThumbprint, StringComparison.Ordinal) ? null
        : OtherKey();
}

/// <summary>
/// The DPoP proof ids (jti) recently seen for one key (key = the key's RFC 7638 thumbprint), cluster-wide and stored,
/// so a proof replays neither on another node nor after a node died.
/// </summary>
[Alias("qrorleans.IProofReplayGrain")]
public interface IProofReplayGrain : IGrainWithStringKey
{
    /// <summary>Records <paramref name="jti"/> until <paramref name="keepUntil"/>, or throws proof_replayed when it is held already.</summary>
    [Alias("Use")]
    Task UseAsync(string jti, DateTimeOffset keepUntil, CancellationToken ct = default);
}
