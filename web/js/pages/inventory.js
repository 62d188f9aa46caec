// Inventory: hosts matching a selector, their IDCs and groups, a link to each
// host's page (#/hosts/NAME: fields and facts); administrators add a host
// or import an Ansible INI inventory.
import {h, clear, setText, table, hashWith, debounce} from '../dom.js';
import {get, post} from '../api.js';
import {errorBox} from '../app.js';
import {splitList, clearErrors, showFieldError} from '../forms.js';

const ROWS = 500;

export function hostHash(name) {
  return '#/hosts/' + encodeURIComponent(name);
}

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
    summary);
  // administrators: add / import, above the list (which can be long)
  if (ctx.can('admin')) root.append(h('div', {class: 'cols', id: 'inv-admin'}, addForm(), importForm()));
  root.append(h('section', {class: 'card'}, h('div', {class: 'row spread'}, h('h2', null, 'Hosts'), textFilter), note, list));

  let hosts = [];
  const draw = () => {
    const t = textFilter.value.trim().toLowerCase();
    const rows = t ? hosts.filter((x) => `${x.name} ${x.addr} ${x.idc} ${(x.groups || []).join(' ')}`.toLowerCase().includes(t)) : hosts;
    setText(note, `${rows.length} host${rows.length === 1 ? '' : 's'}${rows.length > ROWS ? `, first ${ROWS} shown` : ''}`);
    clear(list).append(table([
      {title: 'Host', get: (x) => h('a', {class: 'mono strong', href: hostHash(x.name), dataset: {hostLink: x.name}}, x.name)},
      {title: 'Address', get: (x) => h('span', {class: 'mono'}, `${x.addr}:${x.port}`)},
      {title: 'User', get: (x) => x.user || ''},
      {title: 'IDC', get: (x) => x.idc},
      {title: 'Groups', get: (x) => (x.groups || []).filter((g) => g !== x.idc).join(', ')},
      {title: '', get: (x) => ctx.can('run') ? h('a', {class: 'btn small', href: hashWith('/run', {selector: x.name})}, 'Run…') : ''},
    ], rows.slice(0, ROWS), {empty: 'No host matches.', rowAttrs: (x) => ({dataset: {host: x.name}})}));
  };
  const d = debounce(draw, 150);
  textFilter.addEventListener('input', d);

  let loadSeq = 0;
  async function load() {
    const my = ++loadSeq;
    let r;
    try {
      r = (await get('/hosts?selector=' + encodeURIComponent(selector))).hosts || [];
    } catch (e) {
      if (my === loadSeq) clear(list).append(errorBox(e));
      return;
    }
    if (my !== loadSeq) return;
    hosts = r;
    const idcs = new Map(), groups = new Map();
    for (const x of hosts) {
      idcs.set(x.idc, (idcs.get(x.idc) || 0) + 1);
      for (const g of x.groups || []) if (g !== x.idc) groups.set(g, (groups.get(g) || 0) + 1);
    }
    const chips = (m, kind) => [...m].sort().map(([k, n]) => h('a', {class: 'badge', href: hashWith('/inventory', {selector: `${kind}:${k}`})}, `${k} (${n})`));
    clear(summary).append(
      h('section', {class: 'card'}, h('h2', null, `IDCs (${idcs.size})`), h('div', {class: 'row'}, chips(idcs, 'idc'))),
      h('section', {class: 'card'}, h('h2', null, `Groups (${groups.size})`), h('div', {class: 'row'}, groups.size ? chips(groups, 'group') : h('span', {class: 'muted'}, 'none'))));
    draw();
  }

  // --- add one host (POST /hosts)
  function addForm() {
    const f = {
      name: h('input', {id: 'host-add-name', class: 'mono', maxlength: 64, placeholder: 'web-9', autocomplete: 'off', spellcheck: 'false'}),
      addr: h('input', {id: 'host-add-addr', class: 'mono', maxlength: 255, placeholder: '10.0.0.9 or a DNS name', autocomplete: 'off', spellcheck: 'false'}),
      idc: h('input', {id: 'host-add-idc', class: 'mono', maxlength: 64, placeholder: 'bj', autocomplete: 'off', spellcheck: 'false'}),
      port: h('input', {id: 'host-add-port', type: 'number', min: 1, max: 65535, placeholder: '22'}),
      user: h('input', {id: 'host-add-user', class: 'mono', maxlength: 64, placeholder: 'the worker\'s default', autocomplete: 'off', spellcheck: 'false'}),
      groups: h('input', {id: 'host-add-groups', class: 'mono', placeholder: 'web, nginx', autocomplete: 'off', spellcheck: 'false'}),
    };
    const fld = (k, title, help) => h('label', null, title, f[k], help ? h('span', {class: 'field-help'}, help) : null, h('span', {class: 'field-error', dataset: {field: k}}));
    const msg = h('p', {class: 'form-error', id: 'host-add-error', role: 'alert'});
    const ok = h('p', {class: 'form-ok', id: 'host-add-ok', role: 'status'});
    const btn = h('button', {type: 'submit', class: 'btn primary', id: 'host-add-submit'}, 'Add host');
    const form = h('form', {id: 'host-add-form', novalidate: true},
      h('div', {class: 'form-grid'}, fld('name', 'Name *'), fld('addr', 'Address *'), fld('idc', 'IDC *'), fld('port', 'SSH port'), fld('user', 'SSH user'), fld('groups', 'Groups', 'comma-separated')),
      h('div', {class: 'row'}, btn, msg, ok));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(form, msg);
      setText(ok, '');
      const body = {name: f.name.value.trim(), addr: f.addr.value.trim(), idc: f.idc.value.trim()};
      for (const k of ['name', 'addr', 'idc']) {
        if (!body[k]) { showFieldError(form, {field: k, message: `${k} is required`}, msg); return; }
      }
      if (f.port.value !== '') body.port = Number(f.port.value);
      if (f.user.value.trim()) body.user = f.user.value.trim();
      const groups = splitList(f.groups.value);
      if (groups.length) body.groups = groups;
      btn.disabled = true;
      try {
        await post('/hosts', body);
        setText(ok, `Host ${body.name} added (an existing host of that name is updated).`);
        for (const k of Object.keys(f)) f[k].value = '';
        f.name.focus();
        load();
      } catch (e) {
        showFieldError(form, e, msg);
      } finally {
        btn.disabled = false;
      }
    });
    return h('section', {class: 'card'}, h('h2', null, 'Add a host'), form);
  }

  // --- import an Ansible INI inventory (POST /hosts/import)
  function importForm() {
    const text = h('textarea', {id: 'host-import-text', rows: 9, spellcheck: 'false', placeholder: '[web]\nweb-9 ansible_host=10.0.0.9 idc=bj\nweb-10 ansible_host=10.0.0.10 ansible_port=2222 ansible_user=ops\n\n[db:children]\n...'});
    const idc = h('input', {id: 'host-import-idc', class: 'mono', maxlength: 64, placeholder: 'for hosts without idc=', autocomplete: 'off', spellcheck: 'false'});
    const file = h('input', {id: 'host-import-file', type: 'file', accept: '.ini,.txt,.cfg,text/plain'});
    file.addEventListener('change', async () => {
      const fl = file.files && file.files[0];
      if (!fl) return;
      if (fl.size > 1024 * 1024) { setText(msg, 'The file is over 1 MiB.'); return; }
      text.value = await fl.text();
    });
    const msg = h('p', {class: 'form-error', id: 'host-import-error', role: 'alert'});
    const lineEl = h('pre', {class: 'output hidden', id: 'host-import-line'});
    const ok = h('p', {class: 'form-ok', id: 'host-import-ok', role: 'status'});
    const btn = h('button', {type: 'submit', class: 'btn primary', id: 'host-import-submit'}, 'Import');
    const form = h('form', {id: 'host-import-form', novalidate: true},
      h('label', null, 'Ansible INI inventory', text, h('span', {class: 'field-help'}, 'groups, [group:children], ansible_host / ansible_port / ansible_user, idc=NAME'), h('span', {class: 'field-error', dataset: {field: 'text'}})),
      h('div', {class: 'form-grid'},
        h('label', null, 'Default IDC', idc, h('span', {class: 'field-error', dataset: {field: 'default_idc'}})),
        h('label', null, 'Or load a file', file)),
      h('div', {class: 'row'}, btn, ok), msg, lineEl);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(form, msg);
      setText(ok, '');
      lineEl.classList.add('hidden');
      if (!text.value.trim()) { showFieldError(form, {field: 'text', message: 'paste an inventory'}, msg); return; }
      const body = {text: text.value};
      if (idc.value.trim()) body.default_idc = idc.value.trim();
      btn.disabled = true;
      try {
        const r = await post('/hosts/import', body);
        const n = Number(r.count) || 0;
        setText(ok, `Imported ${n} host${n === 1 ? '' : 's'}.`);
        ok.dataset.count = String(n);
        load();
      } catch (e) {
        showFieldError(form, e, msg);
        showLine(e);
      } finally {
        btn.disabled = false;
      }
    });
    // "line N: ..." in the error: show that line and select it in the text
    function showLine(e) {
      const m = /\bline (\d+)/i.exec((e && e.message) || '');
      if (!m) return;
      const n = Number(m[1]);
      const lines = text.value.split('\n');
      if (n < 1 || n > lines.length) return;
      setText(lineEl, `${n}: ${lines[n - 1]}`);
      lineEl.dataset.line = String(n);
      lineEl.classList.remove('hidden');
      let start = 0;
      for (let i = 0; i < n - 1; i++) start += lines[i].length + 1;
      text.focus();
      text.setSelectionRange(start, start + lines[n - 1].length);
    }
    return h('section', {class: 'card'}, h('h2', null, 'Import an inventory'), form);
  }

  await load();
  return () => d.cancel();
}
