using System.Diagnostics;
using System.Text.Json;

namespace QrOrleans.Bench;

/// <summary>One desktop's GET /v1/qr/sessions/{id}/events: parses "event: state" / "data: {snapshot}" into a watch.</summary>
public sealed class SseStream : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly HttpResponseMessage _response;
    private readonly Task _reading;

    private SseStream(HttpResponseMessage response, Stream body, ISessionSink watch)
    {
        _response = response;
        _reading = Task.Run(() => ReadAsync(body, watch, _stop.Token));
    }

    public static async Task<SseStream> OpenAsync(Api api, CreatedSession session, ISessionSink watch, CancellationToken ct)
    {
        var response = await api.OpenEventsAsync(session, ct).ConfigureAwait(false);
        try
        {
            var body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
            return new SseStream(response, body, watch);
        }
        catch
        {
            response.Dispose();
            throw;
        }
    }

    private static async Task ReadAsync(Stream body, ISessionSink watch, CancellationToken ct)
    {
        var buffer = new byte[2048];
        var filled = 0;
        string? eventName = null;
        byte[]? data = null;
        try
        {
            while (true)
            {
                if (filled == buffer.Length)
                {
                    Array.Resize(ref buffer, buffer.Length * 2);
                }
                var read = await body.ReadAsync(buffer.AsMemory(filled), ct).ConfigureAwait(false);
                if (read == 0)
                {
                    throw new BenchException("event stream ended");
                }
                var receivedAt = Stopwatch.GetTimestamp();
                filled += read;
                var start = 0;
                while (true)
                {
                    var nl = Array.IndexOf(buffer, (byte)'\n', start, filled - start);
                    if (nl < 0)
                    {
                        break;
                    }
                    var line = buffer.AsSpan(start, nl - start);
                    if (line.Length > 0 && line[^1] == (byte)'\r')
                    {
                        line = line[..^1];
                    }
                    start = nl + 1;
                    if (line.IsEmpty)
                    {
                        // End of one event.
                        if (eventName is null or "state" && data is not null)
                        {
                            using var doc = JsonDocument.Parse(data);
                            if (SessionWatch.TryRead(doc.RootElement, receivedAt, out _, out var seen))
                            {
                                watch.OnSnapshot(seen);
                            }
                        }
                        eventName = null;
                        data = null;
                    }
                    else if (line.StartsWith("data:"u8))
                    {
                        var value = line[5..];
                        data = (value.Length > 0 && value[0] == (byte)' ' ? value[1..] : value).ToArray();
                    }
                    else if (line.StartsWith("event:"u8))
                    {
                        eventName = System.Text.Encoding.UTF8.GetString(line[6..]).Trim();
                    }
                    // "id:" and ": comment" lines need nothing
                }
                if (start > 0)
                {
                    Buffer.BlockCopy(buffer, start, buffer, 0, filled - start);
                    filled -= start;
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            watch.Fail(e);
        }
        catch (Exception)
        {
            // stopped while reading: the dispose tore the stream down
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        _response.Dispose();
        await _reading.ConfigureAwait(false);
        _stop.Dispose();
    }
}
