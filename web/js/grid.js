// Per-host state grid on one canvas: a cell per host, coloured by state.
// Stays smooth at 10,000+ hosts: state changes mark cells dirty and one
// animation frame repaints only those cells (a full repaint only when the
// size or the layout changes).  Hover and click map a point to a host.
import {STATES, COLORS} from './states.js';

const PALETTE = STATES.map((s) => COLORS[s]);

export class HostGrid {
  constructor(canvas, {names, states, onSelect, onHover}) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d', {alpha: false});
    this.names = names;
    this.states = states; // Uint8Array of indices into STATES
    this.onSelect = onSelect;
    this.onHover = onHover;
    this.selected = -1;
    this.dirty = new Set();
    this.full = true;
    this.frame = 0;
    this.layout();
    this.ro = new ResizeObserver(() => { if (this.layout()) this.schedule(true); });
    this.ro.observe(canvas.parentElement);
    canvas.addEventListener('mousemove', (e) => this.hover(e));
    canvas.addEventListener('mouseleave', () => this.onHover && this.onHover(-1));
    canvas.addEventListener('click', (e) => {
      const i = this.hit(e);
      if (i >= 0 && this.onSelect) this.onSelect(i);
    });
    this.schedule(true);
  }

  layout() {
    const n = this.names.length;
    const cell = n <= 200 ? 22 : n <= 1000 ? 16 : n <= 4000 ? 11 : 8;
    const gap = cell >= 16 ? 3 : cell >= 11 ? 2 : 1;
    const width = Math.max(100, Math.floor(this.canvas.parentElement.clientWidth || 800));
    const cols = Math.max(1, Math.floor((width + gap) / (cell + gap)));
    const rows = Math.max(1, Math.ceil(n / cols));
    const height = rows * (cell + gap);
    if (this.cell === cell && this.cols === cols && this.cssW === width && this.cssH === height) return false;
    const dpr = window.devicePixelRatio || 1;
    Object.assign(this, {cell, gap, cols, rows, cssW: width, cssH: height, dpr});
    this.canvas.width = Math.round(width * dpr);
    this.canvas.height = Math.round(height * dpr);
    this.canvas.style.height = height + 'px';
    return true;
  }

  // mark host i changed (its state or selection)
  touch(i) {
    this.dirty.add(i);
    this.schedule(false);
  }

  schedule(full) {
    if (full) this.full = true;
    if (!this.frame) this.frame = requestAnimationFrame(() => this.draw());
  }

  draw() {
    this.frame = 0;
    const c = this.ctx, d = this.dpr;
    c.setTransform(d, 0, 0, d, 0, 0);
    if (this.full) {
      c.fillStyle = '#161b22';
      c.fillRect(0, 0, this.cssW, this.cssH);
      for (let i = 0; i < this.names.length; i++) this.paint(i);
      this.full = false;
    } else {
      for (const i of this.dirty) this.paint(i);
    }
    this.dirty.clear();
  }

  paint(i) {
    const c = this.ctx, s = this.cell, g = this.gap;
    const x = (i % this.cols) * (s + g), y = Math.floor(i / this.cols) * (s + g);
    c.fillStyle = '#161b22';
    c.fillRect(x, y, s + g, s + g);
    c.fillStyle = PALETTE[this.states[i]] || '#444';
    c.fillRect(x, y, s, s);
    if (i === this.selected) {
      c.strokeStyle = '#ffffff';
      c.lineWidth = 2;
      c.strokeRect(x + 1, y + 1, s - 2, s - 2);
    }
  }

  select(i) {
    if (this.selected >= 0) this.touch(this.selected);
    this.selected = i;
    if (i >= 0) this.touch(i);
  }

  hit(e) {
    const r = this.canvas.getBoundingClientRect();
    const x = e.clientX - r.left, y = e.clientY - r.top;
    const s = this.cell + this.gap;
    const col = Math.floor(x / s), row = Math.floor(y / s);
    if (col < 0 || col >= this.cols || row < 0 || x % s > this.cell || y % s > this.cell) return -1;
    const i = row * this.cols + col;
    return i < this.names.length ? i : -1;
  }

  hover(e) {
    if (!this.onHover) return;
    const i = this.hit(e);
    const r = this.canvas.getBoundingClientRect();
    this.onHover(i, e.clientX - r.left, e.clientY - r.top);
  }

  destroy() {
    this.ro.disconnect();
    if (this.frame) cancelAnimationFrame(this.frame);
  }
}
