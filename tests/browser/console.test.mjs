// Browser test of the omserver web console: Playwright (playwright-core)
// driving Debian's chromium headless against a running om-master.
// Plain node script; prints TAP lines "ok - STEP" / "not ok - STEP", stops
// at the first failure (the later steps depend on it), saves a screenshot
// of the page into OM_ARTIFACTS, and exits 1.
//
//   OM_URL            http://127.0.0.1:PORT (required)
//   OM_USER           user to log in as (default admin)
//   OM_PASSWORD_FILE  file holding the password (required)
//   OM_SELECTOR       target of the jobs (default all)
//   OM_HOSTS          how many hosts the selector matches (required)
//   OM_PENDING_TIMEOUT the master's --pending-timeout in seconds (default 3)
//   OM_ARTIFACTS      directory for screenshots (default .)
//   OM_CHROMIUM       browser binary (default /usr/bin/chromium)
import {chromium} from 'playwright-core';
import {readFileSync, mkdirSync} from 'node:fs';
import {hostname} from 'node:os';
import {join} from 'node:path';

const URL = process.env.OM_URL;
const USER = process.env.OM_USER || 'admin';
const PASSWORD = process.env.OM_PASSWORD_FILE ? readFileSync(process.env.OM_PASSWORD_FILE, 'utf8').trim() : '';
const SELECTOR = process.env.OM_SELECTOR || 'all';
const NHOSTS = Number(process.env.OM_HOSTS || 0);
const PENDING_S = Number(process.env.OM_PENDING_TIMEOUT || 3);
const ART = process.env.OM_ARTIFACTS || '.';
const EXE = process.env.OM_CHROMIUM || '/usr/bin/chromium';
const WAIT = 20000; // any one wait
const TOTAL = 120000; // the whole run (it takes about 30-45 s)

if (!URL || !PASSWORD || !NHOSTS) {
  console.log('not ok - setup # OM_URL, OM_PASSWORD_FILE and OM_HOSTS are needed');
  process.exit(2);
}

let browser, page, page2, stepName = 'launch';
const problems = []; // console errors, page errors, dialogs
let dialogs = 0;
let acceptDialog = false; // the next confirm() is expected: accept it

async function shot(name) {
  for (const [p, suffix] of [[page, ''], [page2, '-viewer']]) {
    if (!p || p.isClosed()) continue;
    try {
      mkdirSync(ART, {recursive: true});
      const f = join(ART, `browser-failure-${name.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 60)}${suffix}.png`);
      await p.screenshot({path: f, fullPage: true, timeout: 10000});
      console.log(`# screenshot: ${f}`);
    } catch (e) {
      console.log(`# screenshot failed: ${e.message}`);
    }
  }
}

