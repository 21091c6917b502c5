// A signed-in phone in a browser: keeps the refresh token in localStorage, access tokens in memory.
window.PhoneSession = (() => {
  const KEY = 'qrorleans.phone.refresh';
  let access = null;

  // "#refresh=<token>" (printed by the demo, or made by the tests) signs this browser in once.
  function adoptFragment() {
    const m = /[#&]refresh=([^&]+)/.exec(location.hash);
    if (m) {
      localStorage.setItem(KEY, decodeURIComponent(m[1]));
      history.replaceState(null, '', location.pathname + location.search);
    }
  }

  async function refresh() {
    const token = localStorage.getItem(KEY);
    if (!token) return null;
    const res = await fetch('/v1/auth/refresh', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refreshToken: token }) });
    if (!res.ok) { localStorage.removeItem(KEY); access = null; return null; }
    const body = await res.json();
    localStorage.setItem(KEY, body.refreshToken);
    access = body.accessToken;
    return body;
  }

  async function api(path, options = {}) {
    if (!access && !(await refresh())) throw Object.assign(new Error('signed out'), { code: 'signed_out' });
    const call = () => fetch(path, { ...options, headers: { ...(options.headers || {}), Authorization: 'Bearer ' + access, ...(options.body ? { 'Content-Type': 'application/json' } : {}) } });
    let res = await call();
    if (res.status === 401 && await refresh()) res = await call();
    return res;
  }

  adoptFragment();
  return { api, refresh, signedIn: () => !!localStorage.getItem(KEY), signOut: () => { localStorage.removeItem(KEY); access = null; } };
})();
