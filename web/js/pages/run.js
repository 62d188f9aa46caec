// Run a job: a target selector with a live count of matching hosts, a module
// picker, a form generated from the module's parameter schema, options.
// A re-run (?from=ID) fills the form with that job's params and options from
// GET /jobs/{id} (secret values come back as "********" and must be typed
// again); this browser's own record of the jobs it submitted is the fallback
// for a server that does not return them.
import {h, clear, setText, debounce, foldNames} from '../dom.js';
import {get, post} from '../api.js';
import {rememberParams, recallParams} from '../jobs.js';
import {errorBox} from '../app.js';

export async function render(root, ctx) {
  const q = ctx.query;
  root.append(h('h1', null, 'Run a job'));
  if (!ctx.can('run')) {
    root.append(h('div', {class: 'notice'}, 'Your role may not run jobs.'));
    return;
  }
  let modules;
  try {
    modules = (await get('/modules')).modules || [];
  } catch (e) {
    root.append(errorBox(e));
    return;
  }
  const from = await loadFrom(q.get('from'));
  const state = {schema: [], module: null, seq: 0, prevFiles: new Map()};

  // --- target
  const sel = h('input', {id: 'run-selector', name: 'selector', class: 'wide mono', value: q.get('selector') || '', placeholder: "all, idc:bj, group:web, web-*, 'a,b', '!db-1'", autocomplete: 'off', spellcheck: 'false', maxlength: 65536});
  const count = h('div', {id: 'run-count', class: 'small muted', dataset: {count: ''}}, 'Type a selector.');
  const selErr = h('div', {class: 'field-error', dataset: {field: 'selector'}});
  let countSeq = 0;
  const updateCount = debounce(async () => {
    const my = ++countSeq;
    const s = sel.value.trim();
    if (!s) { count.dataset.count = ''; setText(count, 'Type a selector.'); return; }
    try {
      const r = await get('/hosts?selector=' + encodeURIComponent(s));
      if (my !== countSeq) return;
      const names = (r.hosts || []).map((x) => x.name);
      count.dataset.count = String(names.length);
      sel.classList.toggle('invalid', names.length === 0);
      setText(count, names.length ? `${names.length} host${names.length === 1 ? '' : 's'} match: ${foldNames(names, 300)}` : 'No host matches.');
    } catch (e) {
      if (my !== countSeq) return;
      count.dataset.count = '';
      sel.classList.add('invalid');
      setText(count, e.message);
    }
  }, 250);
  sel.addEventListener('input', () => { sel.classList.remove('invalid'); setText(selErr, ''); updateCount(); });

  // --- module
  const modSel = h('select', {id: 'run-module', name: 'module'},
    h('option', {value: ''}, modules.length ? 'choose a module' : 'no module: no worker offers one'),
    modules.map((m) => h('option', {value: m.name}, `${m.name}${m.description ? ' — ' + m.description : ''}`)));
  const modErr = h('div', {class: 'field-error', dataset: {field: 'module'}});
  const paramsBox = h('div', {id: 'run-params'});

  async function chooseModule(name, values) {
    const my = ++state.seq;
    state.module = name || null;
    clear(paramsBox);
    state.schema = [];
    state.prevFiles = new Map();
    if (!name) return;
    let m;
    try {
      m = await get('/modules/' + encodeURIComponent(name));
    } catch (e) {
      if (my === state.seq) paramsBox.append(errorBox(e));
      return;
    }
    if (my !== state.seq) return;
    state.schema = m.schema || [];
    if (m.description) paramsBox.append(h('p', {class: 'muted small'}, `${m.name} ${m.version || ''}: ${m.description}`));
    if (!state.schema.length) paramsBox.append(h('p', {class: 'muted'}, 'This module takes no parameters.'));
    for (const p of state.schema) {
      const v = values ? values[p.name] : undefined;
      if ((p.type || '').toLowerCase() === 'file' && typeof v === 'string' && v !== MASK) state.prevFiles.set(p.name, v);
      paramsBox.append(paramField(p, v));
    }
    // parameters of the old job the module no longer has
    const gone = values ? Object.keys(values).filter((k) => !state.schema.some((p) => p.name === k)) : [];
    if (gone.length) paramsBox.append(h('p', {class: 'notice warn'}, `The module no longer takes: ${gone.join(', ')} (left out).`));
  }
  modSel.addEventListener('change', () => { setText(modErr, ''); chooseModule(modSel.value); });

  // --- options
  const opt = {
    timeout: h('input', {id: 'opt-timeout', type: 'number', min: 0, max: 604800, placeholder: 'master default'}),
    forks: h('input', {id: 'opt-forks', type: 'number', min: 0, max: 10000, placeholder: 'worker default'}),
    batch: h('input', {id: 'opt-batch', placeholder: 'N or N%', pattern: '^[0-9]+%?$'}),
    max_fail: h('input', {id: 'opt-max-fail', type: 'number', min: 0, max: 100, placeholder: 'percent'}),
    become_user: h('input', {id: 'opt-become-user', placeholder: 'root'}),
    check: h('input', {id: 'opt-check', type: 'checkbox'}),
    become: h('input', {id: 'opt-become', type: 'checkbox'}),
    retry_lost: h('input', {id: 'opt-retry-lost', type: 'checkbox'}),
  };
  const optErr = {};
  const numField = (k, title, help) => {
    optErr[k] = h('span', {class: 'field-error', dataset: {field: 'options.' + k}});
    return h('label', null, title, opt[k], h('span', {class: 'field-help'}, help), optErr[k]);
  };
  const chk = (k, title, help) => {
    optErr[k] = h('span', {class: 'field-error', dataset: {field: 'options.' + k}});
    return h('label', {class: 'inline', title: help}, opt[k], title, optErr[k]);
  };
  const options = h('div', null,
    h('div', {class: 'form-grid'},
      numField('timeout', 'Timeout (s per host)', 'the host ends "timeout"'),
      numField('forks', 'Forks', 'hosts at once per worker'),
      numField('batch', 'Batch', 'rolling waves of N hosts or N%'),
      numField('max_fail', 'Max fail (%)', 'of a wave; later hosts skipped'),
      numField('become_user', 'Become user', 'with become')),
    h('div', {class: 'row'},
      chk('check', 'Check mode', 'report what would change, change nothing'),
      chk('become', 'Become (sudo)', 'run through sudo -n'),
      chk('retry_lost', 'Retry lost hosts', 'hosts of a worker that died run again on another worker of their IDC')));

  const submit = h('button', {type: 'submit', class: 'btn primary', id: 'run-submit'}, 'Run');
  const formErr = h('p', {class: 'form-error', id: 'run-error', role: 'alert'});
  const form = h('form', {id: 'run-form', novalidate: true},
    h('section', {class: 'card'}, h('h2', null, 'Target'), h('label', null, 'Selector', sel, selErr), count),
    h('section', {class: 'card'}, h('h2', null, 'Module'), h('label', null, 'Module', modSel, modErr), paramsBox),
    h('section', {class: 'card'}, h('h2', null, 'Options'), options),
    h('div', {class: 'row'}, submit, formErr));
  root.append(form);

  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    setText(formErr, '');
    for (const el of form.querySelectorAll('.field-error')) setText(el, '');
    for (const el of form.querySelectorAll('.invalid')) el.classList.remove('invalid');
    let body;
    try {
      body = await collect();
    } catch (e) {
      setText(formErr, e.message);
      return;
    }
    submit.disabled = true;
    try {
      const r = await post('/jobs', body);
      const keep = {};
      for (const p of state.schema) if (!p.secret && p.type !== 'file' && body.params[p.name] !== undefined) keep[p.name] = body.params[p.name];
      rememberParams(r.id, body.module, keep);
      ctx.navigate('#/jobs/' + r.id);
    } catch (e) {
      showError(e);
    } finally {
      submit.disabled = false;
    }
  });

  function showError(e) {
    const f = e.field;
    const el = f && form.querySelector(`[data-field="${CSS.escape(f)}"]`);
    if (el) {
      setText(el, e.message);
      const input = el.parentElement && el.parentElement.querySelector('input,select,textarea');
      if (input) { input.classList.add('invalid'); input.focus(); }
    }
    setText(formErr, (f ? `${f}: ` : '') + e.message);
  }

  async function collect() {
    const selector = sel.value.trim();
    if (!selector) throw new Error('Enter a target selector.');
    if (!modSel.value) throw new Error('Choose a module.');
    const params = {};
    for (const p of state.schema) {
      const input = paramsBox.querySelector(`[data-param="${CSS.escape(p.name)}"]`);
      if (!input) continue;
      let v;
      if (input.type === 'checkbox') v = input.checked;
      else if (input.type === 'file') {
        const f = input.files && input.files[0];
        if (f) {
          if (f.size > 48 * 1024) throw new Error(`${p.name}: the file is over 48 KiB (the request would be refused)`);
          v = await f.text();
        } else if (state.prevFiles.has(p.name)) v = state.prevFiles.get(p.name);
      } else {
        v = input.value;
        if (v === '') v = undefined;
        else if (input.type === 'number') v = Number(v);
      }
      if (v === undefined && input.dataset.reenter) {
        input.classList.add('invalid');
        input.focus();
        throw new Error(`${p.name}: type the secret again (a re-run does not get secret or too long values back)`);
      }
      if (v === undefined) {
        if (p.required) throw new Error(`${p.name} is required`);
        continue;
      }
      if (input.type === 'checkbox' && !input.dataset.touched && !p.required && p.default == null) continue;
      params[p.name] = v;
    }
    const options = {};
    for (const k of ['timeout', 'forks', 'max_fail']) if (opt[k].value !== '') options[k] = Number(opt[k].value);
    if (opt.batch.value !== '') options.batch = /%$/.test(opt.batch.value) ? opt.batch.value : Number(opt.batch.value);
    if (opt.become_user.value !== '') options.become_user = opt.become_user.value;
    for (const k of ['check', 'become', 'retry_lost']) if (opt[k].checked) options[k] = true;
    const body = {selector, module: modSel.value, params};
    if (Object.keys(options).length) body.options = options;
    return body;
  }

  // prefill (re-run)
  const want = q.get('module') || (from && from.module);
  if (want && modules.some((m) => m.name === want)) {
    modSel.value = want;
    await chooseModule(want, from && from.module === want ? from.params : null);
  } else if (want) {
    modErr.textContent = `module '${want}' is not offered by any worker now`;
  }
  if (from && from.options) fillOptions(from.options);
  if (q.get('from')) {
    const secrets = from && from.params ? Object.keys(from.params).filter((k) => from.params[k] === MASK || from.params[k] === null) : [];
    const how = !from ? ': neither the server nor this browser has its parameters; fill them in.'
      : from.source === 'server' ? `: parameters${from.options ? ' and options' : ''} filled in from the job.`
      : ': parameters filled in from this browser\'s record (the server did not return them; options not filled).';
    root.insertBefore(h('div', {class: 'notice', id: 'run-from', dataset: {from: q.get('from'), source: from ? from.source : 'none'}}, `Re-run of job ${q.get('from')}`, how,
      secrets.length ? h('span', {class: 'secret-note'}, ` Secret (or too long) values are not given back: enter ${secrets.join(', ')} again.`) : null), form);
  }

  function fillOptions(o) {
    const set = (k, v) => { if (v !== undefined && v !== null && v !== '' && v !== 0) opt[k].value = String(v); };
    set('timeout', o.timeout);
    set('forks', o.forks);
    set('batch', o.batch);
    if (o.max_fail !== undefined && o.max_fail !== null) opt.max_fail.value = String(o.max_fail); // null: not given
    set('become_user', o.become_user);
    for (const k of ['check', 'become', 'retry_lost']) opt[k].checked = o[k] === true;
  }
  if (sel.value) updateCount();
  (sel.value ? modSel : sel).focus();
  return () => updateCount.cancel();
}

