// Stacked bar chart of job outcomes over time, as SVG built with DOM calls.
import {svg, h} from './dom.js';

export const OUTCOMES = [
  {key: 'ok', title: 'all hosts ok', color: '#2ea043'},
  {key: 'failed', title: 'some hosts failed', color: '#da3633'},
  {key: 'cancelled', title: 'cancelled', color: '#6e7681'},
  {key: 'running', title: 'running', color: '#388bfd'},
];

export function jobOutcome(j) {
  if (j.state !== 'done') return 'running';
  const c = j.counts || {};
  const bad = (c.failed || 0) + (c.unreachable || 0) + (c.timeout || 0) + (c.lost || 0);
  if (bad) return 'failed';
  if ((c.cancelled || 0) || (c.skipped || 0)) return 'cancelled';
  return 'ok';
}

// jobs: [{created, state, counts}], hours: window, buckets: number of bars
export function outcomeChart(jobs, {hours = 24, buckets = 24} = {}) {
  const now = Date.now();
  const span = hours * 3600000;
  const start = now - span;
  const step = span / buckets;
  const data = Array.from({length: buckets}, () => ({ok: 0, failed: 0, cancelled: 0, running: 0}));
  for (const j of jobs) {
    const t = Date.parse(j.created);
    if (isNaN(t) || t < start) continue;
    const b = Math.min(buckets - 1, Math.floor((t - start) / step));
    data[b][jobOutcome(j)]++;
  }
  const max = Math.max(1, ...data.map((d) => d.ok + d.failed + d.cancelled + d.running));
  const W = 720, H = 200, L = 30, B = 22, T = 8;
  const bw = (W - L) / buckets;
  const root = svg('svg', {class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `job outcomes in the last ${hours} hours`, preserveAspectRatio: 'none'});
  root.append(svg('line', {class: 'axis', x1: L, y1: H - B, x2: W, y2: H - B}));
  for (const v of [0, Math.ceil(max / 2), max]) {
    const y = H - B - (v / max) * (H - B - T);
    root.append(svg('text', {x: L - 4, y: y + 3, 'text-anchor': 'end'}, String(v)));
  }
  data.forEach((d, i) => {
    let y = H - B;
    const x = L + i * bw + 1;
    for (const o of OUTCOMES) {
      const n = d[o.key];
      if (!n) continue;
      const hgt = (n / max) * (H - B - T);
      y -= hgt;
      const r = svg('rect', {x, y, width: Math.max(1, bw - 2), height: hgt, fill: o.color});
      r.append(svg('title', null, `${n} ${o.title}`));
      root.append(r);
    }
    if (i % Math.ceil(buckets / 6) === 0) {
      const t = new Date(start + i * step);
      root.append(svg('text', {x: x, y: H - 6}, `${String(t.getHours()).padStart(2, '0')}:00`));
    }
  });
  const legend = h('div', {class: 'legend'}, OUTCOMES.map((o) => {
    const sw = h('span', {class: 'swatch'});
    sw.style.setProperty('--c', o.color);
    return h('span', null, sw, o.title);
  }));
  return h('div', {class: 'chart-wrap'}, root, legend);
}