async function fail(name, err) {
  console.log(`not ok - ${name}`);
  for (const l of String(err && err.stack || err).replace(/\x1b\[[0-9;]*m/g, "").split('\n').slice(0, 8)) console.log(`#   ${l}`);
  for (const p of problems.slice(-10)) console.log(`#   browser: ${p}`);
  if (page) console.log(`#   at ${page.url()}`);
  if (page2 && !page2.isClosed()) console.log(`#   viewer at ${page2.url()}`);
  await shot(name);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
}

async function step(name, fn) {
  stepName = name;
  const t0 = Date.now();
  try {
    await fn();
  } catch (e) {
    await fail(name, e);
  }
  console.log(`ok - ${name}`);
  console.log(`# took ${Date.now() - t0} ms`);
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

const guard = setTimeout(() => { fail(`${stepName} (the whole test took over ${TOTAL / 1000} s)`, 'time limit'); }, TOTAL);

// Runs a job from the Run form (options: {timeout}); returns its id.
async function runFromForm(cmd, opts = {}) {
  await page.click('nav a[data-page="/run"]');
  await page.waitForSelector('#run-form', {timeout: WAIT});
  await page.fill('#run-selector', SELECTOR);
  await page.waitForSelector(`#run-count[data-count="${NHOSTS}"]`, {timeout: WAIT});
  await page.selectOption('#run-module', 'shell');
  await page.waitForSelector('#param-cmd', {timeout: WAIT});
  await page.fill('#param-cmd', cmd);
  if (opts.timeout) await page.fill('#opt-timeout', String(opts.timeout));
  await page.click('#run-submit');
  await page.waitForURL(/#\/jobs\/[0-9]+$/, {timeout: WAIT});
  await page.waitForSelector('#job', {timeout: WAIT});
  return Number(/#\/jobs\/([0-9]+)$/.exec(page.url())[1]);
}

// A REST call from inside page p (its session cookie, its CSRF token).
async function apiCall(p, method, path, body) {
  return p.evaluate(async ([method, path, body]) => {
    const me = await (await fetch('/api/v1/me')).json().catch(() => ({}));
    const r = await fetch('/api/v1' + path, {method, headers: {'Content-Type': 'application/json', 'X-CSRF-Token': me.csrf_token || ''},
      body: body === undefined ? undefined : JSON.stringify(body)});
    let j = null;
    try { j = await r.json(); } catch { /* not JSON */ }
    return {status: r.status, body: j};
  }, [method, path, body]);
}

async function counts() {
  return page.$$eval('#counters .count', (els) => Object.fromEntries(els.map((e) => [e.dataset.state, Number(e.dataset.count)])));
}

const hostName = hostname();

await step('launch chromium headless', async () => {
  browser = await chromium.launch({
    executablePath: EXE,
    headless: true,
    timeout: WAIT,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
  });
  const ctx = await browser.newContext({viewport: {width: 1280, height: 900}});
  ctx.setDefaultTimeout(WAIT);
  page = await ctx.newPage();
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const t = m.text();
    if (/Failed to load resource/.test(t)) return; // an expected 401 before login
    problems.push('console: ' + t);
  });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('dialog', (d) => {
    if (acceptDialog && d.type() === 'confirm') { acceptDialog = false; d.accept().catch(() => {}); return; }
    dialogs++; problems.push(`dialog ${d.type()}: ${d.message()}`); d.dismiss().catch(() => {});
  });
});

await step('console served with a strict CSP; login form shown', async () => {
  const res = await page.goto(URL + '/', {waitUntil: 'domcontentloaded', timeout: WAIT});
  check(res && res.status() === 200, `GET / answered ${res && res.status()}`);
  const csp = res.headers()['content-security-policy'] || '';
  check(/script-src 'self'/.test(csp) && !/unsafe-inline/.test(csp), `CSP is '${csp}'`);
  await page.waitForSelector('#login-form', {timeout: WAIT});
});

await step('wrong password refused, then log in', async () => {
  await page.fill('#login-user', USER);
  await page.fill('#login-password', 'not-the-password');
  await page.click('#login-submit');
  await page.waitForFunction(() => /Wrong/.test(document.getElementById('login-error')?.textContent || ''), null, {timeout: WAIT});
  await page.fill('#login-password', PASSWORD);
  await page.click('#login-submit');
  await page.waitForSelector(`#who[data-user="${USER}"]`, {timeout: WAIT});
  await page.waitForSelector('#dash-workers [data-worker]', {timeout: WAIT});
  const me = await page.evaluate(async () => (await fetch('/api/v1/me')).json());
  check(me.user === USER && me.auth === 'session', `/me says ${JSON.stringify(me)}`);
  const cookieVisible = await page.evaluate(() => document.cookie.includes('om_session'));
  check(!cookieVisible, 'the session cookie is readable from JavaScript (not HttpOnly)');
});

let job1;
await step(`run 'hostname' on '${SELECTOR}' from the Run form`, async () => {
  job1 = await runFromForm('hostname', {timeout: 77});
  check(job1 > 0, 'no job id');
});

await step(`every host (${NHOSTS}) turns ok in the live grid`, async () => {
  await page.waitForSelector(`#counters .count[data-state="ok"][data-count="${NHOSTS}"]`, {timeout: 60000});
  await page.waitForSelector('#job[data-job-state="done"]', {timeout: WAIT});
  const c = await counts();
  const notOk = Object.entries(c).filter(([s, n]) => s !== 'ok' && n > 0);
  check(notOk.length === 0, `hosts not ok: ${JSON.stringify(notOk)}`);
  const total = await page.$eval('#job', (e) => Number(e.dataset.total));
  check(total === NHOSTS, `the grid has ${total} hosts`);
  // the grid is one canvas with one cell per host, not a DOM node per host
  const box = await page.$eval('#host-grid', (c) => ({w: c.width, h: c.height}));
  check(box.w > 0 && box.h > 0, 'the host grid canvas is empty');
  // identical outputs fold into one group of all hosts
  await page.waitForSelector(`#groups .group[data-hosts="${NHOSTS}"]`, {timeout: WAIT});
});

await step("open one host's output from the grid: it shows its hostname", async () => {
  const box = await page.$eval('#host-grid', (c) => { const r = c.getBoundingClientRect(); return {x: r.left, y: r.top}; });
  await page.mouse.click(box.x + 4, box.y + 4); // the first cell
  await page.waitForFunction(() => (document.getElementById('host-output')?.dataset.host || '') !== '', null, {timeout: WAIT});
  const host = await page.$eval('#host-output', (e) => e.dataset.host);
  await page.waitForFunction((hn) => (document.getElementById('host-output')?.textContent || '').includes(hn), hostName, {timeout: WAIT});
  const shown = await page.$eval('#host-name', (e) => e.textContent);
  check(shown === host, `the header names ${shown}, the output is of ${host}`);
  // and through the host field, another host
  const other = await page.$eval('#groups .hostlink:last-of-type', (e) => e.dataset.host);
  await page.fill('#host-goto', other);
  await page.press('#host-goto', 'Enter');
  await page.waitForSelector(`#host-output[data-host="${other}"]`, {timeout: WAIT});
  await page.waitForFunction((hn) => (document.getElementById('host-output')?.textContent || '').includes(hn), hostName, {timeout: WAIT});
});

await step('a job whose output is <script> and <img onerror> payloads: nothing executes, the text is shown literally, live', async () => {
  const payloads = [
    '<script>window.__xss=1</script>',
    '<img src=x onerror="window.__xss=2">',
    '</pre><svg onload="window.__xss=3"></svg>',
  ];
  // printf with %s: the payloads reach the output byte for byte; the sleep keeps
  // the job running while the page opens, so the grid must change live;
  // ANSI red and an OSC 8 link must render as a class and plain text.
  const cmd = 'sleep 2; printf "%s\\n" ' + payloads.map((p) => `'${p}'`).join(' ') +
    "; printf '\\033[31mred\\033[0m \\033]8;;http://evil.example/\\033\\\\link\\033]8;;\\033\\\\\\n'";
  const id = await runFromForm(cmd);
  const first = await page.$eval('#job', (e) => e.dataset.jobState);
  // event: counts while the hosts sleep: dispatched / running hosts in the counters
  await page.waitForFunction(() => {
    const j = document.getElementById('job');
    const n = (s) => Number(document.querySelector(`#counters .count[data-state="${s}"]`)?.dataset.count || 0);
    return j && j.dataset.liveCounts === '1' && n('dispatched') + n('running') > 0;
  }, null, {timeout: 5000}).catch(() => { throw new Error(`job ${id}: no "event: counts" showed dispatched/running hosts while they ran`); });
  await page.waitForSelector(`#counters .count[data-state="ok"][data-count="${NHOSTS}"]`, {timeout: 60000});
  await page.waitForSelector('#job[data-job-state="done"]', {timeout: WAIT});
  check(first === 'running', `job ${id} was already '${first}' when its page opened (cannot tell live updates)`);
  await page.fill('#host-goto', await page.$eval('#groups .hostlink', (e) => e.dataset.host));
  await page.press('#host-goto', 'Enter');
  await page.waitForFunction(() => (document.getElementById('host-output')?.textContent || '').includes('window.__xss=3'), null, {timeout: WAIT});
  const text = await page.$eval('#host-output', (e) => e.textContent);
  for (const p of payloads) check(text.includes(p), `the output does not show ${p} literally: ${JSON.stringify(text)}`);
  check(text.includes('red link'), `ANSI/OSC not stripped: ${JSON.stringify(text)}`);
  check(!text.includes('\u001b') && !text.includes('evil.example'), 'escape sequences leaked into the text');
  const red = await page.$$eval('#host-output .ansi-fg-red', (els) => els.map((e) => e.textContent));
  check(red.includes('red'), `no red span: ${JSON.stringify(red)}`);
  const injected = await page.evaluate(() => document.querySelectorAll('#host-output *:not(span), #groups pre *:not(span), img, svg script, a[href*="evil"]').length);
  check(injected === 0, `${injected} injected elements in the page`);
  const groupText = await page.$eval('#groups pre', (e) => e.textContent);
  check(groupText.includes(payloads[1]), 'the folded group does not show the payload literally');
  await page.waitForTimeout(500); // an onerror would fire by now
  const xss = await page.evaluate(() => window.__xss);
  check(xss === undefined, `window.__xss = ${xss}: a payload executed`);
  check(dialogs === 0, `${dialogs} dialogs opened`);
});

await step('a host that fails (web-2 exits 3): counters, folding and "re-run failed hosts"', async () => {
  // web-2 is 127.0.0.12 in the fixture: the address sshd sees
  const id = await runFromForm('case "$SSH_CONNECTION" in *" 127.0.0.12 "*) echo broken; exit 3;; esac; echo fine');
  await page.waitForSelector('#job[data-job-state="done"]', {timeout: 60000});
  await page.waitForSelector(`#counters .count[data-state="ok"][data-count="${NHOSTS - 1}"]`, {timeout: WAIT});
  await page.waitForSelector('#counters .count[data-state="failed"][data-count="1"]', {timeout: WAIT});
  await page.waitForSelector('#groups[data-groups="2"]', {timeout: WAIT});
  await page.click('#job-rerun-failed');
  await page.waitForSelector('#run-count[data-count="1"]', {timeout: WAIT});
  const sel = await page.$eval('#run-selector', (e) => e.value);
  check(sel === 'web-2', `job ${id}: re-run failed hosts selects '${sel}'`);
});

// 10,000 hosts with output, mixed final states and two folded groups: what a
// job without a worker (the real 10,000-host step below) cannot produce.
await step('a 10,000-host job with outputs (API answered by the test): the grid and the folding keep up', async () => {
  const N = 10000, JID = 999999999;
  const names = Array.from({length: N}, (_, i) => `node-${i + 1}`);
  const job = {id: JID, created: new Date().toISOString(), user: USER, module: 'shell', selector: 'all', hosts: N, state: 'running', counts: {queued: N}};
  const sorted = names.map((x) => ({host: x, state: 'queued', exit: null, duration_ms: null, worker: null, reason: null}))
    .sort((a, b) => (a.host < b.host ? -1 : 1));
  await page.route(new RegExp(`/api/v1/jobs/${JID}(\\?.*)?$`), (r) => {
    const after = new globalThis.URL(r.request().url()).searchParams.get('after');
    const rest = after ? sorted.filter((x) => x.host > after) : sorted;
    r.fulfill({contentType: 'application/json', body: JSON.stringify({job, hosts: rest.slice(0, 1000)})});
  });
  let ev = '', n = 0;
  names.forEach((x, i) => {
    const bad = i % 7 === 0;
    ev += `id: ${++n}\nevent: output\ndata: ${JSON.stringify({id: n, kind: 'output', host: x, stream: 'stdout', text: bad ? 'error: disk full\n' : 'Linux 6.1\n'})}\n\n`;
    ev += `id: ${++n}\nevent: state\ndata: ${JSON.stringify({id: n, kind: 'state', host: x, state: bad ? 'failed' : 'ok', exit_code: bad ? 1 : 0, duration_ms: 100 + (i * 37) % 5000})}\n\n`;
  });
  ev += `id: ${++n}\nevent: done\ndata: {"id":${n},"kind":"done"}\n\n`;
  await page.route(new RegExp(`/api/v1/jobs/${JID}/events`), (r) => r.fulfill({status: 200, headers: {'Content-Type': 'text/event-stream'}, body: ev}));
  const t0 = Date.now();
  await page.evaluate((j) => { location.hash = '#/jobs/' + j; }, JID);
  await page.waitForSelector(`#job[data-finished="${N}"]`, {timeout: 60000});
  const ms = Date.now() - t0;
  const c = await counts();
  check(c.ok === N - Math.ceil(N / 7) && c.failed === Math.ceil(N / 7), `counters ${JSON.stringify(c)}`);
  await page.waitForSelector('#groups[data-groups="2"]', {timeout: WAIT});
  const nodes = await page.evaluate(() => document.getElementsByTagName('*').length);
  check(nodes < 3000, `${nodes} DOM elements for a 10,000-host job`);
  await page.fill('#host-goto', 'node-9999');
  await page.press('#host-goto', 'Enter');
  await page.waitForSelector('#host-output[data-host="node-9999"]', {timeout: WAIT});
  console.log(`# 10,000 hosts: every state shown ${ms} ms after opening the page; ${nodes} DOM elements`);
  check(ms < 20000, `${ms} ms to show 10,000 host states`);
  await page.unrouteAll({behavior: 'ignoreErrors'});
});


await step('event: counts colours unfinished hosts dispatched / running in the counters and the grid (API answered by the test)', async () => {
  const N = 10, JID = 999999998;
  const names = Array.from({length: N}, (_, i) => `live-${i + 1}`);
  const job = {id: JID, created: new Date().toISOString(), user: USER, module: 'shell', selector: 'all', hosts: N, state: 'running', counts: {queued: N}};
  await page.route(new RegExp(`/api/v1/jobs/${JID}(\\?.*)?$`), (r) => r.fulfill({contentType: 'application/json',
    body: JSON.stringify({job, hosts: names.map((x) => ({host: x, state: 'queued', exit: null, duration_ms: null, worker: null, reason: null}))})}));
  const ev = `id: 1\nevent: state\ndata: ${JSON.stringify({id: 1, kind: 'state', host: 'live-1', state: 'ok', exit_code: 0, duration_ms: 5})}\n\n` +
    `event: counts\ndata: ${JSON.stringify({counts: {queued: 4, dispatched: 2, running: 3, ok: 1}, nhosts: N})}\n\n`;
  await page.route(new RegExp(`/api/v1/jobs/${JID}/events`), (r) => r.fulfill({status: 200, headers: {'Content-Type': 'text/event-stream'}, body: ev}));
  await page.evaluate((j) => { location.hash = '#/jobs/' + j; }, JID);
  await page.waitForSelector('#job[data-live-counts="1"]', {timeout: WAIT});
  await page.waitForSelector('#counters .count[data-state="running"][data-count="3"]', {timeout: WAIT});
  const c = await counts();
  check(c.ok === 1 && c.running === 3 && c.dispatched === 2 && c.queued === 4, `counters ${JSON.stringify(c)}`);
  // the grid: cell 0 ok, 1-3 running, 4-5 dispatched, 6-9 queued (colours of states.js)
  await page.waitForTimeout(100);
  const px = await page.$eval('#host-grid', (cv) => {
    const x = cv.getContext('2d'), d = window.devicePixelRatio || 1, out = [];
    for (let i = 0; i < 10; i++) { const p = x.getImageData(Math.round((i * 25 + 6) * d), Math.round(6 * d), 1, 1).data; out.push('#' + [p[0], p[1], p[2]].map((v) => v.toString(16).padStart(2, '0')).join('')); }
    return out;
  });
  const want = ['#2ea043', '#388bfd', '#388bfd', '#388bfd', '#8fb8ff', '#8fb8ff', '#6e7681', '#6e7681', '#6e7681', '#6e7681'];
  check(JSON.stringify(px) === JSON.stringify(want), `grid colours ${JSON.stringify(px)}`);
  await page.unrouteAll({behavior: 'ignoreErrors'});
});

await step("history lists the job; re-run from History and from the job view pre-fills the job's params and options (from the server)", async () => {
  await page.click('nav a[data-page="/history"]');
  await page.waitForSelector(`#hist-table tr[data-job="${job1}"]`, {timeout: WAIT});
  await page.evaluate(() => localStorage.clear()); // not this browser's own record
  await page.click(`#hist-table tr[data-job="${job1}"] a.btn`);
  await page.waitForSelector(`#run-count[data-count="${NHOSTS}"]`, {timeout: WAIT});
  await page.waitForSelector('#run-from[data-source="server"]', {timeout: WAIT});
  let v = await page.$eval('#param-cmd', (e) => e.value);
  check(v === 'hostname', `the re-run form (history) has cmd '${v}'`);
  v = await page.$eval('#opt-timeout', (e) => e.value);
  check(v === '77', `the re-run form (history) has timeout '${v}'`);
  await page.evaluate((j) => { location.hash = '#/jobs/' + j; }, job1);
  await page.waitForSelector('#job[data-job-state="done"]', {timeout: WAIT});
  await page.click('#job-rerun');
  await page.waitForSelector('#run-from[data-source="server"]', {timeout: WAIT});
  await page.waitForSelector('#param-cmd', {timeout: WAIT});
  v = await page.$eval('#param-cmd', (e) => e.value);
  check(v === 'hostname', `the re-run form (job view) has cmd '${v}'`);
  v = await page.$eval('#opt-timeout', (e) => e.value);
  check(v === '77', `the re-run form (job view) has timeout '${v}'`);
});

await step('re-run of a job with a secret parameter: "********" is not filled in and must be typed again (API answered by the test)', async () => {
  const JID = 999999997;
  await page.route(/\/api\/v1\/modules\/shell$/, async (r) => {
    const res = await r.fetch();
    const m = await res.json();
    m.schema = [...(m.schema || []), {name: 'api_key', type: 'string', secret: true, description: 'a secret (test)'}];
    await r.fulfill({response: res, json: m});
  });
  await page.route(new RegExp(`/api/v1/jobs/${JID}(\\?.*)?$`), (r) => r.fulfill({json: {job: {id: JID, created: new Date().toISOString(), user: USER,
    module: 'shell', selector: 'web-1', state: 'done', hosts: 1, counts: {ok: 1}, params: {cmd: 'echo from-the-server', api_key: '********'},
    options: {timeout: 55, forks: 0, batch: 0, max_fail: 0, check: true, become: false, become_user: null, retry_lost: false}}, hosts: []}}));
  let posted = 0;
  await page.route(/\/api\/v1\/jobs$/, (r) => { if (r.request().method() === 'POST') posted++; return r.fulfill({status: 500, json: {error: 'test: not to be called'}}); });
  await page.evaluate((j) => { location.hash = `#/run?selector=web-1&module=shell&from=${j}`; }, JID);
  await page.waitForSelector('#param-api_key[data-reenter="1"]', {timeout: WAIT});
  const f = await page.evaluate(() => ({cmd: document.getElementById('param-cmd').value, key: document.getElementById('param-api_key').value,
    timeout: document.getElementById('opt-timeout').value, check: document.getElementById('opt-check').checked, text: document.body.textContent}));
  check(f.cmd === 'echo from-the-server' && f.timeout === '55' && f.check === true, `prefilled ${JSON.stringify({...f, text: undefined})}`);
  check(f.key === '' && !f.text.includes('********'), 'the masked secret is in the form');
  await page.click('#run-submit');
  await page.waitForFunction(() => /type the secret again/.test(document.getElementById('run-error')?.textContent || ''), null, {timeout: WAIT});
  check(posted === 0, 'the form was submitted without the secret');
  await page.unrouteAll({behavior: 'ignoreErrors'});
});

await step('inventory: add a host with the form; it is listed', async () => {
  await page.click('nav a[data-page="/inventory"]');
  await page.waitForSelector('#host-add-form', {timeout: WAIT});
  await page.fill('#host-add-name', 'added-1');
  await page.fill('#host-add-addr', '127.0.0.41');
  await page.fill('#host-add-idc', 'bj');
  await page.fill('#host-add-port', '2222');
  await page.fill('#host-add-groups', 'added, canary');
  await page.click('#host-add-submit');
  await page.waitForSelector('#inv-hosts tr[data-host="added-1"]', {timeout: WAIT});
  const row = await page.$eval('#inv-hosts tr[data-host="added-1"]', (e) => e.textContent);
  check(row.includes('127.0.0.41:2222') && row.includes('canary'), `the row says '${row}'`);
});

await step('inventory: import an Ansible INI inventory (a bad line is named; then 2 hosts)', async () => {
  await page.fill('#host-import-text', '[bad]\nbad-1 ansible_host=127.0.0.61\nbad-2 ansible_port=99999\n');
  await page.fill('#host-import-idc', 'bj');
  await page.click('#host-import-submit');
  await page.waitForSelector('#host-import-line[data-line="3"]', {timeout: WAIT});
  const err = await page.$eval('#host-import-form .field-error[data-field="text"]', (e) => e.textContent);
  check(/line 3/.test(err), `the error is '${err}'`);
  await page.fill('#host-import-text', '[imported]\nimp-1 ansible_host=127.0.0.51\nimp-2 ansible_host=127.0.0.52 ansible_port=2222 idc=sh\n');
  await page.click('#host-import-submit');
  await page.waitForSelector('#host-import-ok[data-count="2"]', {timeout: WAIT});
  await page.waitForSelector('#inv-hosts tr[data-host="imp-2"]', {timeout: WAIT});
  await page.waitForSelector('#inv-hosts tr[data-host="imp-1"]', {timeout: WAIT});
  const row = await page.$eval('#inv-hosts tr[data-host="imp-2"]', (e) => e.textContent);
  check(row.includes('127.0.0.52:2222') && row.includes('sh') && row.includes('imported'), `the row says '${row}'`);
  check(!(await page.$('#inv-hosts tr[data-host="bad-1"]')), 'the refused inventory was partly imported');
});

await step("a host's page (#/hosts/NAME): fields, and facts as a key/value tree", async () => {
  const r = await apiCall(page, 'POST', '/jobs', {selector: 'web-1', module: 'facts', params: {}});
  check(r.status === 201 && r.body && r.body.id, `POST /jobs facts: ${r.status} ${JSON.stringify(r.body)}`);
  const t0 = Date.now();
  for (;;) {
    const j = await apiCall(page, 'GET', `/jobs/${r.body.id}?limit=1`);
    if (j.body && j.body.job && j.body.job.state === 'done') break;
    check(Date.now() - t0 < WAIT, `facts job ${r.body.id} not done in ${WAIT} ms`);
    await page.waitForTimeout(200);
  }
  await page.click('#inv-hosts a[data-host-link="web-1"]');
  await page.waitForSelector('#host-fields', {timeout: WAIT});
  const title = await page.$eval('#host-title', (e) => e.textContent);
  check(title === 'Host web-1', `the title is '${title}'`);
  await page.waitForSelector('#host-facts .tree-key', {timeout: WAIT});
  const facts = await page.$$eval('#host-facts .tree-key', (els) => els.length);
  check(facts > 3, `${facts} facts shown`);
  check(/gathered/.test(await page.$eval('#host-facts-at', (e) => e.textContent)), 'no gathering time');
  await page.evaluate(() => { location.hash = '#/hosts/added-1'; });
  await page.waitForSelector('#host-facts-none', {timeout: WAIT});
  const fields = await page.$eval('#host-fields', (e) => e.textContent);
  check(fields.includes('127.0.0.41') && fields.includes('canary'), `added-1: '${fields}'`);
});

// The real thing at 10,000 hosts: inventory hosts in an IDC without a worker,
// a job from the Run form, and the live view fed by the server's own event
// stream.  Every host waits queued ("pending: no live worker"), then after
// om-master --pending-timeout (browser.sh: 3 s) all turn unreachable at once:
// 10,000 state events through the real SSE stream.  (The mocked 10,000-host
// step above is kept for what this one cannot produce: per-host output,
// folded into groups, and mixed final states.)
await step('a real 10,000-host job (imported hosts, IDC without a worker): queued, then unreachable live through the event stream', async () => {
  // BOUND: submit to all 10,000 shown unreachable.  The design target is the
  // pending timeout plus a few seconds (the sweep runs every second, the
  // stream reads 100 events a query); today the master's store queries for a
  // new 10,000-host job can take 10-20 s more (plans from statistics taken
  // before the job existed: om-master logs "the master did not run for N
  // ms"), so the bound only catches a hang; the times are printed.
  const N = 10000, IDC = 'nowhere', PEND_S = PENDING_S, BOUND = 45000;
  let text = '# browser test: hosts of an IDC without a worker\n[far]\n';
  for (let i = 1; i <= N; i++) text += `far-${i} ansible_host=192.0.2.${1 + (i % 254)}\n`;
  let t = Date.now();
  const imp = await apiCall(page, 'POST', '/hosts/import', {text, default_idc: IDC});
  check(imp.status === 200 && imp.body && imp.body.count === N, `POST /hosts/import (${text.length} bytes): ${imp.status} ${JSON.stringify(imp.body)}`);
  const importMs = Date.now() - t;

  await page.click('nav a[data-page="/run"]');
  await page.waitForSelector('#run-form', {timeout: WAIT});
  t = Date.now();
  await page.fill('#run-selector', `idc:${IDC}`);
  await page.waitForSelector(`#run-count[data-count="${N}"]`, {timeout: WAIT});
  const countMs = Date.now() - t;
  await page.selectOption('#run-module', 'shell');
  await page.waitForSelector('#param-cmd', {timeout: WAIT});
  await page.fill('#param-cmd', 'true');
  // In the page: what the real event stream delivers (EventSource wrapped
  // before the job view opens one; the console is a single page, so this
  // stays), and the longest stall of a 50 ms timer (the main thread busy).
  await page.evaluate((n) => {
    const sse = window.__sse = {opened: 0, state: 0, unreachable: 0, counts: 0, done: 0, firstAt: 0, allAt: 0, reason: ''};
    const ES = window.__ES0 || (window.__ES0 = window.EventSource);
    window.EventSource = class extends ES {
      constructor(u, o) {
        super(u, o);
        sse.opened++;
        this.addEventListener('state', (e) => {
          sse.state++;
          let ev;
          try { ev = JSON.parse(e.data); } catch { return; }
          if (ev.state !== 'unreachable') return;
          if (++sse.unreachable === 1) { sse.firstAt = Date.now(); sse.reason = ev.reason || ''; }
          if (sse.unreachable === n) sse.allAt = Date.now();
        });
        this.addEventListener('counts', () => sse.counts++);
        this.addEventListener('done', () => sse.done++);
      }
    };
    window.__lag = 0;
    let last = performance.now();
    window.__lagTimer = setInterval(() => { const now = performance.now(); window.__lag = Math.max(window.__lag, now - last - 50); last = now; }, 50);
  }, N);

  const t0 = Date.now();
  await page.click('#run-submit');
  await page.waitForURL(/#\/jobs\/[0-9]+$/, {timeout: WAIT});
  const id = Number(/#\/jobs\/([0-9]+)$/.exec(page.url())[1]);
  await page.waitForSelector(`#job[data-total="${N}"]`, {timeout: WAIT});
  const shownMs = Date.now() - t0;
  // every host queued, waiting for a worker (the pending timeout has not run out)
  const c0 = await counts();
  const st0 = await page.$eval('#job', (e) => e.dataset.jobState);
  check(c0.queued === N && st0 === 'running', `job ${id} ${shownMs} ms after submit: ${st0}, counters ${JSON.stringify(c0)} (want queued ${N}; ` +
    `the page must open within the pending timeout, ${PEND_S} s)`);
  t = Date.now();
  await page.locator('#host-grid').click({position: {x: 4, y: 4}}); // the first cell: far-1
  await page.waitForFunction(() => /pending: no live worker in IDC 'nowhere'/.test(document.getElementById('host-head')?.textContent || ''), null, {timeout: 2000})
    .catch(async () => { throw new Error(`a queued host's reason not shown within 2 s: '${await page.$eval('#host-head', (e) => e.textContent)}'`); });
  const clickQueuedMs = Date.now() - t;
  check(await page.$eval('#host-name', (e) => e.textContent) === 'far-1', 'the first cell is not far-1');

  // all 10,000 turn unreachable, live
  await page.waitForSelector(`#counters .count[data-state="unreachable"][data-count="${N}"]`, {timeout: BOUND})
    .catch(async () => { throw new Error(`job ${id}: not all ${N} hosts unreachable ${BOUND} ms after submit: counters ${JSON.stringify(await counts())}, stream ${JSON.stringify(await page.evaluate(() => window.__sse))}`); });
  const allMs = Date.now() - t0;
  await page.waitForSelector('#job[data-job-state="done"]', {timeout: WAIT});
  const sse = await page.evaluate(() => window.__sse);
  check(sse.opened === 1 && sse.unreachable === N, `the event stream delivered ${sse.unreachable} of ${N} unreachable states (${JSON.stringify(sse)})`);
  check(sse.reason === `no live worker in IDC 'nowhere' for ${PEND_S} s`, `the state event's reason is '${sse.reason}'`);
  check(sse.allAt > 0 && sse.allAt <= t0 + allMs, 'the counters reached 10,000 before the stream delivered them');
  const c1 = await counts();
  const other = Object.entries(c1).filter(([s, n]) => s !== 'unreachable' && n > 0);
  check(other.length === 0, `hosts not unreachable: ${JSON.stringify(other)}`);
  // the page answers: another host's reason, from a click on the grid (cell 20 of row 30; 9 px a cell at 10,000 hosts)
  t = Date.now();
  await page.locator('#host-grid').click({position: {x: 9 * 20 + 4, y: 9 * 30 + 4}});
  await page.waitForFunction((why) => (document.getElementById('host-name')?.textContent || 'far-1') !== 'far-1' &&
    (document.getElementById('host-head')?.textContent || '').includes(why), `no live worker in IDC 'nowhere' for ${PEND_S} s`, {timeout: 2000})
    .catch(async () => { throw new Error(`an unreachable host's reason not shown within 2 s: '${await page.$eval('#host-head', (e) => e.textContent)}'`); });
  const clickMs = Date.now() - t;
  const picked = await page.$eval('#host-name', (e) => e.textContent);
  check(/^far-[0-9]+$/.test(picked) && await page.$eval('#host-output', (e) => e.dataset.state) === 'unreachable', `picked '${picked}'`);
  // no output anywhere: one folded group of all hosts; the DOM stays small
  await page.waitForSelector(`#groups .group[data-hosts="${N}"]`, {timeout: WAIT});
  const nodes = await page.evaluate(() => document.getElementsByTagName('*').length);
  const lag = Math.round(await page.evaluate(() => { clearInterval(window.__lagTimer); window.EventSource = window.__ES0; return window.__lag; }));
  console.log(`# real 10,000 hosts: import ${importMs} ms; run-form count ${countMs} ms; job ${id} page with ${N} queued ${shownMs} ms after submit;` +
    ` queued host's reason ${clickQueuedMs} ms after a click; first unreachable event at ${sse.firstAt - t0} ms, all ${N} in the stream at ${sse.allAt - t0} ms,` +
    ` all shown at ${allMs} ms after submit (pending timeout ${PEND_S} s); unreachable host's reason ${clickMs} ms after a click;` +
    ` longest main-thread stall ${lag} ms; ${nodes} DOM elements; ${sse.counts} counts events`);
  check(nodes < 3000, `${nodes} DOM elements for a 10,000-host job`);
  check(allMs < BOUND, `${allMs} ms from submit to all ${N} hosts shown unreachable`);
  check(lag < 2000, `the page's main thread stalled ${lag} ms`);
});

const VIEWER = 'viewer1', VPASS1 = 'first-Viewer-pass-1', VPASS2 = 'second-Viewer-pass-2';
await step('users: create a viewer, change its password; a new token shows its secret once', async () => {
  await page.click('nav a[data-page="/users"]');
  await page.waitForSelector('#user-add-form', {timeout: WAIT});
  await page.fill('#user-add-name', VIEWER);
  await page.selectOption('#user-add-role', 'viewer');
  await page.fill('#user-add-password', VPASS1);
  await page.fill('#user-add-confirm', VPASS1);
  await page.fill('#user-add-idcs', 'bj');
  await page.click('#user-add-submit');
  await page.waitForSelector(`#users tr[data-user="${VIEWER}"]`, {timeout: WAIT});
  const row = await page.$eval(`#users tr[data-user="${VIEWER}"]`, (e) => e.textContent);
  check(row.includes('viewer') && row.includes('bj'), `the row says '${row}'`);
  await page.click(`#users tr[data-user="${VIEWER}"] button[data-action="password"]`);
  check(await page.$eval('#user-pw-name', (e) => e.value) === VIEWER, 'the password form is not on the viewer');
  await page.fill('#user-pw-password', VPASS2);
  await page.fill('#user-pw-confirm', VPASS2);
  await page.click('#user-pw-submit');
  await page.waitForFunction((u) => (document.getElementById('user-pw-ok')?.textContent || '').includes(u), VIEWER, {timeout: WAIT});
  await page.fill('#token-name', 'browser-test');
  await page.click('#token-submit');
  await page.waitForFunction(() => (document.getElementById('token-secret-value')?.textContent || '').length >= 16, null, {timeout: WAIT});
  const secret = await page.$eval('#token-secret-value', (e) => e.textContent);
  await page.click('nav a[data-page="/inventory"]');
  await page.click('nav a[data-page="/users"]');
  await page.waitForSelector('#tokens tr[data-token]', {timeout: WAIT});
  check(!(await page.evaluate((s) => document.body.textContent.includes(s), secret)), 'the token secret is shown again');
});

await step('the viewer logs in (another browser context): no Run, no Audit, no inventory changes; POST /api/v1/jobs is refused 403; disabled, its session ends', async () => {
  const ctx2 = await browser.newContext({viewport: {width: 1280, height: 900}});
  ctx2.setDefaultTimeout(WAIT);
  page2 = await ctx2.newPage();
  page2.on('pageerror', (e) => problems.push('viewer page error: ' + e.message));
  await page2.goto(URL + '/', {waitUntil: 'domcontentloaded', timeout: WAIT});
  await page2.waitForSelector('#login-form', {timeout: WAIT});
  await page2.fill('#login-user', VIEWER);
  await page2.fill('#login-password', VPASS1);
  await page2.click('#login-submit');
  await page2.waitForFunction(() => /Wrong/.test(document.getElementById('login-error')?.textContent || ''), null, {timeout: WAIT});
  await page2.fill('#login-password', VPASS2);
  await page2.click('#login-submit');
  await page2.waitForSelector(`#who[data-user="${VIEWER}"]`, {timeout: WAIT});
  const nav = await page2.$$eval('nav a[data-page]', (els) => els.map((e) => e.dataset.page));
  check(nav.includes('/inventory') && !nav.includes('/run') && !nav.includes('/audit'), `the viewer's pages: ${nav.join(' ')}`);
  await page2.click('nav a[data-page="/inventory"]');
  await page2.waitForSelector('#inv-hosts tr[data-host]', {timeout: WAIT});
  check(!(await page2.$('#inv-admin, #host-add-form, #host-import-form')), 'the viewer sees add/import controls');
  await page2.evaluate((j) => { location.hash = '#/jobs/' + j; }, job1);
  await page2.waitForSelector('#job', {timeout: WAIT});
  check(await page2.$eval('#job-rerun', (e) => e.classList.contains('hidden')), 'the viewer sees "re-run"');
  const r = await apiCall(page2, 'POST', '/jobs', {selector: 'all', module: 'shell', params: {cmd: 'id'}});
  check(r.status === 403, `POST /api/v1/jobs as a viewer: ${r.status} ${JSON.stringify(r.body)}`);
  const a = await apiCall(page2, 'GET', '/audit?limit=1');
  check(a.status === 403, `GET /api/v1/audit as a viewer: ${a.status}`);
  // the administrator disables the viewer: its session stops working; enabled again
  acceptDialog = true;
  await page.click(`#users tr[data-user="${VIEWER}"] button[data-action="disable"]`);
  await page.waitForSelector(`#users tr[data-user="${VIEWER}"] [data-state="disabled"]`, {timeout: WAIT});
  const st = await page2.evaluate(async () => (await fetch('/api/v1/me')).status);
  check(st === 401, `the disabled viewer's session: GET /me ${st}`);
  await page.click(`#users tr[data-user="${VIEWER}"] button[data-action="enable"]`);
  await page.waitForSelector(`#users tr[data-user="${VIEWER}"] [data-state="active"]`, {timeout: WAIT});
  await ctx2.close();
  page2 = null;
});

await step('the other pages render without errors', async () => {
  for (const [pg, sel] of [['/', '#dash-chart svg'], ['/inventory', '#inv-hosts tr[data-host]'], ['/workers', '#keys tr[data-key]'], ['/users', '#tokens tr[data-token]'], ['/audit', '#audit tbody tr[data-id]']]) {
    await page.click(`nav a[data-page="${pg}"]`);
    await page.waitForSelector(sel, {timeout: WAIT});
  }
  // the audit log: newest first (the user just enabled is at the top), older pages
  const ids = await page.$$eval('#audit tbody tr[data-id]', (els) => els.map((e) => Number(e.dataset.id)));
  check(!(await page.$('#audit-asc')) && ids.every((v, i) => i === 0 || ids[i - 1] > v), `audit ids not newest first: ${ids.slice(0, 5).join(',')}…`);
  const top = await page.$eval('#audit tbody tr[data-id]', (e) => e.textContent);
  check(top.includes(VIEWER), `the newest audit row is '${top}'`);
  await page.evaluate((b) => { location.hash = '#/audit?before=' + b; }, ids[0]);
  await page.waitForSelector(`#audit tbody tr[data-id="${ids[1]}"]`, {timeout: WAIT});
  check(!(await page.$(`#audit tbody tr[data-id="${ids[0]}"]`)), 'before=ID lists ID itself');
  check(problems.length === 0, `browser reported: ${problems.join(' | ')}`);
});

await step('log out: the login form is back and the API answers 401 to the old session', async () => {
  const cookies = await page.context().cookies();
  const old = cookies.find((c) => c.name === 'om_session');
  check(old && old.httpOnly && old.sameSite === 'Strict', `session cookie ${JSON.stringify(old)}`);
  await page.click('#logout');
  await page.waitForSelector('#login-form', {timeout: WAIT});
  const st = await page.evaluate(async () => (await fetch('/api/v1/me')).status);
  check(st === 401, `GET /api/v1/me after logout: ${st}`);
  const r = await fetch(URL + '/api/v1/me', {headers: {Cookie: `om_session=${old.value}`}, signal: AbortSignal.timeout(WAIT)});
  check(r.status === 401, `the old session cookie still works: ${r.status}`);
});

clearTimeout(guard);
await browser.close();
console.log('# browser tests passed');