const MASK = '********';

// The params and options of job id for a re-run: the server's (GET
// /jobs/{id}), else this browser's record; null without either.
async function loadFrom(id) {
  if (!id || !/^[1-9][0-9]{0,18}$/.test(id)) return null;
  try {
    const j = (await get(`/jobs/${id}?limit=1`)).job || {};
    const obj = (v) => {
      if (typeof v === 'string') { try { v = JSON.parse(v); } catch { return null; } } // JSON text from an older server
      return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
    };
    const params = obj(j.params);
    if (params) return {module: j.module, params, options: obj(j.options), source: 'server'};
  } catch (e) {
    if (e.status === 401) throw e;
  }
  const l = recallParams(id);
  return l ? {...l, options: null, source: 'browser'} : null;
}

// One input per schema parameter: type string/path/mode/int/bool/file, choices, secret.
function paramField(p, value) {
  const id = 'param-' + p.name;
  const t = (p.type || 'string').toLowerCase();
  let input;
  if (Array.isArray(p.choices) && p.choices.length) {
    input = h('select', {id}, p.required ? null : h('option', {value: ''}, '(default)'), p.choices.map((c) => h('option', {value: c}, c)));
  } else if (t === 'bool' || t === 'boolean') {
    input = h('input', {id, type: 'checkbox'});
    input.addEventListener('change', () => { input.dataset.touched = '1'; });
    // values come back as strings ("true"/"false"), or booleans
    if (value !== undefined && value !== null && value !== MASK) { input.checked = value === true || /^(true|yes|on|1)$/i.test(String(value)); input.dataset.touched = '1'; } else if (p.default === 'true') input.checked = true;
  } else if (t === 'int' || t === 'integer' || t === 'number' || t === 'size') {
    input = h('input', {id, type: 'number'});
  } else if (t === 'file') {
    input = h('input', {id, type: 'file'});
  } else if (p.secret) {
    input = h('input', {id, type: 'password', autocomplete: 'off'});
  } else {
    input = h('input', {id, class: 'wide mono', autocomplete: 'off', spellcheck: 'false'});
  }
  input.dataset.param = p.name;
  if (p.default != null && input.type !== 'checkbox' && input.tagName === 'INPUT') input.placeholder = `default ${p.default}`;
  // a secret is never filled in, whatever came back; null: the value was too
  // long to give back (a file's content)
  const reenter = value === MASK || value === null || (!!p.secret && value !== undefined);
  const tooLong = value === null;
  if (value !== undefined && !reenter && input.type !== 'checkbox' && input.type !== 'file' && !p.secret) {
    if (input.tagName === 'SELECT' && ![...input.options].some((o) => o.value === String(value))) input.append(h('option', {value: String(value)}, String(value)));
    input.value = String(value);
  }
  if (reenter) {
    input.dataset.reenter = '1';
    input.required = true;
    input.placeholder = 'type it again';
  }
  const isBox = input.type === 'checkbox';
  const title = h('span', null, p.name, p.required || reenter ? h('span', {class: 'field-error'}, ' *') : null, h('span', {class: 'muted small'}, ` (${t}${p.secret ? ', secret' : ''})`));
  const note = reenter ? h('span', {class: 'secret-note', dataset: {reenter: p.name}}, tooLong ? 'the job\'s value is too long to give back: enter it again' : t === 'file' ? 'secret: the job had a file here; choose it again' : 'secret: the job had a value; type it again') :
    t === 'file' && typeof value === 'string' ? h('span', {class: 'field-help'}, `the job's content (${value.length} characters) is used unless you choose another file`) : null;
  const err = h('span', {class: 'field-error', dataset: {field: 'params.' + p.name}});
  const help = p.description ? h('span', {class: 'field-help'}, p.description) : null;
  return isBox ? h('label', {class: 'inline'}, input, title, help, err) : h('label', null, title, input, note, help, err);
}
