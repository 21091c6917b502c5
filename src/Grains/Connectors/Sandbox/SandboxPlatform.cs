namespace QrOrleans.Grains.Connectors.Sandbox;

/// <summary>One call the sandbox platform received for an account.</summary>
public sealed record SandboxCall(string Kind, DateTimeOffset At);

public sealed record SandboxMessage(string To, string Text, DateTimeOffset At);

/// <summary>
/// The sandbox "platform" itself: sessions it issued, codes it showed, calls it received, messages it took. One
/// per process, like an outside service every node of a test cluster talks to; tests and demos script it here
/// (e.g. fail the next health check with auth) on top of what each account's connector settings say.
/// </summary>
public sealed class SandboxPlatform
{
    public static SandboxPlatform Shared { get; } = new();

    private readonly Lock _gate = new();
    private readonly Dictionary<string, AccountSide> _accounts = [];

    private sealed class AccountSide
    {
        public readonly HashSet<string> Sessions = [];
        public readonly Dictionary<string, Code> Codes = [];
        public readonly List<SandboxCall> Calls = [];
        public readonly List<SandboxMessage> Sent = [];
        public bool Overridden;
        public string? FailWith;
        public int? FailTimes;
    }

    internal sealed class Code(DateTimeOffset issuedAt, DateTimeOffset expiresAt)
    {
        public DateTimeOffset IssuedAt { get; } = issuedAt;
        public DateTimeOffset ExpiresAt { get; } = expiresAt;
        public DateTimeOffset? ScannedAt { get; set; }
        public bool ScanReported { get; set; }
        public bool ConfirmRequested { get; set; }
    }

    /// <summary>
    /// From now on, calls with credentials fail with <paramref name="failWith"/> (null: succeed), whatever the
    /// account's settings say; after <paramref name="times"/> failures the platform works again.
    /// </summary>
    public void Script(string accountId, string? failWith, int? times = null) => With(accountId, a =>
    {
        a.Overridden = true;
        a.FailWith = failWith;
        a.FailTimes = times;
    });

    /// <summary>Back to what the account's connector settings say.</summary>
    public void ClearScript(string accountId) => With(accountId, a => a.Overridden = false);

    /// <summary>The platform forgets every session of the account (as a logout from the phone would).</summary>
    public void RevokeSessions(string accountId) => With(accountId, a => a.Sessions.Clear());

    /// <summary>The owner scans the account's newest code now; <paramref name="confirm"/> also confirms it.</summary>
    public void Scan(string accountId, bool confirm = true) => With(accountId, a =>
    {
        if (a.Codes.Values.MaxBy(c => c.IssuedAt) is { } code)
        {
            code.ScannedAt ??= DateTimeOffset.UtcNow;
            code.ConfirmRequested |= confirm;
        }
    });

    public IReadOnlyList<SandboxCall> Calls(string accountId) => With(accountId, a => a.Calls.ToArray());

    public IReadOnlyList<SandboxMessage> Sent(string accountId) => With(accountId, a => a.Sent.ToArray());

    public int SessionCount(string accountId) => With(accountId, a => a.Sessions.Count);

    internal void Record(string accountId, string kind) => With(accountId, a => a.Calls.Add(new SandboxCall(kind, DateTimeOffset.UtcNow)));

    /// <summary>The failure a credentialed call meets now, counting down a scripted number of failures.</summary>
    internal string? Failure(string accountId, string? fromSettings) => With(accountId, a =>
    {
        if (!a.Overridden)
        {
            return fromSettings;
        }
        var failure = a.FailWith;
        if (failure is not null && a.FailTimes is { } left)
        {
            a.FailTimes = left - 1;
            if (a.FailTimes <= 0)
            {
                a.FailWith = null;
                a.FailTimes = null;
            }
        }
        return failure;
    });

    internal string Issue(string accountId, DateTimeOffset now, DateTimeOffset expiresAt) => With(accountId, a =>
    {
        var handle = Secrets.NewHexId(8);
        a.Codes[handle] = new Code(now, expiresAt);
        return handle;
    });

    internal T WithCode<T>(string accountId, string handle, Func<Code?, T> read) =>
        With(accountId, a => read(a.Codes.GetValueOrDefault(handle)));

    internal string NewSession(string accountId) => With(accountId, a =>
    {
        var credentials = $"sbx.{accountId}.{Secrets.NewToken(18)}";
        a.Sessions.Add(credentials);
        return credentials;
    });

    internal bool HasSession(string accountId, string credentials) => With(accountId, a => a.Sessions.Contains(credentials));

    internal void EndSession(string accountId, string credentials) => With(accountId, a => a.Sessions.Remove(credentials));

    internal void Deliver(string accountId, string to, string text) => With(accountId, a => a.Sent.Add(new SandboxMessage(to, text, DateTimeOffset.UtcNow)));

    private void With(string accountId, Action<AccountSide> action) => With(accountId, a =>
    {
        action(a);
        return true;
    });

    private T With<T>(string accountId, Func<AccountSide, T> action)
    {
        lock (_gate)
        {
            if (!_accounts.TryGetValue(accountId, out var a))
            {
                _accounts[accountId] = a = new AccountSide();
            }
            return action(a);
        }
    }
}
