// Small DOM helpers.  Text always goes in through text nodes / textContent:
// no innerHTML anywhere in the console.

const SVGNS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k.startsWith('on')) {
        if (typeof v !== 'function') throw new Error('h(): ' + k + ' must be a function');
        el.addEventListener(k.slice(2), v);
      }
      else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected') el[k] = v;
      else if (k === 'style' || k === 'innerHTML' || k === 'outerHTML' || k === 'srcdoc') throw new Error('h(): ' + k + ' is not allowed');
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// h('div', {class: 'x', onclick: f}, 'text', child, [more])
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVGNS, tag), attrs, children);
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function setText(el, text) {
  el.textContent = text == null ? '' : String(text);
  return el;
}

export function fmtTime(s) {
  if (!s) return '';
  const d = new Date(s);
  if (isNaN(d)) return String(s);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

export function fmtMs(ms) {
  if (ms == null || ms < 0) return '';
  if (ms < 1000) return ms + ' ms';
  if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
  const m = Math.floor(ms / 60000), s = Math.round((ms % 60000) / 1000);
  if (m < 60) return `${m} min ${s} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtAgo(ms) {
  if (ms == null) return '';
  const d = Math.max(0, Date.now() - ms);
  if (d < 2000) return 'just now';
  if (d < 60000) return Math.round(d / 1000) + ' s ago';
  if (d < 3600000) return Math.round(d / 60000) + ' min ago';
  if (d < 86400000) return Math.round(d / 3600000) + ' h ago';
  return Math.round(d / 86400000) + ' d ago';
}

// A table from rows: cols = [{title, get(row) -> Node|string, class}]
export function table(cols, rows, opts = {}) {
  const thead = h('thead', null, h('tr', null, cols.map((c) => h('th', {class: c.class}, c.title))));
  const tbody = h('tbody', null, rows.map((r) => {
    const tr = h('tr', opts.rowAttrs ? opts.rowAttrs(r) : null, cols.map((c) => h('td', {class: c.class}, c.get(r))));
    return tr;
  }));
  if (!rows.length && opts.empty) tbody.append(h('tr', null, h('td', {class: 'muted', colspan: cols.length}, opts.empty)));
  return h('table', {class: ['grid-table', opts.class]}, thead, tbody);
}

// Parses "#/path?a=b" into {path, query}
export function parseHash(hash) {
  const s = (hash || '').replace(/^#/, '') || '/';
  const q = s.indexOf('?');
  const path = q < 0 ? s : s.slice(0, q);
  const query = new URLSearchParams(q < 0 ? '' : s.slice(q + 1));
  return {path: path || '/', query};
}

export function hashWith(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return '#' + path + (s ? '?' + s : '');
}

// Debounce: the last call wins after ms.
export function debounce(fn, ms) {
  let t = null;
  const d = (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
  d.cancel = () => clearTimeout(t);
  return d;
}

// Compresses host names like clush's nodesets: web-[1-3,5],db-1
export function foldNames(names, maxLen = 400) {
  const byPrefix = new Map();
  const plain = [];
  for (const n of names) {
    const m = /^(.*?)(\d+)$/.exec(n);
    if (!m || (m[2].length > 1 && m[2][0] === '0')) { plain.push(n); continue; }
    if (!byPrefix.has(m[1])) byPrefix.set(m[1], []);
    byPrefix.get(m[1]).push(Number(m[2]));
  }
  const parts = [];
  for (const [p, nums] of byPrefix) {
    nums.sort((a, b) => a - b);
    if (nums.length === 1) { parts.push(p + nums[0]); continue; }
    const r = [];
    let a = nums[0], b = nums[0];
    for (let i = 1; i <= nums.length; i++) {
      if (i < nums.length && nums[i] === b + 1) { b = nums[i]; continue; }
      if (i < nums.length && nums[i] === b) continue;
      r.push(a === b ? String(a) : `${a}-${b}`);
      if (i < nums.length) { a = b = nums[i]; }
    }
    parts.push(`${p}[${r.join(',')}]`);
  }
  parts.push(...plain.sort());
  let s = parts.join(',');
  if (s.length > maxLen) s = s.slice(0, maxLen) + '…';
  return s;
}
