// Audit log (administrators): newest first, a page at a time
// (GET /audit?order=desc&before=ID); "Older" pages back, "Newest" returns.
import {h, clear, setText, fmtTime, table, hashWith} from '../dom.js';
import {get} from '../api.js';
import {errorBox} from '../app.js';

const LIMIT = 200;

export async function render(root, ctx) {
  const before = Math.max(0, Number(ctx.query.get('before')) || 0);
  const out = h('div', {class: 'table-wrap', id: 'audit'});
  const note = h('span', {class: 'muted small', id: 'audit-note'});
  const from = h('input', {type: 'number', min: 0, value: before ? String(before) : '', placeholder: 'newest', id: 'audit-before', size: 8});
  const filter = h('input', {placeholder: 'filter these rows', id: 'audit-filter'});
  const go = h('form', {class: 'row'}, h('label', {class: 'inline'}, 'Rows before id', from), h('button', {class: 'btn', type: 'submit'}, 'Go'));
  go.addEventListener('submit', (e) => { e.preventDefault(); ctx.navigate(hashWith('/audit', {before: Number(from.value) > 0 ? from.value : ''})); });
  const nav = h('div', {class: 'row', id: 'audit-nav'});
  root.append(h('h1', null, 'Audit log'), h('section', {class: 'card'}, h('div', {class: 'row spread'}, go, filter, note), nav, out));
  let rows;
  try {
    rows = (await get(`/audit?order=desc&limit=${LIMIT}${before ? `&before=${before}` : ''}`)).audit || [];
  } catch (e) {
    out.append(errorBox(e));
    return;
  }
  // a server without order=desc answers oldest first: say so, show newest first anyway
  const asc = rows.length > 1 && Number(rows[0].id) < Number(rows[rows.length - 1].id);
  if (asc) {
    rows.reverse();
    nav.append(h('div', {class: 'notice warn', id: 'audit-asc'}, 'The server does not list the audit log newest first yet: these are its oldest rows.'));
  }
  if (before) nav.append(h('a', {class: 'btn small', id: 'audit-newest', href: hashWith('/audit', {})}, '⇤ Newest'));
  const last = rows.length ? Number(rows[rows.length - 1].id) : 0;
  if (!asc && rows.length === LIMIT && last > 1) nav.append(h('a', {class: 'btn small', id: 'audit-older', href: hashWith('/audit', {before: last})}, 'Older →'));
  const draw = () => {
    const t = filter.value.trim().toLowerCase();
    const shown = t ? rows.filter((r) => Object.values(r).join(' ').toLowerCase().includes(t)) : rows;
    setText(note, `${shown.length} rows${rows.length ? ` (ids ${rows[0].id}–${rows[rows.length - 1].id}, newest first)` : ''}`);
    clear(out).append(table([
      {title: 'ID', get: (r) => String(r.id)},
      {title: 'Time', get: (r) => h('span', {class: 'small nowrap'}, fmtTime(r.time))},
      {title: 'Actor', get: (r) => r.actor || ''},
      {title: 'Source', get: (r) => h('span', {class: 'mono small'}, r.source || '')},
      {title: 'Action', get: (r) => h('strong', null, r.action || '')},
      {title: 'Target', get: (r) => h('span', {class: 'break'}, r.target || '')},
      {title: 'Outcome', get: (r) => h('span', {class: ['state', r.outcome === 'ok' ? 'st-ok' : 'st-failed']}, r.outcome || '')},
      {title: 'Detail', get: (r) => h('span', {class: 'small break'}, r.detail || '')},
    ], shown, {empty: 'No audit row here.', rowAttrs: (r) => ({dataset: {id: String(r.id)}})}));
  };
  filter.addEventListener('input', draw);
  draw();
}
