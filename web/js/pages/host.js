// One host (#/hosts/NAME): its inventory fields and the facts its last
// "facts" job gathered, as a key/value tree (text only).
import {h, fmtTime, fmtAgo, hashWith} from '../dom.js';
import {get} from '../api.js';
import {errorBox} from '../app.js';

const MAX_NODES = 4000; // tree entries drawn; the rest summarised
const MAX_DEPTH = 12;

export async function render(root, ctx) {
  const name = ctx.params.name || '';
  root.append(h('p', {class: 'small'}, h('a', {href: '#/inventory'}, '← Inventory')));
  let x;
  try {
    x = (await get('/hosts/' + encodeURIComponent(name))).host;
    if (!x || typeof x !== 'object') throw new Error('the server answered without a host');
  } catch (e) {
    root.append(h('h1', null, `Host ${name}`));
    if (e.status === 404 && !e.missing) root.append(h('div', {class: 'notice', id: 'host-missing'}, `No host named ${name} in the inventory.`));
    else root.append(errorBox(e));
    return;
  }
  const groups = (x.groups || []).filter((g) => g !== x.idc);
  const dl = h('dl', {class: 'kv', id: 'host-fields'},
    kv('Name', h('span', {class: 'mono'}, x.name)),
    kv('Address', h('span', {class: 'mono'}, x.addr || '')),
    kv('SSH port', String(x.port || 22)),
    kv('SSH user', x.user || h('span', {class: 'muted'}, "the worker's default")),
    kv('IDC', h('a', {href: hashWith('/inventory', {selector: 'idc:' + x.idc})}, x.idc || '')),
    kv('Groups', groups.length ? groups.map((g, i) => [i ? ', ' : '', h('a', {href: hashWith('/inventory', {selector: 'group:' + g})}, g)]) : h('span', {class: 'muted'}, 'none')));
  const actions = h('div', {class: 'row'});
  if (ctx.can('run')) {
    actions.append(h('a', {class: 'btn small', href: hashWith('/run', {selector: x.name}), id: 'host-run'}, 'Run a job on it…'),
      h('a', {class: 'btn small', href: hashWith('/run', {selector: x.name, module: 'facts'}), id: 'host-gather'}, 'Gather facts…'));
  }
  const factsCard = h('section', {class: 'card', id: 'host-facts-card'});
  const has = x.facts && typeof x.facts === 'object';
  if (!has) {
    factsCard.append(h('h2', null, 'Facts'),
      h('div', {class: 'notice', id: 'host-facts-none'}, 'No facts gathered for this host yet: run the facts module on it.'));
  } else {
    const n = {count: 0};
    const tree = h('div', {class: 'tree', id: 'host-facts'}, factsTree(x.facts, 0, n));
    const keys = Object.keys(x.facts).length;
    factsCard.append(h('div', {class: 'row spread'}, h('h2', null, 'Facts'),
      h('span', {class: 'muted small', id: 'host-facts-at'}, x.facts_at_ms ? `gathered ${fmtTime(x.facts_at_ms)} (${fmtAgo(x.facts_at_ms)})` : 'gathered at an unknown time')),
    h('p', {class: 'small muted'}, `${keys} top-level key${keys === 1 ? '' : 's'}`), tree);
    if (n.count >= MAX_NODES) factsCard.append(h('p', {class: 'muted small'}, `Only the first ${MAX_NODES} entries are shown.`));
  }
  root.append(h('h1', {id: 'host-title'}, `Host ${x.name}`),
    h('section', {class: 'card'}, dl, actions), factsCard);
}

function kv(k, v) {
  return [h('dt', null, k), h('dd', null, v)];
}

function scalar(v) {
  if (v === null) return h('span', {class: 'v-null'}, 'null');
  if (typeof v === 'string') return h('span', {class: 'v-str'}, v);
  if (typeof v === 'number') return h('span', {class: 'v-num'}, String(v));
  if (typeof v === 'boolean') return h('span', {class: 'v-bool'}, String(v));
  return h('span', null, String(v));
}

// A nested list of keys and values; objects and arrays fold (<details>),
// open near the top.  Keys and values only ever become text.
function factsTree(v, depth, n) {
  const entries = Array.isArray(v) ? v.map((x, i) => [String(i), x]) : Object.keys(v).sort().map((k) => [k, v[k]]);
  const ul = h('ul', {class: 'tree-list'});
  for (const [k, x] of entries) {
    if (n.count >= MAX_NODES) { ul.append(h('li', {class: 'muted'}, '…')); break; }
    n.count++;
    const key = h('span', {class: 'tree-key', dataset: {key: k}}, k);
    if (x && typeof x === 'object') {
      const size = Array.isArray(x) ? x.length : Object.keys(x).length;
      const label = Array.isArray(x) ? `[${size}]` : `{${size}}`;
      if (size === 0) { ul.append(h('li', null, key, h('span', {class: 'muted'}, ' ' + (Array.isArray(x) ? '[]' : '{}')))); continue; }
      if (depth >= MAX_DEPTH) { ul.append(h('li', null, key, h('span', {class: 'muted'}, ' ' + label + ' (too deep)'))); continue; }
      const det = h('details', {open: depth < 2 && size <= 50}, h('summary', null, key, h('span', {class: 'muted small'}, ' ' + label)), factsTree(x, depth + 1, n));
      ul.append(h('li', null, det));
    } else {
      ul.append(h('li', null, key, h('span', {class: 'tree-sep'}, ': '), scalar(x)));
    }
  }
  return ul;
}
