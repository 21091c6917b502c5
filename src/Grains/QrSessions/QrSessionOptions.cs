namespace QrOrleans.Grains.QrSessions;

/// <summary>Timings of the QR ceremony (configuration section QrOrleans:QrSession).</summary>
public sealed class QrSessionOptions
{
    public TimeSpan QrTtl { get; set; } = TimeSpan.FromSeconds(30);
    public int MaxRotations { get; set; } = 6;
    public TimeSpan ApprovalWindow { get; set; } = TimeSpan.FromMinutes(1);
    public TimeSpan ClaimWindow { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>How long a finished session is kept so late callers get the precise error.</summary>
    public TimeSpan TerminalGrace { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>
    /// Period of the durable reminder that brings a live session back after its silo died, so it still rotates,
    /// expires and is deleted. Orleans refuses periods under its MinimumReminderPeriod (1 minute in production).
    /// </summary>
    public TimeSpan RecoveryPeriod { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>
    /// Whether a session registers that reminder. On the embedded default (in-memory storage and reminders, one silo)
    /// nothing outlives the silo, so there is nothing for a reminder to bring back: it is off there unless set.
    /// </summary>
    public bool RecoveryReminder { get; set; } = true;

    /// <summary>
    /// A session is created only with a public key (key binding, RFC 9449): its claim must prove the key and its
    /// tokens are bound to it. Off by default, so a plain curl can sign in.
    /// </summary>
    public bool RequireKeyBinding { get; set; }

    /// <summary>The origin QR URLs point at; the gateway fills in its first listening URL when unset.</summary>
    public string PublicOrigin { get; set; } = "";
}
