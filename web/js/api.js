// The REST API (/api/v1): JSON in and out, the session cookie (HttpOnly,
// sent by the browser), X-CSRF-Token on every state-changing call, a time
// limit on every request.

const BASE = '/api/v1';
let csrf = null;
const listeners = new Set();

export class ApiError extends Error {
  constructor(status, body, path) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.field = body && body.field;
    this.path = path;
    this.retryAfter = null;
  }
  // a route the server does not have (yet): 404 "no such route", 405 (the
  // path exists with other methods only), 501
  get missing() { return (this.status === 404 && /no such route/i.test(this.message)) || this.status === 405 || this.status === 501; }
}

export function setCsrf(token) { csrf = token || null; }
export function onUnauthorized(fn) { listeners.add(fn); }

export async function api(path, opts = {}) {
  const method = opts.method || 'GET';
  const headers = {Accept: opts.raw ? '*/*' : 'application/json'};
  let body;
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(opts.body);
  }
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), opts.timeout || 30000);
  let res;
  try {
    res = await fetch(BASE + path, {method, headers, body, credentials: 'same-origin', signal: ctl.signal, cache: 'no-store'});
  } catch (e) {
    clearTimeout(timer);
    const err = new ApiError(0, {error: e.name === 'AbortError' ? 'the server did not answer in time' : 'cannot reach the server'}, path);
    throw err;
  }
  try {
    if (opts.raw && res.ok) return new Uint8Array(await res.arrayBuffer());
    const text = await res.text();
    let j = null;
    if (text) {
      try { j = JSON.parse(text); } catch { j = {error: `HTTP ${res.status}: not JSON`}; }
    }
    if (!res.ok) {
      const err = new ApiError(res.status, j, path);
      err.retryAfter = res.headers.get('Retry-After');
      if (res.status === 401 && !opts.noAuthEvent) for (const f of listeners) f(err);
      throw err;
    }
    return j || {};
  } finally {
    clearTimeout(timer);
  }
}

export const get = (path, opts) => api(path, opts);
export const post = (path, body, opts = {}) => api(path, {...opts, method: 'POST', body: body === undefined ? {} : body});
export const apiUrl = (path) => BASE + path;
