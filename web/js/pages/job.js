// Live job view: counters, a canvas grid of every host coloured by state,
// the output of the selected host streaming live, identical outputs folded
// into groups (clush -b), and a timeline of per-host durations.  Events come
// from GET /jobs/{id}/events (server-sent events, resumed by the browser
// with Last-Event-ID); the starting state from GET /jobs/{id}.  State events
// carry final states per host; "counts" events (at most one a second) carry
// the job's live numbers of queued, dispatched and running hosts: the
// counters show them, and the grid colours that many of the unfinished hosts
// running / dispatched (which ones is an estimate: the tooltip says so).
import {h, append, clear, setText, fmtTime, fmtMs, foldNames} from '../dom.js';
import {get, post, apiUrl} from '../api.js';
import {STATES, STATE_INDEX, FINAL} from '../states.js';
import {AnsiRenderer, b64ToBytes, decodeBytes} from '../ansi.js';
import {HostGrid} from '../grid.js';
import {drawTimeline} from '../timeline.js';
import {fetchJobAll, rerunHash, NOT_OK} from '../jobs.js';
import {errorBox} from '../app.js';

const HOST_CAP = 256 * 1024;        // characters of output kept per host in the page
const TOTAL_CAP = 64 * 1024 * 1024; // and for the whole job
const GROUPS_SHOWN = 40;
const GROUP_CHARS = 16 * 1024;      // characters shown per folded group
const VIEW_CAP = 2 * 1024 * 1024;   // characters rendered in the host output view

export async function render(root, ctx) {
  const id = ctx.params.id;
  if (!/^[1-9][0-9]{0,18}$/.test(id)) {
    root.append(errorBox(new Error('not a job id')));
    return;
  }
  let first;
  try {
    first = await fetchJobAll(id);
  } catch (e) {
    root.append(h('h1', null, `Job ${id}`), errorBox(e));
    return;
  }
  const view = new JobView(root, ctx, first);
  return () => view.destroy();
}

class JobView {
  constructor(root, ctx, {job, hosts}) {
    this.ctx = ctx;
    this.job = job;
    this.id = job.id;
    this.names = [];
    this.states = [];
    this.info = [];  // per host: {exit, dur, reason, worker}
    this.out = [];   // per host: {parts: [[stderr?, text]], len, cut}
    this.index = new Map();
    this.counts = new Array(STATES.length).fill(0);
    this.total = 0;
    this.selected = -1;
    this.closed = false;
    this.timers = [];
    hosts.sort((a, b) => a.host.localeCompare(b.host, undefined, {numeric: true}));
    for (const x of hosts) this.addHost(x.host, x.state, x);
    this.build(root);
    this.grid = new HostGrid(this.canvas, {
      names: this.names, states: this.states,
      onSelect: (i) => this.select(i),
      onHover: (i, x, y) => this.tip(i, x, y),
    });
    this.updateCounters();
    this.updateHead();
    this.dirtyGroups = true;
    this.timers.push(setInterval(() => this.refreshSlow(), 700));
    this.refreshSlow();
    this.connect();
    const want = ctx.query.get('host');
    if (want && this.index.has(want)) this.select(this.index.get(want));
  }

  addHost(name, state, x) {
    const i = this.names.length;
    this.names.push(name);
    const s = STATE_INDEX[state] ?? 0;
    this.states.push(s);
    this.counts[s]++;
    this.info.push({exit: x && x.exit, dur: x && x.duration_ms, reason: x && x.reason, worker: x && x.worker});
    this.out.push(null);
    this.index.set(name, i);
    return i;
  }

