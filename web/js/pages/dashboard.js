// Dashboard: workers per IDC with live status (refreshed every 5 s),
// recent jobs, and a chart of job outcomes over the last 24 hours.
import {h, clear, setText, fmtAgo, fmtTime, table} from '../dom.js';
import {get} from '../api.js';
import {outcomeChart} from '../chart.js';
import {countsBar, jobStateCell} from './history.js';
import {errorBox} from '../app.js';

export async function render(root, ctx) {
  const workersEl = h('div', {class: 'cards', id: 'dash-workers'});
  const workersNote = h('span', {class: 'muted small'});
  const jobsEl = h('div', {id: 'dash-jobs', class: 'table-wrap'});
  const chartEl = h('div', {id: 'dash-chart'});
  root.append(
    h('h1', null, 'Dashboard'),
    h('section', {class: 'card'}, h('div', {class: 'row spread'}, h('h2', null, 'Workers by IDC'), workersNote), workersEl),
    h('div', {class: 'cols'},
      h('section', {class: 'card'}, h('h2', null, 'Job outcomes, last 24 hours'), chartEl),
      h('section', {class: 'card'}, h('div', {class: 'row spread'}, h('h2', null, 'Recent jobs'), h('a', {href: '#/history'}, 'History')), jobsEl)));

  async function workers() {
    try {
      const ws = (await get('/workers')).workers || [];
      const byIdc = new Map();
      for (const w of ws) {
        if (!byIdc.has(w.idc)) byIdc.set(w.idc, []);
        byIdc.get(w.idc).push(w);
      }
      clear(workersEl);
      if (!ws.length) workersEl.append(h('p', {class: 'muted'}, 'No worker has enrolled yet.'));
      for (const [idc, list] of [...byIdc].sort()) {
        const up = list.filter((w) => w.connected).length;
        workersEl.append(h('div', {class: 'card', dataset: {idc}},
          h('h3', null, `IDC ${idc} `, h('span', {class: 'muted'}, `${up}/${list.length} connected`)),
          list.map((w) => h('div', {class: 'row', dataset: {worker: w.name, connected: String(!!w.connected)}},
            h('span', {class: ['dot', w.connected ? 'on' : 'off']}), h('strong', null, w.name),
            h('span', {class: 'muted small'}, w.connected ? `${w.running || 0} running` : 'disconnected'),
            h('span', {class: 'muted small'}, w.last_seen_ms ? 'seen ' + fmtAgo(w.last_seen_ms) : '')))));
      }
      setText(workersNote, 'updated ' + new Date().toLocaleTimeString());
    } catch (e) {
      if (e.status !== 401) { clear(workersEl).append(errorBox(e)); }
    }
  }

  async function jobs() {
    try {
      const all = (await get('/jobs?state=any&since=86400&limit=1000')).jobs || [];
      clear(chartEl).append(outcomeChart(all));
      const recent = all.length ? all.slice(0, 10) : ((await get('/jobs?limit=10')).jobs || []);
      clear(jobsEl).append(table([
        {title: 'Job', get: (j) => h('a', {href: '#/jobs/' + j.id}, '#' + j.id)},
        {title: 'Module', get: (j) => j.module},
        {title: 'Target', get: (j) => h('span', {class: 'mono break'}, j.selector)},
        {title: 'State', get: jobStateCell},
        {title: 'Hosts', get: (j) => countsBar(j)},
        {title: 'Created', get: (j) => h('span', {class: 'nowrap small'}, fmtTime(j.created))},
      ], recent, {empty: 'No job yet.'}));
    } catch (e) {
      if (e.status !== 401) { clear(jobsEl).append(errorBox(e)); }
    }
  }

  await Promise.all([workers(), jobs()]);
  const t1 = setInterval(workers, 5000);
  const t2 = setInterval(jobs, 15000);
  return () => { clearInterval(t1); clearInterval(t2); };
}
