// The desktop side of the ceremony: create a session, follow it live over SignalR, claim when approved.
(() => {
  const main = document.getElementById('desktop');
  let session = null;       // { sessionId, desktopToken }
  let version = 0;          // newest snapshot version applied; older or equal ones are ignored
  let qrRotation = 0;
  let countdownTimer = null;
  let connection = null;
  let claiming = false;

  const ended = {
    rejected: ['Sign-in rejected', 'The sign-in was rejected on the phone.'],
    cancelled: ['Sign-in cancelled', 'You cancelled this sign-in.'],
    expired: ['This code has expired', 'Nobody approved it in time.'],
  };

  function show(view) {
    for (const s of main.querySelectorAll('section')) s.hidden = s.id !== 'view-' + view;
    document.getElementById('cancel').hidden = !['pending', 'scanned', 'approved'].includes(view);
  }

  function authHeaders() { return { Authorization: 'Bearer ' + session.desktopToken }; }

  async function start() {
    version = 0; qrRotation = 0; claiming = false;
    main.dataset.state = 'starting';
    const res = await fetch('/v1/qr/sessions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
    if (!res.ok) return fail(await res.json().catch(() => ({})));
    session = await res.json();
    main.dataset.sessionId = session.sessionId;
    await apply(session);
    await watch();
  }

  async function watch() {
    if (!connection) {
      connection = new signalR.HubConnectionBuilder().withUrl('/hubs/qr').withAutomaticReconnect().build();
      connection.on('state', snapshot => apply(snapshot).catch(e => fail({ detail: String(e) })));
      // After a reconnect the server re-sends the snapshot, so nothing that happened meanwhile is missed.
      connection.onreconnected(() => session && connection.invoke('Watch', session.sessionId, session.desktopToken).catch(e => fail({ detail: String(e) })));
      // Reconnecting gave up: a code that no longer updates must not stay on screen as if it were live.
      connection.onclose(() => {
        if (['pending', 'scanned', 'approved'].includes(main.dataset.state) && !claiming) fail({ detail: 'The live connection to the server was lost.' });
      });
      await connection.start();
      // The client exposes no transport name: tell it by the socket the transport holds (WebSocket, EventSource, else polling).
      const held = Object.values(connection.connection.transport || {}), transport = held.some(v => v instanceof WebSocket) ? 'WebSockets' : held.some(v => typeof EventSource !== 'undefined' && v instanceof EventSource) ? 'ServerSentEvents' : 'LongPolling';
      document.getElementById('transport').textContent = 'Live over ' + transport;
      main.dataset.transport = transport;
    }
    await connection.invoke('Watch', session.sessionId, session.desktopToken);
  }

  async function apply(s) {
    if (!session || s.sessionId !== session.sessionId || s.version <= version) return;
    version = s.version;
    if (!claiming) main.dataset.state = s.state; // once claiming, only claim() (signed-in) or fail() sets the state
    main.dataset.version = String(s.version);
    switch (s.state) {
      case 'pending':
        show('pending');
        if (s.qr.rotation !== qrRotation) {
          qrRotation = s.qr.rotation;
          await renderQr(s.qr);
        }
        break;
      case 'scanned':
        show('scanned');
        document.getElementById('number-match').textContent = s.numberMatch;
        break;
      case 'approved':
        show('approved');
        await claim();
        break;
      case 'completed':
        if (!claiming) { ended.completed = ['Already used', 'This sign-in was completed elsewhere.']; showEnded('completed'); }
        break;
      default:
        showEnded(s.state);
    }
  }

  async function renderQr(qr) {
    const res = await fetch(`/v1/qr/sessions/${session.sessionId}/qr.svg`, { headers: authHeaders(), cache: 'no-store' });
    if (res.ok) {
      const box = document.getElementById('qr');
      box.innerHTML = await res.text();
      box.dataset.url = qr.url;
      box.dataset.rotation = String(qr.rotation);
      document.getElementById('qr-link').value = qr.url;
    }
    document.getElementById('rotation').textContent = qr.rotation;
    document.getElementById('max-rotations').textContent = qr.maxRotations;
    clearInterval(countdownTimer);
    const tick = () => {
      const left = Math.max(0, Math.round((Date.parse(qr.expiresAt) - Date.now()) / 1000));
      document.getElementById('countdown').textContent = left;
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
  }

  async function claim() {
    if (claiming) return;
    claiming = true;
    const res = await fetch(`/v1/qr/sessions/${session.sessionId}/claim`, { method: 'POST', headers: authHeaders() });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) return fail(body);
    // The tokens stay in this tab's memory and sessionStorage; a real app would hand them to its own client.
    sessionStorage.setItem('qrorleans.desktop', JSON.stringify({ refreshToken: body.refreshToken, user: body.user, device: body.device }));
    document.getElementById('user-name').textContent = body.user.displayName;
    document.getElementById('device-name').textContent = body.device.name;
    main.dataset.state = 'signed-in';
    show('signed-in');
    clearInterval(countdownTimer);
  }

  function showEnded(state) {
    clearInterval(countdownTimer);
    const [title, detail] = ended[state] || ['Sign-in ended', ''];
    document.getElementById('ended-title').textContent = title;
    document.getElementById('ended-detail').textContent = detail;
    show('ended');
  }

  function fail(problem) {
    main.dataset.state = 'error';
    document.getElementById('error-detail').textContent = problem.detail || problem.title || 'The server could not be reached.';
    show('error');
  }

  document.getElementById('new-code').addEventListener('click', () => {
    if (connection && session) connection.invoke('Unwatch', session.sessionId).catch(() => {});
    start().catch(e => fail({ detail: String(e) }));
  });
  document.getElementById('cancel').addEventListener('click', async () => {
    // The outcome arrives as a snapshot; a refusal (it just finished) or a lost connection is shown by that path.
    await fetch(`/v1/qr/sessions/${session.sessionId}/cancel`, { method: 'POST', headers: authHeaders() }).catch(() => {});
  });

  start().catch(e => fail({ detail: String(e) }));
})();
