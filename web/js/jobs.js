// Job helpers shared by the live view and the history: every host of a job
// (GET /jobs/{id} lists at most 1000 hosts per state; the rest come page by
// page with ?state=S&after=NAME), and re-run links.
import {get} from './api.js';
import {STATES, FINAL} from './states.js';
import {hashWith} from './dom.js';

const PAGE = 1000;

export async function fetchJobAll(id, {onlyStates} = {}) {
  const first = await get(`/jobs/${encodeURIComponent(id)}`);
  const job = first.job;
  const hosts = [];
  const have = {};
  for (const hst of first.hosts || []) {
    if (onlyStates && !onlyStates.has(hst.state)) continue;
    hosts.push(hst);
    have[hst.state] = (have[hst.state] || 0) + 1;
  }
  const counts = job.counts || {};
  for (const s of STATES) {
    if (onlyStates && !onlyStates.has(s)) continue;
    let got = (first.hosts || []).filter((x) => x.state === s);
    // pages of PAGE while the last page was full and the count says more
    while (got.length === PAGE && (have[s] || 0) < (counts[s] || 0)) {
      const after = got[got.length - 1].host;
      const r = await get(`/jobs/${encodeURIComponent(id)}?state=${s}&after=${encodeURIComponent(after)}&limit=${PAGE}`);
      got = (r.hosts || []).filter((x) => x.state === s);
      if (!got.length) break;
      hosts.push(...got);
      have[s] = (have[s] || 0) + got.length;
    }
  }
  return {job, hosts};
}

export const NOT_OK = new Set([...FINAL].filter((s) => s !== 'ok'));

// The params of jobs this browser submitted (secret ones never stored): only
// a fallback for a re-run when GET /jobs/{id} has no "params" (an older
// server); the run page prefers the server's.
export function rememberParams(id, module, params) {
  try {
    localStorage.setItem('om.job.' + id, JSON.stringify({module, params}));
    // keep the last 200
    const keys = Object.keys(localStorage).filter((k) => k.startsWith('om.job.')).map((k) => Number(k.slice(7))).sort((a, b) => a - b);
    for (const k of keys.slice(0, Math.max(0, keys.length - 200))) localStorage.removeItem('om.job.' + k);
  } catch { /* storage full or off */ }
}

export function recallParams(id) {
  try {
    const s = localStorage.getItem('om.job.' + id);
    return s ? JSON.parse(s) : null;
  } catch { return null; }
}

export function rerunHash(job, hostNames) {
  return hashWith('/run', {
    selector: hostNames ? hostNames.join(',') : job.selector,
    module: job.module,
    from: job.id,
  });
}
