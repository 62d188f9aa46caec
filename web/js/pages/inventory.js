// Inventory: hosts matching a selector, their IDCs and groups.
import {h, clear, setText, table, hashWith, debounce} from '../dom.js';
import {get} from '../api.js';
import {errorBox} from '../app.js';

const ROWS = 500;

export async function render(root, ctx) {
  const selector = ctx.query.get('selector') || 'all';
  const input = h('input', {id: 'inv-selector', class: 'mono wide', value: selector, autocomplete: 'off', spellcheck: 'false'});
  const form = h('form', {class: 'row', id: 'inv-form'}, h('label', {class: 'wide'}, 'Selector', input), h('button', {class: 'btn', type: 'submit'}, 'Show'));
  form.addEventListener('submit', (e) => { e.preventDefault(); ctx.navigate(hashWith('/inventory', {selector: input.value.trim() || 'all'})); });
  const summary = h('div', {class: 'cols', id: 'inv-summary'});
  const list = h('div', {class: 'table-wrap', id: 'inv-hosts'});
  const note = h('p', {class: 'muted small'});
  const textFilter = h('input', {placeholder: 'filter these rows', id: 'inv-filter'});
  root.append(h('h1', null, 'Inventory'),
    h('section', {class: 'card'}, form, h('p', {class: 'small muted'}, 'Selectors: all, idc:NAME, group:NAME, a host name or glob (web-*), A,B for union, !A to exclude.')),
    summary,
    h('section', {class: 'card'}, h('div', {class: 'row spread'}, h('h2', null, 'Hosts'), textFilter), note, list),
    h('section', {class: 'card'}, h('h2', null, 'Facts, adding and importing hosts'),
      h('div', {class: 'notice unavailable', id: 'inv-unavailable'}, 'Not available yet in the console: the REST API has no route for host facts, adding or importing hosts. Use omctl: hosts show NAME (facts), hosts add, hosts import FILE.')));
  let hosts;
  try {
    hosts = (await get('/hosts?selector=' + encodeURIComponent(selector))).hosts || [];
  } catch (e) {
    list.append(errorBox(e));
    return;
  }
  const idcs = new Map(), groups = new Map();
  for (const x of hosts) {
    idcs.set(x.idc, (idcs.get(x.idc) || 0) + 1);
    for (const g of x.groups || []) if (g !== x.idc) groups.set(g, (groups.get(g) || 0) + 1);
  }
  const chips = (m, kind) => [...m].sort().map(([k, n]) => h('a', {class: 'badge', href: hashWith('/inventory', {selector: `${kind}:${k}`})}, `${k} (${n})`));
  summary.append(
    h('section', {class: 'card'}, h('h2', null, `IDCs (${idcs.size})`), h('div', {class: 'row'}, chips(idcs, 'idc'))),
    h('section', {class: 'card'}, h('h2', null, `Groups (${groups.size})`), h('div', {class: 'row'}, groups.size ? chips(groups, 'group') : h('span', {class: 'muted'}, 'none'))));
  const draw = () => {
    const t = textFilter.value.trim().toLowerCase();
    const rows = t ? hosts.filter((x) => `${x.name} ${x.addr} ${x.idc} ${(x.groups || []).join(' ')}`.toLowerCase().includes(t)) : hosts;
    setText(note, `${rows.length} host${rows.length === 1 ? '' : 's'}${rows.length > ROWS ? `, first ${ROWS} shown` : ''}`);
    clear(list).append(table([
      {title: 'Host', get: (x) => h('strong', {class: 'mono'}, x.name)},
      {title: 'Address', get: (x) => h('span', {class: 'mono'}, `${x.addr}:${x.port}`)},
      {title: 'User', get: (x) => x.user || ''},
      {title: 'IDC', get: (x) => x.idc},
      {title: 'Groups', get: (x) => (x.groups || []).filter((g) => g !== x.idc).join(', ')},
      {title: '', get: (x) => ctx.can('run') ? h('a', {class: 'btn small', href: hashWith('/run', {selector: x.name})}, 'Run…') : ''},
    ], rows.slice(0, ROWS), {empty: 'No host matches.', rowAttrs: (x) => ({dataset: {host: x.name}})}));
  };
  const d = debounce(draw, 150);
  textFilter.addEventListener('input', d);
  draw();
  return () => d.cancel();
}
