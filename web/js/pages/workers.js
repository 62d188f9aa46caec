// Workers and their keys: accept, reject, revoke (checked against the
// fingerprint shown).
import {h, clear, fmtAgo, fmtTime, table} from '../dom.js';
import {get, post} from '../api.js';
import {errorBox} from '../app.js';

export async function render(root, ctx) {
  const wEl = h('div', {class: 'table-wrap', id: 'workers'});
  const kEl = h('div', {class: 'table-wrap', id: 'keys'});
  root.append(h('h1', null, 'Workers & keys'),
    h('section', {class: 'card'}, h('h2', null, 'Workers'), wEl),
    h('section', {class: 'card'}, h('h2', null, 'Worker keys'),
      h('p', {class: 'small muted'}, 'Compare a key\'s fingerprint with the one the worker printed (om-worker --print-public-key) before accepting it.'), kEl));

  async function workers() {
    try {
      const ws = (await get('/workers')).workers || [];
      clear(wEl).append(table([
        {title: 'Worker', get: (w) => h('span', null, h('span', {class: ['dot', w.connected ? 'on' : 'off']}), h('strong', null, w.name))},
        {title: 'IDC', get: (w) => w.idc},
        {title: 'State', get: (w) => w.connected ? 'connected' : 'disconnected'},
        {title: 'Running', get: (w) => String(w.running || 0)},
        {title: 'Last seen', get: (w) => w.last_seen_ms ? fmtAgo(w.last_seen_ms) : ''},
        {title: 'Fingerprint', get: (w) => h('span', {class: 'fp'}, w.fingerprint || '')},
      ], ws, {empty: 'No worker.', rowAttrs: (w) => ({dataset: {worker: w.name}})}));
    } catch (e) {
      if (e.status !== 401) clear(wEl).append(errorBox(e));
    }
  }

  async function keys() {
    if (!ctx.can('admin')) { clear(kEl).append(h('div', {class: 'notice'}, 'Worker keys are for administrators.')); return; }
    try {
      const ks = (await get('/keys')).keys || [];
      clear(kEl).append(table([
        {title: 'ID', get: (k) => String(k.id)},
        {title: 'Name', get: (k) => h('strong', null, k.name || '')},
        {title: 'IDC', get: (k) => k.idc || ''},
        {title: 'State', get: (k) => h('span', {class: ['badge', 'key-' + k.state]}, k.state)},
        {title: 'Fingerprint', get: (k) => h('span', {class: 'fp'}, k.fingerprint || '')},
        {title: 'First seen', get: (k) => h('span', {class: 'small nowrap'}, fmtTime(k.first_seen))},
        {title: 'Last seen', get: (k) => h('span', {class: 'small nowrap'}, fmtTime(k.last_seen))},
        {title: '', get: (k) => actions(k)},
      ], ks, {empty: 'No key.', rowAttrs: (k) => ({dataset: {key: String(k.id)}})}));
    } catch (e) {
      if (e.status !== 401) clear(kEl).append(errorBox(e));
    }
  }

  function actions(k) {
    const acts = [];
    if (k.state === 'pending' || k.state === 'rejected') acts.push(['accept', 'Accept', '']);
    if (k.state === 'pending') acts.push(['reject', 'Reject', 'danger']);
    if (k.state === 'accepted') acts.push(['revoke', 'Revoke', 'danger']);
    return h('div', {class: 'row nowrap'}, acts.map(([a, t, cls]) => {
      const b = h('button', {type: 'button', class: ['btn', 'small', cls], dataset: {action: a}}, t);
      b.addEventListener('click', async () => {
        if (!confirm(`${t} the key of '${k.name}' (IDC ${k.idc})?\n\nFingerprint:\n${k.fingerprint}`)) return;
        b.disabled = true;
        try {
          const r = await post(`/keys/${encodeURIComponent(k.id)}/${a}`, {fingerprint: k.fingerprint});
          ctx.banner(r.text || `${a}: done`, 'info');
        } catch (e) {
          ctx.banner(`${t} failed: ${e.message}`);
        }
        keys();
        workers();
      });
      return b;
    }));
  }

  await Promise.all([workers(), keys()]);
  const t = setInterval(workers, 5000);
  return () => clearInterval(t);
}
