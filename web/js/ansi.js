// Host output to DOM, safely.  Text only ever becomes text nodes.  ANSI SGR
// colours (30-37, 90-97 foreground, 40-47 background, bold, reset) become
// spans with classes; every other escape sequence (cursor moves, OSC titles
// and links, DCS, ...) is dropped; other control characters are shown as
// their Unicode "control picture" (NUL -> U+2400) so nothing is invisible.
// Writing may be split anywhere: an unfinished escape waits for the next
// chunk.

const NAMES = ['black', 'red', 'green', 'yellow', 'blue', 'magenta', 'cyan', 'white'];
const MAX_PENDING = 4096;

export class AnsiRenderer {
  constructor(target) {
    this.target = target;
    this.reset();
  }

  reset() {
    this.fg = null;
    this.bg = null;
    this.bold = false;
    this.pending = '';
    this.chars = 0;
  }

  // write(text, cls): cls is an extra class for this chunk (e.g. stderr)
  write(text, cls) {
    text = this.pending + text;
    this.pending = '';
    const n = text.length;
    let buf = '';
    let i = 0;
    const flush = () => { if (buf) { this.emit(buf, cls); buf = ''; } };
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c === 0x1b) {
        flush();
        const end = this.escape(text, i);
        if (end < 0) { // unfinished: wait for more (bounded)
          if (n - i <= MAX_PENDING) this.pending = text.slice(i);
          break;
        }
        i = end;
        continue;
      }
      if (c === 0x0d) { // CR: dropped before LF, shown otherwise
        if (i + 1 === n) { flush(); this.pending = '\r'; break; }
        if (text.charCodeAt(i + 1) !== 0x0a) buf += '\u240d';
        i++;
        continue;
      }
      if ((c < 0x20 && c !== 0x0a && c !== 0x09) || c === 0x7f) {
        buf += c === 0x7f ? '\u2421' : String.fromCharCode(0x2400 + c);
      } else if (c >= 0x80 && c <= 0x9f) {
        // C1 controls (a one-byte CSI and friends): dropped
      } else {
        buf += text[i];
      }
      i++;
    }
    flush();
  }

  // end(): the output is complete; an unfinished escape is dropped
  end() {
    if (this.pending === '\r') this.emit('\u240d');
    this.pending = '';
  }

  // Returns the index after the escape sequence starting at i, -1 if unfinished.
  escape(t, i) {
    const n = t.length;
    if (i + 1 >= n) return -1;
    const k = t[i + 1];
    if (k === '[') { // CSI: parameters 0x30-0x3f, intermediates 0x20-0x2f, final 0x40-0x7e
      let j = i + 2;
      while (j < n && t.charCodeAt(j) >= 0x30 && t.charCodeAt(j) <= 0x3f) j++;
      const params = t.slice(i + 2, j);
      while (j < n && t.charCodeAt(j) >= 0x20 && t.charCodeAt(j) <= 0x2f) j++;
      if (j >= n) return -1;
      const f = t.charCodeAt(j);
      if (f < 0x40 || f > 0x7e) return j; // malformed: drop ESC [ and parameters
      if (t[j] === 'm' && j === i + 2 + params.length && /^[0-9;]*$/.test(params)) this.sgr(params);
      return j + 1;
    }
    if (k === ']' || k === 'P' || k === 'X' || k === '^' || k === '_') {
      // OSC / DCS / SOS / PM / APC: up to BEL or ST (ESC \), all dropped
      for (let j = i + 2; j < n; j++) {
        const c = t.charCodeAt(j);
        if (c === 0x07) return j + 1;
        if (c === 0x1b) {
          if (j + 1 >= n) return -1;
          if (t[j + 1] === '\\') return j + 2;
        }
      }
      return n - i > MAX_PENDING ? n : -1;
    }
    // ESC with intermediates then a final byte (charset selection etc.)
    let j = i + 1;
    while (j < n && t.charCodeAt(j) >= 0x20 && t.charCodeAt(j) <= 0x2f) j++;
    if (j >= n) return -1;
    return j + 1;
  }

  sgr(params) {
    const codes = params === '' ? [0] : params.split(';').map((x) => (x === '' ? 0 : Number(x)));
    for (let k = 0; k < codes.length; k++) {
      const c = codes[k];
      if (c === 0) { this.fg = null; this.bg = null; this.bold = false; }
      else if (c === 1) this.bold = true;
      else if (c === 22) this.bold = false;
      else if (c >= 30 && c <= 37) this.fg = NAMES[c - 30];
      else if (c === 39) this.fg = null;
      else if (c >= 90 && c <= 97) this.fg = 'bright-' + NAMES[c - 90];
      else if (c >= 40 && c <= 47) this.bg = NAMES[c - 40];
      else if (c === 49) this.bg = null;
      else if (c === 38 || c === 48) { // 256-colour / truecolour: skipped, not rendered
        if (codes[k + 1] === 5) k += 2;
        else if (codes[k + 1] === 2) k += 4;
      }
    }
  }

  emit(text, cls) {
    this.chars += text.length;
    if (!this.fg && !this.bg && !this.bold && !cls) {
      this.target.append(document.createTextNode(text));
      return;
    }
    const span = document.createElement('span');
    const c = [];
    if (this.fg) c.push('ansi-fg-' + this.fg);
    if (this.bg) c.push('ansi-bg-' + this.bg);
    if (this.bold) c.push('ansi-bold');
    if (cls) c.push(cls);
    span.className = c.join(' ');
    span.textContent = text;
    this.target.append(span);
  }
}

// Renders a whole output (string) into target.
export function renderAnsi(target, text, cls) {
  const r = new AnsiRenderer(target);
  r.write(text, cls);
  r.end();
  return r;
}

// Bytes (Uint8Array) to text without ever failing: invalid UTF-8 becomes U+FFFD.
export function decodeBytes(bytes, decoder) {
  return (decoder || new TextDecoder('utf-8', {fatal: false})).decode(bytes);
}

export function b64ToBytes(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
