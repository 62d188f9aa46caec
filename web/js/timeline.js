// Per-host durations on a canvas: one horizontal bar per host from 0 to its
// duration, the slowest on top, coloured by state.  Many hosts share a pixel
// row (the longest of them is drawn), so 10,000 hosts cost one pass.
import {STATES, COLORS} from './states.js';

export function drawTimeline(canvas, items) {
  // items: [{dur, state (index)}]
  const dpr = window.devicePixelRatio || 1;
  const W = Math.max(200, canvas.parentElement.clientWidth || 600), H = 180;
  canvas.width = Math.round(W * dpr);
  canvas.height = Math.round(H * dpr);
  canvas.style.height = H + 'px';
  const c = canvas.getContext('2d');
  c.setTransform(dpr, 0, 0, dpr, 0, 0);
  c.fillStyle = '#010409';
  c.fillRect(0, 0, W, H);
  const L = 4, R = 60, T = 4, B = 18;
  const pw = W - L - R, ph = H - T - B;
  c.fillStyle = '#8b949e';
  c.font = '11px sans-serif';
  if (!items.length) {
    c.fillText('no host has finished yet', L + 6, T + 16);
    return null;
  }
  items.sort((a, b) => b.dur - a.dur);
  const max = Math.max(1, items[0].dur);
  const rows = Math.min(items.length, Math.floor(ph));
  const rh = Math.min(12, ph / rows);
  for (let r = 0; r < rows; r++) {
    const it = items[Math.floor((r * items.length) / rows)];
    c.fillStyle = COLORS[STATES[it.state]] || '#888';
    c.fillRect(L, T + r * rh, Math.max(1, (it.dur / max) * pw), Math.max(1, rh - (rh > 3 ? 1 : 0)));
  }
  c.fillStyle = '#8b949e';
  c.fillText('0', L, H - 4);
  const lab = fmt(max);
  c.fillText(lab, L + pw - c.measureText(lab).width, H - 4);
  const n = items.length;
  const pct = (p) => items[n - 1 - Math.floor(p * (n - 1))].dur;
  return {n, max, median: pct(0.5), p95: pct(0.95), min: items[n - 1].dur};
}

function fmt(ms) {
  return ms < 1000 ? ms + ' ms' : (ms / 1000).toFixed(1) + ' s';
}
