namespace QrOrleans.Grains.QrSessions;

/// <summary>
/// Told of every committed transition of a QR session, on the silo that committed it (so each is counted once,
/// rotations and expiries included). The gateway's telemetry implements it; a bare silo host may have none.
/// Called on the grain's turn: it must not block.
/// </summary>
public interface IQrSessionObserver
{
    void OnCommitted(string sessionId, QrSessionState? previous, QrSessionState next);
}
