// What a phone's camera opens: who is asking, the number choices, approve or reject.
(() => {
  const main = document.getElementById('link');
  // The code's token is the URL's fragment (/l/#<sessionId>.<secret>), which the browser never sends; codes made
  // before the fragment shape carry it in the path. Either way it leaves the address bar (and so the history and
  // a shared screenshot) at once: the page keeps it only in memory.
  const token = decodeURIComponent(location.hash.length > 1 ? location.hash.slice(1) : location.pathname.replace(/^\/l\/?/, ''));
  history.replaceState(null, '', '/l/');
  // Another code opened in this tab is only a fragment change of /l/: start over with it.
  addEventListener('hashchange', () => location.reload());
  let sessionId = null;

  const messages = {
    qr_invalid: ['Not a valid code', 'This is not a QrOrleans sign-in code.'],
    qr_expired: ['This code has expired', 'Ask the other device to show a new code.'],
    qr_already_scanned: ['Already scanned', 'Another phone scanned this code first.'],
    qr_already_used: ['Already used', 'This sign-in has already finished.'],
    number_mismatch: ['Sign-in rejected', 'That was not the number on the other device, so the sign-in was stopped.'],
    not_scanner: ['Not your sign-in', 'Only the phone that scanned this code can answer it.'],
    rate_limited: ['Too many attempts', 'Wait a minute and try again.'],
  };

  function show(view) { for (const s of main.querySelectorAll('section')) s.hidden = s.id !== 'view-' + view; }

  function done(title, detail, state) {
    main.dataset.state = state;
    document.getElementById('done-title').textContent = title;
    document.getElementById('done-detail').textContent = detail;
    show('done');
  }

  async function problem(res) {
    const body = await res.json().catch(() => ({}));
    const [title, detail] = messages[body.code] || [body.title || 'Something went wrong', body.detail || ''];
    done(title, detail, body.code || 'error');
  }

  // The stored sign-in is missing or was refused: say why and what to do, never a dead end.
  function signedOut() {
    main.dataset.state = 'signed-out';
    document.getElementById('signed-out-reason').textContent = PhoneSession.signedOutReason();
    show('signed-out');
  }

  function failed(e) {
    if (e && e.code === 'signed_out') signedOut();
    else done('Something went wrong', (e && e.message) || String(e), 'error');
  }

  async function scan() {
    if (!PhoneSession.signedIn()) return signedOut();
    const res = await PhoneSession.api('/v1/qr/scan', { method: 'POST', body: JSON.stringify({ token }) });
    if (!res.ok) return problem(res);
    const scan = await res.json();
    sessionId = scan.sessionId;
    const r = scan.requester;
    document.getElementById('ask-title').textContent = `Sign in on “${r.clientName}”?`;
    document.getElementById('client-name').textContent = `${r.clientName} (${r.clientKind})`;
    document.getElementById('client-browser').textContent = `${r.browser} on ${r.os}`;
    document.getElementById('client-ip').textContent = r.ip;
    document.getElementById('client-time').textContent = new Date(r.createdAt).toLocaleString();
    document.getElementById('client-network').textContent = r.sameNetwork ? 'Same network as this phone' : 'A different network';
    document.getElementById('network-warning').hidden = r.sameNetwork;
    document.getElementById('approve-before').textContent = new Date(scan.approveBefore).toLocaleTimeString();
    const choices = document.getElementById('choices');
    choices.replaceChildren(...scan.numberChoices.map(n => {
      const b = document.createElement('button');
      b.className = 'primary';
      b.textContent = n;
      b.dataset.number = n;
      b.addEventListener('click', () => answer('approve', { number: n }).catch(failed));
      return b;
    }));
    main.dataset.state = 'ask';
    main.dataset.sameNetwork = String(r.sameNetwork);
    show('ask');
  }

  async function answer(action, body) {
    for (const b of main.querySelectorAll('button')) b.disabled = true;
    const res = await PhoneSession.api(`/v1/qr/sessions/${sessionId}/${action}`, { method: 'POST', body: body ? JSON.stringify(body) : undefined });
    if (!res.ok) return problem(res);
    if (action === 'approve') done('Approved', 'The other device is being signed in.', 'approved');
    else done('Rejected', 'Nothing was signed in.', 'rejected');
  }

  document.getElementById('reject').addEventListener('click', () => answer('reject').catch(failed));
  scan().catch(failed);
})();
