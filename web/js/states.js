// Host states of a job, in the order the API lists them, with their colours
// (the canvas grid uses these; CSS has the same ones as .st-NAME classes).
export const STATES = ['queued', 'dispatched', 'running', 'ok', 'failed', 'unreachable', 'timeout', 'cancelled', 'skipped', 'lost'];
export const FINAL = new Set(['ok', 'failed', 'unreachable', 'timeout', 'cancelled', 'skipped', 'lost']);
export const BAD = new Set(['failed', 'unreachable', 'timeout', 'lost']);
export const COLORS = {
  queued: '#6e7681',
  dispatched: '#8fb8ff',
  running: '#388bfd',
  ok: '#2ea043',
  failed: '#da3633',
  unreachable: '#e3872d',
  timeout: '#a371f7',
  cancelled: '#484f58',
  skipped: '#b1bac4',
  lost: '#9e6a03',
};
export const STATE_INDEX = Object.fromEntries(STATES.map((s, i) => [s, i]));
