// A signed-in phone in a browser: scan by pasting or by camera, list devices, revoke any of them.
(() => {
  const main = document.getElementById('phone');
  const $ = id => document.getElementById(id);
  function show(view) { for (const s of main.querySelectorAll('section')) s.hidden = s.id !== 'view-' + view; }

  // Every way the sign-in can be gone ends here, so the page never stays on an empty card.
  function signedOut() {
    main.dataset.state = 'signed-out';
    $('signed-out-reason').textContent = PhoneSession.signedOutReason();
    show('signed-out');
  }

  function failed(e) {
    if (e && e.code === 'signed_out') return signedOut();
    main.dataset.state = 'error';
    $('error-detail').textContent = (e && e.message) || String(e);
    show('error');
  }

  // A response the page cannot use: the error view with the server's own words.
  async function unexpected(res) {
    const body = await res.json().catch(() => ({}));
    return new Error(body.detail || body.title || 'The server answered HTTP ' + res.status + '.');
  }

  async function load() {
    if (!PhoneSession.signedIn()) return signedOut();
    const me = await PhoneSession.api('/v1/me');
    if (!me.ok) throw await unexpected(me);
    $('display-name').textContent = (await me.json()).displayName;
    await loadDevices();
    await loadActivity();
    main.dataset.state = 'home';
    show('home');
  }

  async function loadDevices() {
    const res = await PhoneSession.api('/v1/devices');
    if (!res.ok) throw await unexpected(res);
    const devices = await res.json();
    document.getElementById('devices').replaceChildren(...devices.filter(d => !d.revoked).map(d => {
      const li = document.createElement('li');
      li.dataset.deviceId = d.id;
      const label = document.createElement('span');
      label.innerHTML = '<strong></strong><br><span class="small"></span>';
      label.querySelector('strong').textContent = d.name + (d.current ? ' (this phone)' : '');
      label.querySelector('.small').textContent = `${d.kind} · last seen ${new Date(d.lastSeenAt).toLocaleString()} · ${d.ip}`;
      li.append(label);
      if (!d.current) {
        const b = document.createElement('button');
        b.className = 'danger';
        b.textContent = 'Sign out';
        b.addEventListener('click', () => (async () => {
          const r = await PhoneSession.api('/v1/devices/' + encodeURIComponent(d.id), { method: 'DELETE' });
          $('phone-error').textContent = r.ok ? '' : 'Could not sign that device out.';
          await loadDevices();
          await loadActivity();
        })().catch(failed));
        li.append(b);
      }
      return li;
    }));
  }

  // The account's audit trail, newest first: what happened, when, from where.
  const activityText = {
    qr_scanned: 'Scanned a sign-in code', qr_approved: 'Approved a sign-in', qr_rejected: 'Rejected a sign-in',
    device_linked: 'New device signed in', device_revoked: 'Signed a device out', refresh_token_reused: 'Suspicious token reuse; device signed out',
  };

  async function loadActivity() {
    const res = await PhoneSession.api('/v1/me/audit?limit=20');
    if (!res.ok) return;
    const entries = await res.json();
    if (!entries.length) {
      const none = document.createElement('li');
      none.className = 'small';
      none.textContent = 'Nothing yet.';
      document.getElementById('activity').replaceChildren(none);
      return;
    }
    document.getElementById('activity').replaceChildren(...entries.map(e => {
      const li = document.createElement('li');
      li.dataset.action = e.action;
      const title = document.createElement('strong');
      title.textContent = activityText[e.action] || e.action;
      const small = document.createElement('span');
      small.className = 'small';
      small.textContent = [new Date(e.at).toLocaleString(), e.client, e.ip, e.detail].filter(Boolean).join(' · ');
      li.append(title, document.createElement('br'), small);
      return li;
    }));
  }

  function openCode(text) {
    // A code's link is …/l/#<token> (older codes: …/l/<token>), or the bare token; the token goes on in the fragment.
    const m = /\/l\/#?([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)/.exec(text) || /^#?([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(text.trim());
    if (m) location.href = '/l/#' + m[1];
    else $('phone-error').textContent = 'That is not a sign-in code.';
  }

  $('scan-form').addEventListener('submit', e => { e.preventDefault(); openCode($('scan-input').value); });
  $('camera').addEventListener('click', async () => {
    // The browser's own barcode detector where there is one; pasting works everywhere.
    if (!('BarcodeDetector' in window)) { $('phone-error').textContent = 'This browser cannot read QR codes; paste the link instead.'; return; }
    const video = $('video');
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
    } catch (e) {
      // No camera, permission refused, or not a secure origin (http on another host than localhost).
      $('phone-error').textContent = 'The camera could not be opened (' + (e.message || e.name) + '); paste the link instead.';
      return;
    }
    video.hidden = false;
    await video.play();
    const detector = new BarcodeDetector({ formats: ['qr_code'] });
    const look = async () => {
      const codes = await detector.detect(video).catch(() => []);
      if (codes.length) { video.srcObject.getTracks().forEach(t => t.stop()); openCode(codes[0].rawValue); }
      else requestAnimationFrame(look);
    };
    look();
  });

  $('retry').addEventListener('click', () => location.reload());
  load().catch(failed);
})();
