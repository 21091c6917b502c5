// The cluster dashboard: sign in with the operator key (a form post; the server sets an HttpOnly cookie), then
// follow /hubs/dashboard, which pushes a snapshot every second. Nothing here ever reloads the page.
(() => {
  const main = document.getElementById('dashboard');
  const $ = id => document.getElementById(id);
  const SVG = 'http://www.w3.org/2000/svg';
  let connection = null;
  let newest = 0;

  function show(view) { for (const s of main.querySelectorAll(':scope > section')) s.hidden = s.id !== 'view-' + view; }

  function signedOut(message) {
    main.dataset.state = 'signed-out';
    $('sign-in-error').textContent = message || '';
    show('sign-in');
    $('key').focus();
  }

  async function start() {
    const failed = new URLSearchParams(location.search).get('signin') === 'failed';
    if (location.search) history.replaceState(null, '', location.pathname);
    const res = await fetch('/v1/dashboard', { cache: 'no-store' });
    if (res.status === 401) return signedOut(failed ? 'That is not the operator key.' : '');
    if (!res.ok) throw new Error('The dashboard could not be loaded (HTTP ' + res.status + ').');
    render(await res.json());
    main.dataset.state = 'live';
    show('live');
    await follow();
  }

  async function follow() {
    connection = new signalR.HubConnectionBuilder().withUrl('/hubs/dashboard').withAutomaticReconnect().build();
    connection.on('snapshot', render);
    // The sign-in ended (signed out here or on another tab or node, or expired): the server closes the feed.
    connection.on('signedOut', () => connection.stop());
    connection.onreconnecting(async () => {
      $('live-status').textContent = 'reconnecting…';
      // A feed closed because the sign-in ended never comes back: stop retrying and show the form.
      const res = await fetch('/v1/dashboard', { cache: 'no-store' }).catch(() => null);
      if (res && res.status === 401) connection.stop();
    });
    connection.onreconnected(() => { $('live-status').textContent = 'live'; });
    // Closed for good (signed out, the cookie expired, the key changed): back to the sign-in form if the server says so.
    connection.onclose(async () => {
      $('live-status').textContent = 'disconnected';
      const res = await fetch('/v1/dashboard', { cache: 'no-store' }).catch(() => null);
      if (res && res.status === 401) signedOut('Your dashboard session ended; sign in again.');
    });
    await connection.start();
    const held = Object.values(connection.connection.transport || {});
    const transport = held.some(v => v instanceof WebSocket) ? 'WebSockets' : held.some(v => typeof EventSource !== 'undefined' && v instanceof EventSource) ? 'ServerSentEvents' : 'LongPolling';
    main.dataset.transport = transport;
    $('live-status').textContent = 'live over ' + transport;
  }

  // ---- rendering -------------------------------------------------------------------------------------------

  function render(d) {
    if (d.seq <= newest && d.self === main.dataset.self) return; // an older push overtaken by a newer one
    newest = d.seq;
    main.dataset.self = d.self;
    main.dataset.seq = String(d.seq);
    renderSilos(d);
    renderSessions(d.sessions);
    renderActivations(d.activations);
    renderRates(d);
    renderRuntime(d);
    renderAccounts(d.accounts);
    renderAudit(d.audit);
  }

  function cell(text, className) {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function renderSilos(d) {
    $('silos').replaceChildren(...d.silos.map(s => {
      const tr = document.createElement('tr');
      tr.dataset.siloId = s.id;
      tr.dataset.status = s.status;
      tr.append(cell(s.id + (s.self ? ' (this node)' : '')), cell(s.address), cell(s.gateway || '–', 'gateway'),
        cell(s.status, 'status-' + s.status.toLowerCase()), cell(new Date(s.startedAt).toLocaleTimeString()),
        cell(s.heartbeatAgeSeconds.toFixed(1) + ' s ago'), cell(String(s.activations), 'activations'),
        cell(s.servedPerSecond.toFixed(1), 'served'));
      return tr;
    }));
  }

  function renderSessions(sessions) {
    $('sessions').replaceChildren(...Object.entries(sessions).map(([state, n]) => {
      const li = document.createElement('li');
      li.dataset.state = state;
      li.append(state + ' ');
      const b = document.createElement('span');
      b.className = 'count';
      b.textContent = String(n);
      li.append(b);
      return li;
    }));
  }

  // Orleans names grain types by class ("QrOrleans.Grains.QrSessions.QrSessionGrain"): the last part is enough.
  function renderActivations(activations) {
    const rows = Object.entries(activations || {});
    $('activations-empty').hidden = rows.length > 0;
    $('activations-table').hidden = rows.length === 0;
    $('activations').replaceChildren(...rows.map(([type, n]) => {
      const tr = document.createElement('tr');
      tr.dataset.grainType = type;
      const name = cell(type.split(/[.,]/).filter(Boolean).pop() || type);
      name.title = type;
      tr.append(name, cell(String(n), 'count'));
      return tr;
    }));
  }

  function duration(seconds) {
    if (seconds == null) return '–';
    return seconds < 1 ? Math.round(seconds * 1000) + ' ms' : seconds.toFixed(seconds < 10 ? 2 : 1) + ' s';
  }

  function renderRates(d) {
    const minutes = d.minutes;
    $('ceremonies-minute').textContent = String(minutes.length ? minutes[minutes.length - 1].ceremonies : 0);
    $('ceremonies-window').textContent = String(d.totals.ceremonies);
    for (const el of document.querySelectorAll('.window-minutes')) el.textContent = String(d.totals.windowMinutes);
    $('ceremony-p50').textContent = duration(d.totals.ceremonyP50);
    $('ceremony-p99').textContent = duration(d.totals.ceremonyP99);
    $('notify-p50').textContent = duration(d.totals.notifyP50);
    $('notify-p99').textContent = duration(d.totals.notifyP99);
    barChart($('chart-ceremonies'), minutes.map(m => m.ceremonies), minutes);
    lineChart($('chart-ceremony-latency'), minutes.map(m => m.ceremonyP50), minutes.map(m => m.ceremonyP99), minutes);
    lineChart($('chart-notify-latency'), minutes.map(m => m.notifyP50), minutes.map(m => m.notifyP99), minutes);
  }

  function svg(tag, attrs) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    return el;
  }

  const W = 300, H = 90, PAD = 14;

  function frame(minutes, label) {
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label });
    root.append(svg('line', { x1: 0, y1: H - PAD, x2: W, y2: H - PAD, class: 'axis' }));
    if (minutes.length) {
      const first = svg('text', { x: 0, y: H - 2 });
      first.textContent = new Date(minutes[0].minute).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
      const last = svg('text', { x: W, y: H - 2, 'text-anchor': 'end' });
      last.textContent = 'now';
      root.append(first, last);
    }
    return root;
  }

  function barChart(host, values, minutes) {
    const root = frame(minutes, 'ceremonies per minute');
    const max = Math.max(1, ...values);
    const slot = W / Math.max(1, values.length);
    values.forEach((v, i) => {
      const h = (H - 2 * PAD) * v / max;
      const bar = svg('rect', { x: i * slot + 2, y: H - PAD - h, width: Math.max(1, slot - 4), height: h, class: 'bar' });
      const title = svg('title');
      title.textContent = v + ' completed';
      bar.append(title);
      root.append(bar);
    });
    const top = svg('text', { x: 0, y: 10 });
    top.textContent = 'max ' + max;
    root.append(top);
    host.replaceChildren(root);
  }

  function lineChart(host, p50, p99, minutes) {
    const root = frame(minutes, 'p50 and p99 per minute');
    const max = Math.max(0.001, ...p50.filter(v => v != null), ...p99.filter(v => v != null));
    const slot = W / Math.max(1, p50.length - 1);
    const path = values => values.map((v, i) => v == null ? null : `${(i * slot).toFixed(1)},${(H - PAD - (H - 2 * PAD) * v / max).toFixed(1)}`)
      .filter(Boolean).join(' ');
    for (const [values, cls] of [[p99, 'p99'], [p50, 'p50']]) {
      const points = path(values);
      if (!points) continue;
      root.append(svg('polyline', { points, class: cls }));
      for (const p of points.split(' ')) { const [x, y] = p.split(','); root.append(svg('circle', { cx: x, cy: y, r: 2, class: cls })); }
    }
    const top = svg('text', { x: 0, y: 10 });
    top.textContent = 'max ' + duration(max) + ' · solid p50, dashed p99';
    root.append(top);
    host.replaceChildren(root);
  }

  function renderRuntime(d) {
    $('reminders-count').textContent = d.reminders.count == null ? '–' : String(d.reminders.count);
    $('turn-conflicts').textContent = String(d.totals.turnConflicts);
  }

  function when(t) { return t ? new Date(t).toLocaleString() : '–'; }

  function renderAccounts(a) {
    const rows = a.accounts || [];
    $('accounts-empty').hidden = rows.length > 0;
    $('accounts-table').hidden = rows.length === 0;
    $('accounts').replaceChildren(...rows.map(r => {
      const tr = document.createElement('tr');
      tr.dataset.accountId = r.id;
      tr.dataset.state = r.state;
      tr.append(cell(r.displayName && r.displayName !== r.id ? `${r.id} (${r.displayName})` : r.id), cell(r.platform), cell(r.state), cell(when(r.stateSince)),
        cell(r.pairingCycle != null ? `${r.pairingCycle} of ${r.maxCycles}` : '–'), cell(when(r.cooldownUntil)),
        cell(`${r.rateAvailable} / ${r.rateCapacity}`), cell(r.holder || '–'),
        cell(r.lastErrorClass ? `${r.lastErrorClass} (${when(r.lastErrorAt)})` : '–'));
      return tr;
    }));
    const inbox = a.inbox || [];
    $('inbox-empty').hidden = inbox.length > 0;
    $('inbox').replaceChildren(...inbox.map(item => {
      const li = document.createElement('li');
      li.dataset.accountId = item.accountId;
      const qr = document.createElement('div');
      qr.className = 'qr';
      const parsed = new DOMParser().parseFromString(item.qrSvg, 'image/svg+xml').documentElement;
      if (parsed && parsed.nodeName === 'svg') qr.append(document.importNode(parsed, true));
      const text = document.createElement('div');
      text.textContent = `${item.caption} (expires ${new Date(item.expiresAt).toLocaleTimeString()})`;
      li.append(qr, text);
      return li;
    }));
  }

  function renderAudit(events) {
    $('audit-empty').hidden = events.length > 0;
    $('audit').replaceChildren(...events.map(e => {
      const li = document.createElement('li');
      li.dataset.action = e.action;
      li.dataset.userId = e.userId;
      li.textContent = `${new Date(e.at).toLocaleTimeString()} · ${e.action} · user ${e.userId.slice(0, 8)}… · ${e.ip}` +
        (e.client ? ` · ${e.client}` : '') + (e.detail ? ` · ${e.detail}` : '');
      return li;
    }));
  }

  start().catch(e => { main.dataset.state = 'error'; $('live-status').textContent = String(e.message || e); show('live'); });
})();
