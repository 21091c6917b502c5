using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace QrOrleans.Tests.Cluster;

/// <summary>
/// The private redis-server that <c>scripts/test</c> starts on a free loopback port with <c>appendonly yes</c>:
/// QRO_TEST_REDIS (host:port), QRO_TEST_REDIS_SERVER (the redis-server binary), QRO_TEST_REDIS_CONF (its config file,
/// which daemonizes it and names its pidfile and AOF dir) and QRO_TEST_REDIS_PORT. Without them the cluster tests fail
/// (never skip): they must run through scripts/test. Spoken to in RESP over a plain socket.
/// </summary>
public static class TestRedis
{
    public static string ConnectionString => Required("QRO_TEST_REDIS");

    private static int Port => int.Parse(Required("QRO_TEST_REDIS_PORT"), System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>PING; true on +PONG.</summary>
    public static async Task<bool> PingAsync()
    {
        try
        {
            return (await CommandAsync("PING")).StartsWith("+PONG", StringComparison.Ordinal);
        }
        catch (Exception e) when (e is SocketException or IOException or OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>One inline command; the first line of the answer.</summary>
    public static async Task<string> CommandAsync(string command)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        using var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", Port, timeout.Token);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(command + "\r\n"), timeout.Token);
        var buffer = new byte[4096];
        var read = await stream.ReadAsync(buffer, timeout.Token);
        var text = Encoding.ASCII.GetString(buffer, 0, read);
        var end = text.IndexOf("\r\n", StringComparison.Ordinal);
        return end >= 0 ? text[..end] : text;
    }

    /// <summary>
    /// SHUTDOWN (the AOF is flushed and fsynced first), then waits until the port no longer answers. Only for tests in
    /// the non-parallel "RedisRestart" collection: every cluster test shares this server.
    /// </summary>
    public static async Task ShutdownAsync()
    {
        if (!File.Exists(Required("QRO_TEST_REDIS_CONF")))
        {
            throw new InvalidOperationException("QRO_TEST_REDIS_CONF names no file: the server could not be started again.");
        }
        try
        {
            await CommandAsync("SHUTDOWN");
        }
        catch (Exception e) when (e is SocketException or IOException)
        {
            // the server closes the connection as it goes
        }
        var watch = Stopwatch.StartNew();
        while (await PingAsync())
        {
            if (watch.Elapsed > TimeSpan.FromSeconds(20))
            {
                throw new TimeoutException("redis-server still answers 20 s after SHUTDOWN");
            }
            await Task.Delay(50);
        }
    }

    /// <summary>Starts the server again with its config (same port, same AOF dir) and waits for PONG.</summary>
    public static async Task StartAsync()
    {
        var psi = new ProcessStartInfo(Required("QRO_TEST_REDIS_SERVER"))
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        psi.ArgumentList.Add(Required("QRO_TEST_REDIS_CONF"));
        using (var process = Process.Start(psi)!)
        {
            // daemonize yes: the foreground process exits at once, the server lives on (its pidfile is the script's to stop).
            var output = process.StandardOutput.ReadToEndAsync();
            var errors = process.StandardError.ReadToEndAsync();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
            await process.WaitForExitAsync(timeout.Token);
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException($"redis-server exited with {process.ExitCode}: {await output}{await errors}");
            }
        }
        var watch = Stopwatch.StartNew();
        while (!await PingAsync())
        {
            if (watch.Elapsed > TimeSpan.FromSeconds(30))
            {
                throw new TimeoutException("redis-server does not answer PING 30 s after it was started again");
            }
            await Task.Delay(50);
        }
    }

    private static string Required(string variable) =>
        Environment.GetEnvironmentVariable(variable) is { Length: > 0 } value
            ? value
            : throw new InvalidOperationException(
                $"{variable} is not set: the cluster tests need the private test redis-server; run them through scripts/test.");
}
