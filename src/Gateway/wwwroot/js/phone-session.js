// A signed-in phone in a browser: keeps the refresh token in localStorage, access tokens in memory.
window.PhoneSession = (() => {
  const KEY = 'qrorleans.phone.refresh';
  // Why the server last refused this browser's refresh token ('refresh_token_reused', 'invalid_refresh_token'),
  // kept across reloads so the page still says what happened instead of just "signed out".
  const REFUSAL = 'qrorleans.phone.refusal';
  let access = null;

  // "#refresh=<token>" (printed by the demo, or made by the tests) signs this browser in once.
  function adoptFragment() {
    const m = /[#&]refresh=([^&]+)/.exec(location.hash);
    if (m) {
      localStorage.setItem(KEY, decodeURIComponent(m[1]));
      localStorage.removeItem(REFUSAL);
      history.replaceState(null, '', location.pathname + location.search);
    }
  }

  function signedOutError() {
    return Object.assign(new Error('signed out'), { code: 'signed_out' });
  }

  async function refresh() {
    const token = localStorage.getItem(KEY);
    if (!token) return null;
    const res = await fetch('/v1/auth/refresh', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ refreshToken: token }) });
    // Only a refusal of the token itself ends the sign-in; a busy or unreachable server must not sign the phone out.
    if (res.status === 400 || res.status === 401) {
      localStorage.setItem(REFUSAL, (await res.json().catch(() => ({}))).code || 'invalid_refresh_token');
      localStorage.removeItem(KEY);
      access = null;
      return null;
    }
    if (!res.ok) throw new Error('The server could not renew this phone\'s sign-in (HTTP ' + res.status + ').');
    const body = await res.json();
    localStorage.setItem(KEY, body.refreshToken);
    access = body.accessToken;
    return body;
  }

  // Calls the API as this phone. Throws an error with code 'signed_out' when the sign-in is gone (the stored
  // refresh token was refused, or there is none), so every page can show its signed-out view.
  async function api(path, options = {}) {
    if (!access && !(await refresh())) throw signedOutError();
    const call = () => fetch(path, { ...options, headers: { ...(options.headers || {}), Authorization: 'Bearer ' + access, ...(options.body ? { 'Content-Type': 'application/json' } : {}) } });
    let res = await call();
    if (res.status === 401) {
      if (!(await refresh())) throw signedOutError();
      res = await call();
    }
    return res;
  }

  // What the signed-out views say happened, by the server's refusal code.
  function signedOutReason() {
    switch (localStorage.getItem(REFUSAL)) {
      case null: return 'This browser holds no phone sign-in.';
      case 'refresh_token_reused': return 'This phone link was already used. A phone link signs in one browser, once: '
        + 'a used one coming back looks like a stolen copy, so the server signed that phone out.';
      default: return 'This phone\'s sign-in is no longer valid: it was signed out from another device, '
        + 'or its phone link was opened again somewhere else.';
    }
  }

  adoptFragment();
  return {
    api, refresh,
    signedIn: () => !!localStorage.getItem(KEY),
    signedOutReason,
    signOut: () => { localStorage.removeItem(KEY); access = null; },
  };
})();
