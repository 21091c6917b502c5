// The desktop side of the ceremony: create a session, follow it live over SignalR, claim when approved; then stay
// signed in across reloads with tokens bound to a key this browser cannot give away (API.md "Key binding").
(() => {
  const main = document.getElementById('desktop');
  let session = null;       // { sessionId, desktopToken }
  let sessionKey = null;    // the CryptoKeyPair the current session was created with (null: no WebCrypto here)
  let access = null;        // { token, expiresAt } of the signed-in device, in memory only
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

  // ---- The device key, and the sign-in kept with it ----
  // The key is ECDSA P-256, made non-extractable: scripts (even this page's own, or an injected one) can ask the
  // browser to sign with it but can never read it out. The CryptoKeyPair, the refresh token bound to it, and who
  // signed in live in IndexedDB, which only scripts of this origin can open; a structured clone of a
  // non-extractable key stays non-extractable there. Even a script that runs here and reads the refresh token
  // gains nothing to take away: without the key the server refuses the token, and the key never leaves.
  // WebCrypto exists only in secure contexts (https, localhost); elsewhere the page signs in unbound, tokens in
  // memory only, and a reload shows a new code.
  const keyBinding = !!(window.isSecureContext && window.crypto && crypto.subtle && window.indexedDB);
  const DB = 'qrorleans', STORE = 'desktop', SIGN_IN = 'sign-in';
  const text = new TextEncoder();

  function store(mode, use) {
    return new Promise((resolve, reject) => {
      const open = indexedDB.open(DB, 1);
      open.onupgradeneeded = () => open.result.createObjectStore(STORE);
      open.onerror = () => reject(open.error);
      open.onsuccess = () => {
        const db = open.result, tx = db.transaction(STORE, mode), request = use(tx.objectStore(STORE));
        tx.oncomplete = () => { db.close(); resolve(request.result); };
        tx.onerror = tx.onabort = () => { db.close(); reject(tx.error); };
      };
    });
  }
  const loadSignIn = () => store('readonly', s => s.get(SIGN_IN));
  const saveSignIn = signIn => store('readwrite', s => s.put(signIn, SIGN_IN));
  const forgetSignIn = () => store('readwrite', s => s.delete(SIGN_IN));

  // Every tab of this origin shares the stored sign-in, and a refresh token works once: refreshes take turns, and
  // each reads the token the previous one stored (two tabs refreshing one token would look like a theft and sign
  // the device out).
  const oneAtATime = work => navigator.locks ? navigator.locks.request('qrorleans.desktop.sign-in', work) : work();

  const base64url = bytes => btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');

  const newKey = () => crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign']);

  async function publicJwk(keyPair) {
    const { kty, crv, x, y } = await crypto.subtle.exportKey('jwk', keyPair.publicKey); // public halves are always exportable
    return { kty, crv, x, y };
  }

  // A DPoP proof (RFC 9449) for one request: an ES256 JWS whose signature is WebCrypto's raw r||s, as JWS wants it.
  async function proof(keyPair, method, path, accessToken) {
    const header = { typ: 'dpop+jwt', alg: 'ES256', jwk: await publicJwk(keyPair) };
    const claims = { htm: method, htu: location.origin + path, iat: Math.floor(Date.now() / 1000), jti: base64url(crypto.getRandomValues(new Uint8Array(16))) };
    if (accessToken) claims.ath = base64url(await crypto.subtle.digest('SHA-256', text.encode(accessToken)));
    const input = base64url(text.encode(JSON.stringify(header))) + '.' + base64url(text.encode(JSON.stringify(claims)));
    return input + '.' + base64url(await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, keyPair.privateKey, text.encode(input)));
  }

  // New tokens for the stored sign-in, with a proof of its key. Null when the server no longer knows the device
  // (revoked from the phone, or signed out): the stored sign-in is forgotten then.
  function refreshSignIn() {
    return oneAtATime(async () => {
      const current = await loadSignIn();
      if (!current) return null;
      const res = await fetch('/v1/auth/refresh', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', DPoP: await proof(current.keyPair, 'POST', '/v1/auth/refresh') },
        body: JSON.stringify({ refreshToken: current.refreshToken }),
      });
      const body = await res.json().catch(() => ({}));
      if (res.status === 400 || res.status === 401) { await forgetSignIn(); access = null; return null; }
      if (!res.ok) throw Object.assign(new Error('refresh failed'), { problem: body });
      const next = { ...current, refreshToken: body.refreshToken, user: body.user || current.user, device: body.device ? { id: body.device.id, name: body.device.name } : current.device };
      await saveSignIn(next);
      access = { token: body.accessToken, expiresAt: Date.now() + body.expiresIn * 1000 };
      return next;
    });
  }

  async function resume() {
    main.dataset.state = 'resuming';
    let signIn;
    try {
      signIn = await refreshSignIn();
    } catch (e) {
      fail(e.problem || { detail: 'The server could not renew this sign-in: ' + String(e) });
      return true; // a busy or unreachable server keeps the sign-in: "Try again" reloads and retries
    }
    if (!signIn) return false;
    showSignedIn(signIn.user, signIn.device, true);
    return true;
  }

  function showSignedIn(user, device, kept) {
    clearInterval(countdownTimer);
    document.getElementById('user-name').textContent = user.displayName;
    document.getElementById('device-name').textContent = device.name;
    main.dataset.deviceId = device.id;
    document.getElementById('sign-out').hidden = !kept; // an unbound sign-in ends with the tab; the phone can revoke it
    main.dataset.state = 'signed-in';
    show('signed-in');
  }

  // Revokes this device with its own bound token, then forgets the key: nothing of the sign-in is left anywhere.
  async function signOut() {
    const signIn = await loadSignIn();
    if (!signIn) return start();
    if (!access || access.expiresAt - Date.now() < 30_000) {
      if (!(await refreshSignIn())) return start(); // already gone on the server
    }
    const path = '/v1/devices/' + encodeURIComponent(signIn.device.id);
    const res = await fetch(path, { method: 'DELETE', headers: { Authorization: 'DPoP ' + access.token, DPoP: await proof(signIn.keyPair, 'DELETE', path, access.token) } });
    if (!res.ok && res.status !== 401 && res.status !== 404) return fail(await res.json().catch(() => ({})));
    await forgetSignIn();
    access = null;
    delete main.dataset.deviceId;
    await start();
  }

  async function start() {
    version = 0; qrRotation = 0; claiming = false;
    main.dataset.state = 'starting';
    sessionKey = keyBinding ? await newKey() : null;
    const create = sessionKey ? { key: await publicJwk(sessionKey) } : {};
    const res = await fetch('/v1/qr/sessions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(create) });
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
    const path = `/v1/qr/sessions/${session.sessionId}/claim`;
    const headers = sessionKey ? { ...authHeaders(), DPoP: await proof(sessionKey, 'POST', path) } : authHeaders();
    const res = await fetch(path, { method: 'POST', headers });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) return fail(body);
    access = { token: body.accessToken, expiresAt: Date.now() + body.expiresIn * 1000 };
    const device = { id: body.device.id, name: body.device.name };
    // Only tokens bound to the key are kept for the next visit; unbound ones stay in this tab's memory.
    const kept = !!sessionKey && body.tokenType === 'DPoP';
    if (kept) await oneAtATime(() => saveSignIn({ keyPair: sessionKey, refreshToken: body.refreshToken, user: body.user, device }));
    showSignedIn(body.user, device, kept);
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
  document.getElementById('sign-out').addEventListener('click', () => {
    signOut().catch(e => fail(e.problem || { detail: String(e) }));
  });
  document.getElementById('cancel').addEventListener('click', async () => {
    // The outcome arrives as a snapshot; a refusal (it just finished) or a lost connection is shown by that path.
    await fetch(`/v1/qr/sessions/${session.sessionId}/cancel`, { method: 'POST', headers: authHeaders() }).catch(() => {});
  });

  (async () => {
    if (keyBinding && await loadSignIn().catch(() => null) && await resume()) return;
    await start();
  })().catch(e => fail({ detail: String(e) }));
})();
