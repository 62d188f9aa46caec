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
const ART = process.env.OM_ARTIFACTS || '.';
const EXE = process.env.OM_CHROMIUM || '/usr/bin/chromium';
const WAIT = 30000; // any one wait
const TOTAL = 240000; // the whole run

if (!URL || !PASSWORD || !NHOSTS) {
  console.log('not ok - setup # OM_URL, OM_PASSWORD_FILE and OM_HOSTS are needed');
  process.exit(2);
}

let browser, page, stepName = 'launch';
const problems = []; // console errors, page errors, dialogs
let dialogs = 0;

async function shot(name) {
  if (!page) return;
  try {
    mkdirSync(ART, {recursive: true});
    const f = join(ART, `browser-failure-${name.replace(/[^A-Za-z0-9_-]+/g, '_').slice(0, 60)}.png`);
    await page.screenshot({path: f, fullPage: true, timeout: 10000});
    console.log(`# screenshot: ${f}`);
  } catch (e) {
    console.log(`# screenshot failed: ${e.message}`);
  }
}

async function fail(name, err) {
  console.log(`not ok - ${name}`);
  for (const l of String(err && err.stack || err).replace(/\x1b\[[0-9;]*m/g, "").split('\n').slice(0, 8)) console.log(`#   ${l}`);
  for (const p of problems.slice(-10)) console.log(`#   browser: ${p}`);
  if (page) console.log(`#   at ${page.url()}`);
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

// Runs a job from the Run form; returns its id.
async function runFromForm(cmd) {
  await page.click('nav a[data-page="/run"]');
  await page.waitForSelector('#run-form', {timeout: WAIT});
  await page.fill('#run-selector', SELECTOR);
  await page.waitForSelector(`#run-count[data-count="${NHOSTS}"]`, {timeout: WAIT});
  await page.selectOption('#run-module', 'shell');
  await page.waitForSelector('#param-cmd', {timeout: WAIT});
  await page.fill('#param-cmd', cmd);
  await page.click('#run-submit');
  await page.waitForURL(/#\/jobs\/[0-9]+$/, {timeout: WAIT});
  await page.waitForSelector('#job', {timeout: WAIT});
  return Number(/#\/jobs\/([0-9]+)$/.exec(page.url())[1]);
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
  page.on('dialog', (d) => { dialogs++; problems.push(`dialog ${d.type()}: ${d.message()}`); d.dismiss().catch(() => {}); });
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
  job1 = await runFromForm('hostname');
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

await step('a 10,000-host job (API answered by the test): the grid keeps up', async () => {
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

await step('history lists both jobs and offers a re-run', async () => {
  await page.click('nav a[data-page="/history"]');
  await page.waitForSelector(`#hist-table tr[data-job="${job1}"]`, {timeout: WAIT});
  await page.click(`#hist-table tr[data-job="${job1}"] a.btn`);
  await page.waitForSelector(`#run-count[data-count="${NHOSTS}"]`, {timeout: WAIT});
  const cmd = await page.$eval('#param-cmd', (e) => e.value);
  check(cmd === 'hostname', `the re-run form has cmd '${cmd}'`);
});

await step('the other pages render without errors', async () => {
  for (const [pg, sel] of [['/', '#dash-chart svg'], ['/inventory', '#inv-hosts tr[data-host]'], ['/workers', '#keys tr[data-key]'], ['/users', '#tokens tr[data-token]'], ['/audit', '#audit tbody tr']]) {
    await page.click(`nav a[data-page="${pg}"]`);
    await page.waitForSelector(sel, {timeout: WAIT});
  }
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
