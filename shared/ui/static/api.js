// The browse endpoints and the token endpoint. Tokens are kept in
// sessionStorage only: they go when the tab closes, and never reach a
// cookie, localStorage or a URL. Requests send no cookies and no cached
// HTTP credentials (credentials: 'omit'), only the bearer token.

const KEY = 'airlock.session';

export const browse = '/airlock/api/browse/';

// session returns {user, token, refresh} of the logged-in user, or null.
export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY));
  } catch {
    return null;
  }
}

function save(s) {
  if (s) sessionStorage.setItem(KEY, JSON.stringify(s));
  else sessionStorage.removeItem(KEY);
}

// ApiError is an answer in the registry's error envelope.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorOf(res) {
  try {
    const b = await res.json();
    const e = b.errors && b.errors[0];
    if (e && e.message) return new ApiError(res.status, e.code, e.message);
  } catch { /* not the error envelope */ }
  return new ApiError(res.status, '', `${res.status} ${res.statusText}`);
}

function send(method, path, params) {
  const q = params ? new URLSearchParams(params).toString() : '';
  const headers = { Accept: 'application/json' };
  const s = session();
  if (s && s.token) headers.Authorization = 'Bearer ' + s.token;
  return fetch(path + (q ? '?' + q : ''), { method, headers, credentials: 'omit', cache: 'no-store' });
}

// expired is set when a session ended (its tokens no longer valid).
let expired = false;

// sessionEnded tells, once, that the session ended since the last call.
export function sessionEnded() {
  const e = expired;
  expired = false;
  return e;
}

// call sends a request; a 401 with a session refreshes the token once and
// retries (without a session when the refresh fails too).
export async function call(method, path, params) {
  let res = await send(method, path, params);
  if (res.status === 401 && session()) {
    if (!(await refresh())) expired = true;
    res = await send(method, path, params);
  }
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

export const get = (page, params) => call('GET', browse + page, params);

async function tokenRequest(form) {
  form.set('service', location.host);
  form.set('client_id', 'airlock-ui');
  const res = await fetch('/v2/token', {
    method: 'POST',
    credentials: 'omit',
    cache: 'no-store',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: form,
  });
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

// login gets a token and a refresh token for user (OAuth2 password grant of /v2/token).
export async function login(user, password) {
  const t = await tokenRequest(new URLSearchParams({ grant_type: 'password', username: user, password, access_type: 'offline' }));
  expired = false;
  save({ user, token: t.access_token || t.token, refresh: t.refresh_token || '' });
}

async function refresh() {
  const s = session();
  save(null);
  if (!s || !s.refresh) return false;
  try {
    const t = await tokenRequest(new URLSearchParams({ grant_type: 'refresh_token', refresh_token: s.refresh }));
    save({ user: s.user, token: t.access_token || t.token, refresh: t.refresh_token || s.refresh });
    return true;
  } catch {
    return false;
  }
}

export function logout() {
  save(null);
  expired = false;
}
