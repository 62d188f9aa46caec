// Job history with filters, and re-run: all hosts, or only the ones that
// did not end ok (their names become the selector).
import {h, clear, setText, fmtTime, fmtMs, table, hashWith} from '../dom.js';
import {get} from '../api.js';
import {STATES, FINAL} from '../states.js';
import {fetchJobAll, rerunHash, NOT_OK} from '../jobs.js';
import {jobOutcome} from '../chart.js';
import {errorBox} from '../app.js';

export function countsBar(j) {
  const c = j.counts || {};
  const total = j.hosts || STATES.reduce((a, s) => a + (c[s] || 0), 0) || 1;
  const bar = h('div', {class: 'bar', title: STATES.filter((s) => c[s]).map((s) => `${s} ${c[s]}`).join(', ')});
  for (const s of STATES) {
    if (!c[s]) continue;
    const seg = h('span', {class: 'st-' + s});
    seg.style.width = (100 * c[s] / total) + '%';
    bar.append(seg);
  }
  const txt = STATES.filter((s) => c[s]).map((s) => `${s} ${c[s]}`).join(' · ');
  return h('div', null, bar, h('span', {class: 'small muted'}, `${j.hosts} hosts${txt ? ': ' + txt : ''}`));
}

export function jobStateCell(j) {
  const o = jobOutcome(j);
  const cls = o === 'ok' ? 'st-ok' : o === 'failed' ? 'st-failed' : o === 'running' ? 'st-running' : 'st-cancelled';
  return h('span', {class: ['state', cls]}, j.state === 'done' ? (o === 'ok' ? 'ok' : o) : 'running');
}

export async function render(root, ctx) {
  const q = ctx.query;
  const f = {
    state: h('select', {id: 'hist-state'}, ['any', 'running', 'done'].map((s) => h('option', {value: s}, s))),
    user: h('input', {id: 'hist-user', placeholder: 'any user', size: 12}),
    since: h('select', {id: 'hist-since'}, [['', 'any time'], ['3600', 'last hour'], ['86400', 'last 24 h'], ['604800', 'last 7 days'], ['2592000', 'last 30 days']].map(([v, t]) => h('option', {value: v}, t))),
    limit: h('select', {id: 'hist-limit'}, ['50', '200', '1000'].map((v) => h('option', {value: v}, v))),
    text: h('input', {id: 'hist-text', placeholder: 'module, target or outcome', size: 24}),
  };
  f.state.value = q.get('state') || 'any';
  f.user.value = q.get('user') || '';
  f.since.value = q.get('since') || '';
  f.limit.value = q.get('limit') || '50';
  f.text.value = q.get('q') || '';
  const out = h('div', {class: 'table-wrap', id: 'hist-table'});
  const note = h('span', {class: 'muted small'});
  const form = h('form', {class: 'row', id: 'hist-form'},
    h('label', null, 'State', f.state), h('label', null, 'User', f.user), h('label', null, 'Created', f.since),
    h('label', null, 'Limit', f.limit), h('label', null, 'Search', f.text), h('button', {type: 'submit', class: 'btn'}, 'Filter'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.navigate(hashWith('/history', {state: f.state.value === 'any' ? '' : f.state.value, user: f.user.value.trim(), since: f.since.value, limit: f.limit.value === '50' ? '' : f.limit.value, q: f.text.value.trim()}));
  });
  for (const k of ['state', 'since', 'limit']) f[k].addEventListener('change', () => form.requestSubmit());
  root.append(h('h1', null, 'History'), h('section', {class: 'card'}, form, note), h('section', {class: 'card'}, out));

  const p = new URLSearchParams();
  p.set('state', f.state.value);
  if (f.user.value) p.set('user', f.user.value);
  if (f.since.value) p.set('since', f.since.value);
  p.set('limit', f.limit.value);
  let jobs;
  try {
    jobs = (await get('/jobs?' + p)).jobs || [];
  } catch (e) {
    out.append(errorBox(e));
    return;
  }
  const text = f.text.value.toLowerCase();
  const shown = text ? jobs.filter((j) => `${j.module} ${j.selector} ${j.user} ${jobOutcome(j)} ${j.id}`.toLowerCase().includes(text)) : jobs;
  setText(note, `${shown.length} of ${jobs.length} jobs${jobs.length >= Number(f.limit.value) ? ' (limit reached: narrow the filters)' : ''}`);
  const canRun = ctx.can('run');
  out.append(table([
    {title: 'Job', get: (j) => h('a', {href: '#/jobs/' + j.id}, '#' + j.id)},
    {title: 'Created', get: (j) => h('span', {class: 'nowrap small'}, fmtTime(j.created))},
    {title: 'User', get: (j) => j.user},
    {title: 'Module', get: (j) => j.module},
    {title: 'Target', get: (j) => h('span', {class: 'mono break'}, j.selector)},
    {title: 'Outcome', get: jobStateCell},
    {title: 'Hosts', get: countsBar},
    {title: 'Took', get: (j) => h('span', {class: 'nowrap'}, fmtMs(j.duration_ms))},
    {title: '', get: (j) => canRun ? rerunCell(j, ctx) : ''},
  ], shown, {empty: 'No job matches.', rowAttrs: (j) => ({dataset: {job: String(j.id)}})}));
}

function rerunCell(j, ctx) {
  const c = j.counts || {};
  const bad = [...NOT_OK].reduce((a, s) => a + (c[s] || 0), 0);
  const cell = h('div', {class: 'row nowrap'}, h('a', {class: 'btn small', href: rerunHash(j), title: 'the same target again'}, 'Re-run'));
  if (j.state === 'done' && bad) {
    const b = h('button', {type: 'button', class: 'btn small', title: 'only the hosts that did not end ok'}, `Re-run failed (${bad})`);
    b.addEventListener('click', async () => {
      b.disabled = true;
      try {
        const r = await fetchJobAll(j.id, {onlyStates: NOT_OK});
        const names = r.hosts.filter((x) => FINAL.has(x.state) && x.state !== 'ok').map((x) => x.host);
        if (!names.length) { ctx.banner('No failed host in this job any more.', 'info'); return; }
        ctx.navigate(rerunHash(j, names));
      } catch (e) {
        ctx.banner('Could not list the failed hosts: ' + e.message);
      } finally {
        b.disabled = false;
      }
    });
    cell.append(b);
  }
  return cell;
}