  build(root) {
    const j = this.job;
    this.root = h('div', {class: 'job', id: 'job', dataset: {jobId: String(j.id)}});
    this.stateEl = h('span', {class: 'badge', id: 'job-state'});
    this.metaEl = h('span', {class: 'muted', id: 'job-meta'});
    this.streamEl = h('span', {class: 'muted small', id: 'job-stream'});
    this.cancelBtn = h('button', {class: 'btn danger small', type: 'button', id: 'job-cancel', onclick: () => this.cancel()}, 'Cancel job');
    this.rerunAll = h('a', {class: 'btn small', id: 'job-rerun', href: rerunHash(j)}, 'Re-run all hosts');
    this.rerunBad = h('a', {class: 'btn small hidden', id: 'job-rerun-failed', href: '#'}, 'Re-run failed hosts');
    if (!this.ctx.can('run')) { this.cancelBtn.classList.add('hidden'); this.rerunAll.classList.add('hidden'); }
    const head = h('section', {class: 'card'},
      h('div', {class: 'job-head'}, h('h1', null, `Job ${j.id}`), this.stateEl, this.metaEl),
      h('p', {class: 'mono break', id: 'job-selector'}, `${j.module}  on  ${j.selector}`),
      h('div', {class: 'row'}, this.cancelBtn, this.rerunAll, this.rerunBad, this.streamEl));
    this.counterEls = STATES.map((s) => {
      const b = h('button', {type: 'button', class: ['count', 'st-' + s], dataset: {state: s, count: ''}, title: `hosts ${s}`, onclick: () => this.listState(s)}, s, h('b'));
      return b;
    });
    this.totalEl = h('span', {class: 'muted', id: 'job-total'});
    this.stateList = h('div', {class: 'small', id: 'state-list'});
    this.canvas = h('canvas', {class: 'host-grid', id: 'host-grid', 'aria-label': 'hosts by state'});
    this.tipEl = h('div', {class: 'tooltip hidden'});
    const goto = h('input', {placeholder: 'host name', id: 'host-goto', list: null, size: 18});
    goto.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter') return;
      const i = this.index.get(goto.value.trim());
      if (i === undefined) { goto.classList.add('invalid'); return; }
      goto.classList.remove('invalid');
      this.select(i);
    });
    const gridCard = h('section', {class: 'card'},
      h('div', {class: 'row spread'}, h('div', {class: 'counters', id: 'counters'}, this.counterEls), this.totalEl),
      this.stateList,
      h('div', {class: 'job-grid-wrap'}, this.canvas, this.tipEl),
      h('div', {class: 'row small muted'}, 'Click a host to see its output, or go to ', goto));

    this.hostHead = h('div', {class: 'row', id: 'host-head'}, h('span', {class: 'muted'}, 'No host selected.'));
    this.outEl = h('pre', {class: 'output', id: 'host-output', dataset: {host: ''}});
    this.outNote = h('div', {class: 'small muted', id: 'host-output-note'});
    const outCard = h('section', {class: 'card', id: 'host-card'}, h('h2', null, 'Host output'), this.hostHead, this.outEl, this.outNote);

    this.groupsEl = h('div', {id: 'groups'});
    this.groupsHead = h('span', {class: 'muted small'});
    const groupsCard = h('section', {class: 'card'}, h('div', {class: 'row spread'}, h('h2', null, 'Outputs folded (identical outputs grouped)'), this.groupsHead), this.groupsEl);

    this.tlCanvas = h('canvas', {class: 'timeline', id: 'timeline'});
    this.tlInfo = h('div', {class: 'small muted', id: 'timeline-info'});
    const legend = h('div', {class: 'legend'}, STATES.filter((s) => FINAL.has(s)).map((s) => h('span', null, h('span', {class: ['swatch', 'st-' + s]}), s)));
    const tlCard = h('section', {class: 'card'}, h('h2', null, 'Per-host durations'), h('div', null, this.tlCanvas), this.tlInfo, legend);

    this.root.append(head, gridCard, h('div', {class: 'cols'}, outCard, groupsCard), tlCard);
    root.append(this.root);
  }

  // --- events --------------------------------------------------------------------
  connect() {
    this.es = new EventSource(apiUrl(`/jobs/${this.id}/events`));
    this.es.addEventListener('open', () => setText(this.streamEl, this.job.state === 'done' ? '' : 'live'));
    this.es.addEventListener('output', (e) => this.onEvent(e));
    this.es.addEventListener('state', (e) => this.onEvent(e));
    this.es.addEventListener('done', (e) => this.onEvent(e));
    this.es.addEventListener('counts', (e) => this.onCounts(e));
    this.es.addEventListener('message', (e) => this.onEvent(e));
    this.es.addEventListener('error', () => {
      if (this.closed) return;
      if (this.es.readyState === EventSource.CLOSED) {
        setText(this.streamEl, 'event stream closed; polling');
        this.poll();
      } else {
        setText(this.streamEl, 'reconnecting…');
      }
    });
  }

  onEvent(e) {
    let ev;
    try { ev = JSON.parse(e.data); } catch { return; }
    const kind = ev.kind || e.type;
    if (kind === 'done') { this.finish(); return; }
    if (typeof ev.host !== 'string') return;
    let i = this.index.get(ev.host);
    if (i === undefined) {
      i = this.addHost(ev.host, 'queued');
      this.grid.layout();
      this.grid.schedule(true);
    }
    if (kind === 'output') this.onOutput(i, ev);
    else if (kind === 'state') this.onState(i, ev);
  }

  onOutput(i, ev) {
    let text;
    if (typeof ev.text === 'string') text = ev.text;
    else if (typeof ev.b64 === 'string') {
      try { text = decodeBytes(b64ToBytes(ev.b64)); } catch { text = '\ufffd'; }
    } else return;
    let o = this.out[i];
    if (!o) o = this.out[i] = {parts: [], len: 0, cut: false};
    const err = ev.stream === 'stderr';
    if (o.len + text.length > HOST_CAP || this.total + text.length > TOTAL_CAP) {
      o.cut = true;
    } else {
      o.parts.push([err, text]);
      o.len += text.length;
      this.total += text.length;
    }
    if (i === this.selected && !o.cut && this.renderer && this.viewChars < VIEW_CAP) {
      this.renderer.write(text, err ? 'stderr' : null);
      this.viewChars += text.length;
      this.outEl.scrollTop = this.outEl.scrollHeight;
    } else if (i === this.selected && o.cut) {
      this.noteCut();
    }
    this.dirtyGroups = true;
  }

  onState(i, ev) {
    const s = STATE_INDEX[ev.state];
    if (s === undefined) return;
    const cur = this.states[i];
    // a replayed older event never takes a host back from a final state
    if (FINAL.has(STATES[cur]) && !FINAL.has(ev.state)) return;
    const inf = this.info[i];
    if (ev.exit_code !== undefined) inf.exit = ev.exit_code;
    if (ev.duration_ms !== undefined) inf.dur = ev.duration_ms;
    if (ev.reason !== undefined) inf.reason = ev.reason;
    this.setState(i, s);
    if (i === this.selected) this.updateHostHead();
    this.dirtyGroups = true;
    this.dirtyTimeline = true;
  }

  setState(i, s) {
    const cur = this.states[i];
    if (cur === s) return false;
    this.counts[cur]--;
    this.counts[s]++;
    this.states[i] = s;
    this.grid.touch(i);
    this.scheduleCounters();
    return true;
  }

  // event: counts {"counts": {"queued": n, "dispatched": n, "running": n, ...}, "nhosts": n}
  onCounts(e) {
    let ev;
    try { ev = JSON.parse(e.data); } catch { return; }
    const c = ev && ev.counts;
    if (!c || typeof c !== 'object') return;
    this.live = c;
    this.root.dataset.liveCounts = '1';
    this.applyLive();
  }

  // The unfinished hosts here take the server's numbers: the ones already
  // running stay running first, then dispatched ones move up, then queued
  // ones (in grid order); the rest are queued.  Final states are per host.
  applyLive() {
    const c = this.live;
    if (!c) return;
    const Q = STATE_INDEX.queued, D = STATE_INDEX.dispatched, R = STATE_INDEX.running;
    const by = {[R]: [], [D]: [], [Q]: []};
    let open = 0;
    for (let i = 0; i < this.states.length; i++) {
      const s = this.states[i];
      if (FINAL.has(STATES[s])) continue;
      (by[s] || by[Q]).push(i);
      open++;
    }
    const num = (v) => (Number.isFinite(Number(v)) && Number(v) > 0 ? Math.floor(Number(v)) : 0);
    const r = Math.min(num(c.running), open);
    const d = Math.min(num(c.dispatched), open - r);
    let k = 0, sel = false;
    for (const i of [...by[R], ...by[D], ...by[Q]]) {
      if (this.setState(i, k < r ? R : k < r + d ? D : Q) && i === this.selected) sel = true;
      k++;
    }
    if (sel) this.updateHostHead();
  }

  async finish() {
    if (this.closed) return;
    if (this.es) { this.es.close(); this.es = null; }
    setText(this.streamEl, '');
    try {
      const r = await fetchJobAll(this.id);
      this.job = r.job;
      for (const x of r.hosts) {
        let i = this.index.get(x.host);
        if (i === undefined) { i = this.addHost(x.host, x.state, x); continue; }
        this.onState(i, {state: x.state, exit_code: x.exit, duration_ms: x.duration_ms, reason: x.reason});
        this.info[i].worker = x.worker;
      }
      if (this.names.length !== this.grid.names.length) this.grid.schedule(true);
    } catch (e) {
      if (e.status === 401) return;
      this.job.state = 'done';
    }
    this.updateHead();
    this.updateCounters();
    this.dirtyGroups = this.dirtyTimeline = true;
    this.refreshSlow();
    if (this.selected >= 0) this.updateHostHead();
  }

  // fallback when the event stream cannot be used: the job every 2 s
  poll() {
    if (this.polling || this.closed) return;
    this.polling = setInterval(async () => {
      try {
        const r = await fetchJobAll(this.id);
        for (const x of r.hosts) {
          const i = this.index.get(x.host);
          if (i !== undefined) this.onState(i, {state: x.state, exit_code: x.exit, duration_ms: x.duration_ms, reason: x.reason});
        }
        if (r.job.state === 'done') { clearInterval(this.polling); this.finish(); }
      } catch (e) {
        if (e.status === 401 || e.status === 404) clearInterval(this.polling);
      }
    }, 2000);
    this.timers.push(this.polling);
  }

  async cancel() {
    if (!confirm(`Cancel job ${this.id}? Hosts not started are withdrawn, running commands are killed.`)) return;
    this.cancelBtn.disabled = true;
    try {
      const r = await post(`/jobs/${this.id}/cancel`, {});
      this.ctx.banner(r.text || 'cancelled', 'info');
    } catch (e) {
      this.ctx.banner('Cancel failed: ' + e.message);
      this.cancelBtn.disabled = false;
    }
  }

  // --- display -------------------------------------------------------------------
  scheduleCounters() {
    if (this.cframe) return;
    this.cframe = requestAnimationFrame(() => { this.cframe = 0; this.updateCounters(); });
  }

  updateCounters() {
    let fin = 0;
    STATES.forEach((s, k) => {
      const n = this.counts[k];
      const b = this.counterEls[k];
      if (b.dataset.count !== String(n)) {
        b.dataset.count = String(n);
        setText(b.lastChild, String(n));
        b.classList.toggle('zero', n === 0);
      }
      if (FINAL.has(s)) fin += n;
    });
    setText(this.totalEl, `${fin} of ${this.names.length} hosts finished`);
    this.root.dataset.total = String(this.names.length);
    this.root.dataset.finished = String(fin);
    if (this.listed) this.listState(this.listed, true);
  }

  updateHead() {
    const j = this.job;
    setText(this.stateEl, j.state);
    this.stateEl.className = 'badge state st-' + (j.state === 'done' ? 'done' : 'running');
    this.root.dataset.jobState = j.state;
    const bits = [`by ${j.user}`, `created ${fmtTime(j.created)}`];
    if (j.duration_ms != null) bits.push(`took ${fmtMs(j.duration_ms)}`);
    if (j.finished) bits.push(`finished ${fmtTime(j.finished)}`);
    setText(this.metaEl, bits.join(' · '));
    const done = j.state === 'done';
    this.cancelBtn.classList.toggle('hidden', done || !this.ctx.can('run'));
    this.updateRerunBad();
  }

  updateRerunBad() {
    const bad = [];
    for (let i = 0; i < this.names.length; i++) if (NOT_OK.has(STATES[this.states[i]])) bad.push(this.names[i]);
    const show = this.job.state === 'done' && bad.length > 0 && this.ctx.can('run');
    this.rerunBad.classList.toggle('hidden', !show);
    if (show) {
      this.rerunBad.href = rerunHash(this.job, bad);
      setText(this.rerunBad, `Re-run failed hosts (${bad.length})`);
    }
  }

  listState(s, refresh) {
    if (!refresh && this.listed === s) { this.listed = null; clear(this.stateList); return; }
    this.listed = s;
    const k = STATE_INDEX[s];
    const idx = [];
    for (let i = 0; i < this.names.length && idx.length < 200; i++) if (this.states[i] === k) idx.push(i);
    clear(this.stateList);
    append(this.stateList, [h('span', {class: 'muted'}, `${s}: `), idx.map((i) => this.hostLink(i))]);
    if (this.counts[k] > idx.length) this.stateList.append(h('span', {class: 'muted'}, ` … and ${this.counts[k] - idx.length} more`));
  }

  hostLink(i) {
    return h('button', {type: 'button', class: 'hostlink', dataset: {host: this.names[i]}, onclick: () => this.select(i)}, this.names[i]);
  }

  tip(i, x, y) {
    if (i < 0) { this.tipEl.classList.add('hidden'); return; }
    const inf = this.info[i];
    const st = STATES[this.states[i]];
    let t = `${this.names[i]}: ${st}`;
    if (this.live && !FINAL.has(st)) t += ' (estimated from the job\'s live counts)';
    if (inf.dur != null) t += ` · ${fmtMs(inf.dur)}`;
    if (inf.exit != null) t += ` · exit ${inf.exit}`;
    setText(this.tipEl, t);
    this.tipEl.classList.remove('hidden');
    this.tipEl.style.left = Math.min(x + 12, (this.canvas.clientWidth || 600) - 160) + 'px';
    this.tipEl.style.top = (y + 14) + 'px';
  }

  select(i) {
    this.selected = i;
    this.grid.select(i);
    this.updateHostHead();
    clear(this.outEl);
    setText(this.outNote, '');
    this.outEl.dataset.host = this.names[i];
    this.renderer = new AnsiRenderer(this.outEl);
    this.viewChars = 0;
    const o = this.out[i];
    if (o) {
      for (const [err, text] of o.parts) {
        if (this.viewChars >= VIEW_CAP) break;
        this.renderer.write(text, err ? 'stderr' : null);
        this.viewChars += text.length;
      }
      if (o.cut) this.noteCut();
    }
    if (this.viewChars >= VIEW_CAP) this.noteCut();
    this.outEl.dataset.loaded = 'live';
    this.updateHostHead();
    // when the page was opened after the host finished and the events had no
    // output for it, the stored output is the truth
    if (FINAL.has(STATES[this.states[i]]) && (!o || o.cut)) this.loadStored(i);
  }

  noteCut() {
    if (this.outNote.dataset.cut) return;
    this.outNote.dataset.cut = '1';
    clear(this.outNote);
    this.outNote.append('The output is longer than this page keeps. ',
      h('button', {type: 'button', class: 'btn small', onclick: () => this.loadStored(this.selected)}, 'Load the stored output'), ' or download it.');
  }

  async loadStored(i) {
    const name = this.names[i];
    try {
      const bytes = await get(`/jobs/${this.id}/output?host=${encodeURIComponent(name)}`, {raw: true, timeout: 60000});
      if (this.selected !== i) return;
      clear(this.outEl);
      const text = decodeBytes(bytes);
      const r = new AnsiRenderer(this.outEl);
      r.write(text.length > VIEW_CAP ? text.slice(0, VIEW_CAP) : text);
      r.end();
      this.renderer = null; // stored output is final; live chunks are not appended
      this.outEl.dataset.loaded = 'stored';
      setText(this.outNote, `stored output: ${bytes.length} bytes${text.length > VIEW_CAP ? ' (first part shown; download for all)' : ''}`);
    } catch (e) {
      if (this.selected === i) setText(this.outNote, 'Could not load the stored output: ' + e.message);
    }
  }

  updateHostHead() {
    const i = this.selected;
    if (i < 0) return;
    const inf = this.info[i];
    const s = STATES[this.states[i]];
    this.outEl.dataset.state = s;
    clear(this.hostHead);
    const dl = h('a', {class: 'btn small', href: apiUrl(`/jobs/${this.id}/output?host=${encodeURIComponent(this.names[i])}`), download: `job${this.id}-${this.names[i]}.out`}, 'Download raw');
    append(this.hostHead, [
      h('strong', {class: 'mono', id: 'host-name'}, this.names[i]),
      this.live && !FINAL.has(s) ? h('span', {class: ['state', 'est', 'st-' + s], title: 'not finished: estimated from the job\'s live counts'}, s + ' (est.)') : h('span', {class: ['state', 'st-' + s]}, s),
      inf.exit != null ? h('span', null, `exit ${inf.exit}`) : null,
      inf.dur != null ? h('span', {class: 'muted'}, fmtMs(inf.dur)) : null,
      inf.worker ? h('span', {class: 'muted'}, `worker ${inf.worker}`) : null,
      inf.reason ? h('span', {class: 'muted break'}, inf.reason) : null,
      dl, h('a', {class: 'btn small', href: '#/hosts/' + encodeURIComponent(this.names[i])}, 'Host page')]);
  }

  refreshSlow() {
    if (this.dirtyGroups) { this.dirtyGroups = false; this.renderGroups(); this.updateRerunBad(); }
    if (this.dirtyTimeline !== false) { this.dirtyTimeline = false; this.renderTimeline(); }
  }

  renderGroups() {
    const groups = new Map();
    let pending = 0;
    for (let i = 0; i < this.names.length; i++) {
      if (!FINAL.has(STATES[this.states[i]])) { pending++; continue; }
      const o = this.out[i];
      const key = o ? (o.cut ? '\u0000cut' : o.parts.map((p) => p[1]).join('')) : '';
      let g = groups.get(key);
      if (!g) groups.set(key, g = {key, hosts: [], sample: i});
      g.hosts.push(i);
    }
    const list = [...groups.values()].sort((a, b) => b.hosts.length - a.hosts.length);
    setText(this.groupsHead, `${list.length} group${list.length === 1 ? '' : 's'}${pending ? `, ${pending} hosts not finished` : ''}`);
    this.groupsEl.dataset.groups = String(list.length);
    const frag = document.createDocumentFragment();
    for (const g of list.slice(0, GROUPS_SHOWN)) {
      const names = g.hosts.map((i) => this.names[i]);
      const pre = h('pre', {class: 'output'});
      if (g.key === '\u0000cut') pre.append(h('span', {class: 'muted'}, '(long outputs: select a host to see its own)'));
      else if (g.key !== '') {
        const r = new AnsiRenderer(pre);
        const o = this.out[g.sample];
        let n = 0;
        for (const [err, text] of o.parts) {
          if (n >= GROUP_CHARS) { r.end(); pre.append(h('span', {class: 'muted'}, '\n… (select a host for all of it)')); break; }
          const t = text.length + n > GROUP_CHARS ? text.slice(0, GROUP_CHARS - n) : text;
          r.write(t, err ? 'stderr' : null);
          n += t.length;
        }
        r.end();
      }
      const head = h('div', {class: 'group-head'},
        h('strong', null, `${g.hosts.length} host${g.hosts.length === 1 ? '' : 's'}`),
        h('span', {class: 'mono small break'}, foldNames(names)),
        h('span', null, g.hosts.slice(0, 12).map((i) => this.hostLink(i))));
      frag.append(h('div', {class: 'group', dataset: {hosts: String(g.hosts.length)}}, head, pre));
    }
    if (list.length > GROUPS_SHOWN) frag.append(h('p', {class: 'muted'}, `… ${list.length - GROUPS_SHOWN} more groups`));
    clear(this.groupsEl).append(frag);
  }

  renderTimeline() {
    const items = [];
    for (let i = 0; i < this.names.length; i++) {
      const d = this.info[i].dur;
      if (d != null && d >= 0 && FINAL.has(STATES[this.states[i]])) items.push({dur: d, state: this.states[i]});
    }
    const st = drawTimeline(this.tlCanvas, items);
    setText(this.tlInfo, st ? `${st.n} hosts · fastest ${fmtMs(st.min)} · median ${fmtMs(st.median)} · p95 ${fmtMs(st.p95)} · slowest ${fmtMs(st.max)}` : '');
  }

  destroy() {
    this.closed = true;
    if (this.es) this.es.close();
    for (const t of this.timers) clearInterval(t);
    if (this.cframe) cancelAnimationFrame(this.cframe);
    this.grid.destroy();
  }
}

