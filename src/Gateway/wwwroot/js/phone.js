// A signed-in phone in a browser: scan by pasting or by camera, list devices, revoke any of them.
(() => {
  const main = document.getElementById('phone');
  function show(view) { for (const s of main.querySelectorAll('section')) s.hidden = s.id !== 'view-' + view; }

  async function load() {
    if (!PhoneSession.signedIn()) { main.dataset.state = 'signed-out'; show('signed-out'); return; }
    const me = await PhoneSession.api('/v1/me');
    if (!me.ok) { main.dataset.state = 'signed-out'; show('signed-out'); return; }
    document.getElementById('display-name').textContent = (await me.json()).displayName;
    await loadDevices();
    await loadActivity();
    main.dataset.state = 'home';
    show('home');
  }

  async function loadDevices() {
    const res = await PhoneSession.api('/v1/devices');
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
        b.addEventListener('click', async () => {
          const r = await PhoneSession.api('/v1/devices/' + encodeURIComponent(d.id), { method: 'DELETE' });
          if (!r.ok) document.getElementById('phone-error').textContent = 'Could not sign that device out.';
          await loadDevices();
          await loadActivity();
        });
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
    const m = /\/l\/([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)/.exec(text) || /^([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)$/.exec(text.trim());
    if (m) location.href = '/l/' + m[1];
    else document.getElementById('phone-error').textContent = 'That is not a sign-in code.';
  }

  document.getElementById('scan-form').addEventListener('submit', e => { e.preventDefault(); openCode(document.getElementById('scan-input').value); });
  document.getElementById('camera').addEventListener('click', async () => {
    // The browser's own barcode detector where there is one; pasting works everywhere.
    if (!('BarcodeDetector' in window)) { document.getElementById('phone-error').textContent = 'This browser cannot read QR codes; paste the link instead.'; return; }
    const video = document.getElementById('video');
    video.srcObject = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
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

  load().catch(e => { document.getElementById('phone-error').textContent = String(e); });
})();
