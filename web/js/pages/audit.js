// Audit log (administrators): rows in id order, a page at a time.
import {h, clear, setText, fmtTime, table, hashWith} from '../dom.js';
import {get} from '../api.js';
import {errorBox} from '../app.js';

const LIMIT = 200;

export async function render(root, ctx) {
  const after = Math.max(0, Number(ctx.query.get('after')) || 0);
  const out = h('div', {class: 'table-wrap', id: 'audit'});
  const note = h('span', {class: 'muted small'});
  const from = h('input', {type: 'number', min: 0, value: String(after), id: 'audit-after', size: 8});
  const filter = h('input', {placeholder: 'filter these rows', id: 'audit-filter'});
  const go = h('form', {class: 'row'}, h('label', {class: 'inline'}, 'After row', from), h('button', {class: 'btn', type: 'submit'}, 'Go'));
  go.addEventListener('submit', (e) => { e.preventDefault(); ctx.navigate(hashWith('/audit', {after: from.value})); });
  const nav = h('div', {class: 'row'});
  root.append(h('h1', null, 'Audit log'), h('section', {class: 'card'}, h('div', {class: 'row spread'}, go, filter, note), nav, out));
  let rows;
  try {
    rows = (await get(`/audit?after=${after}&limit=${LIMIT}`)).audit || [];
  } catch (e) {
    out.append(errorBox(e));
    return;
  }
  if (after > 0) nav.append(h('a', {class: 'btn small', href: hashWith('/audit', {after: Math.max(0, after - LIMIT)})}, '← Earlier'));
  if (rows.length === LIMIT) nav.append(h('a', {class: 'btn small', href: hashWith('/audit', {after: rows[rows.length - 1].id})}, 'Later →'));
  const draw = () => {
    const t = filter.value.trim().toLowerCase();
    const shown = t ? rows.filter((r) => Object.values(r).join(' ').toLowerCase().includes(t)) : rows;
    setText(note, `${shown.length} rows${rows.length ? ` (ids ${rows[0].id}–${rows[rows.length - 1].id})` : ''}`);
    clear(out).append(table([
      {title: 'ID', get: (r) => String(r.id)},
      {title: 'Time', get: (r) => h('span', {class: 'small nowrap'}, fmtTime(r.time))},
      {title: 'Actor', get: (r) => r.actor || ''},
      {title: 'Source', get: (r) => h('span', {class: 'mono small'}, r.source || '')},
      {title: 'Action', get: (r) => h('strong', null, r.action || '')},
      {title: 'Target', get: (r) => h('span', {class: 'break'}, r.target || '')},
      {title: 'Outcome', get: (r) => h('span', {class: ['state', r.outcome === 'ok' ? 'st-ok' : 'st-failed']}, r.outcome || '')},
      {title: 'Detail', get: (r) => h('span', {class: 'small break'}, r.detail || '')},
    ], shown, {empty: 'No audit row here.'}));
  };
  filter.addEventListener('input', draw);
  draw();
}
