// The console: login, navigation, hash routing (#/path?query) to pages.
// Each page module exports render(main, ctx) and may return a cleanup
// function (closing event streams, stopping timers) run when the page goes.
import {h, clear, setText, parseHash} from './dom.js';
import {get, post, setCsrf, onUnauthorized} from './api.js';
import {renderLogin} from './pages/login.js';

const PAGES = [
  {path: '/', title: 'Dashboard', mod: './pages/dashboard.js'},
  {path: '/inventory', title: 'Inventory', mod: './pages/inventory.js'},
  {path: '/run', title: 'Run a job', mod: './pages/run.js', role: 'run'},
  {path: '/history', title: 'History', mod: './pages/history.js'},
  {path: '/workers', title: 'Workers & keys', mod: './pages/workers.js'},
  {path: '/users', title: 'Users & tokens', mod: './pages/users.js'},
  {path: '/audit', title: 'Audit log', mod: './pages/audit.js', role: 'admin'},
];
const JOB_PAGE = {path: '/jobs/', title: 'Job', mod: './pages/job.js'};
const HOST_PAGE = {path: '/hosts/', title: 'Host', mod: './pages/host.js'};

const main = document.getElementById('main');
const ctx = {me: null, navigate: (hash) => { location.hash = hash; }};
let cleanup = null;
let seq = 0;

export function banner(text, kind = 'error') {
  const b = document.getElementById('banner');
  if (!text) { b.classList.add('hidden'); return; }
  b.className = 'banner ' + kind;
  setText(b, text);
}
ctx.banner = banner;

function can(scope) {
  return ctx.me && Array.isArray(ctx.me.scopes) && ctx.me.scopes.includes(scope);
}
ctx.can = can;

function buildNav(active) {
  const nav = clear(document.getElementById('nav'));
  for (const p of PAGES) {
    if (p.role && !can(p.role)) continue;
    const on = p.path === active;
    nav.append(h('a', {href: '#' + p.path, class: on ? 'active' : null, 'aria-current': on ? 'page' : null, dataset: {page: p.path}}, p.title));
  }
}

function stopPage() {
  if (cleanup) {
    try { cleanup(); } catch (e) { console.error(e); }
    cleanup = null;
  }
}

async function route() {
  const my = ++seq;
  stopPage();
  banner(null);
  if (!ctx.me) return;
  const {path, query} = parseHash(location.hash);
  let page = PAGES.find((p) => p.path === path);
  let params = {};
  if (!page && path.startsWith('/jobs/')) {
    page = JOB_PAGE;
    params.id = path.slice(6);
  } else if (!page && path.startsWith('/hosts/') && path.length > 7) {
    page = HOST_PAGE;
    try { params.name = decodeURIComponent(path.slice(7)); } catch { params.name = path.slice(7); }
  }
  buildNav(page === JOB_PAGE ? '/history' : page === HOST_PAGE ? '/inventory' : page && page.path);
  clear(main);
  if (!page) {
    main.append(h('section', {class: 'card'}, h('h1', null, 'Not found'), h('p', null, 'No page here. ', h('a', {href: '#/'}, 'Back to the dashboard'))));
    return;
  }
  document.title = page.title + ' · omserver';
  const holder = h('div', {class: 'page', dataset: {page: page.path}});
  main.append(holder);
  try {
    const mod = await import(page.mod);
    if (my !== seq) return;
    const c = await mod.render(holder, {...ctx, query, params});
    if (my !== seq) { if (typeof c === 'function') c(); return; }
    cleanup = typeof c === 'function' ? c : null;
  } catch (e) {
    if (my !== seq) return;
    console.error(e);
    holder.append(errorBox(e));
  }
}

export function errorBox(e) {
  if (e && e.status === 403) return h('div', {class: 'notice'}, 'Your role does not allow this: ', e.message);
  if (e && e.missing) return h('div', {class: 'notice unavailable'}, 'Not available yet: the server does not offer this (', e.path || '', ').');
  return h('div', {class: 'notice error'}, 'Error: ', (e && e.message) || String(e));
}

function showLogin(message) {
  stopPage();
  ctx.me = null;
  setCsrf(null);
  document.getElementById('top').classList.add('hidden');
  banner(null);
  clear(main);
  renderLogin(main, {
    message,
    onLoggedIn: (me) => { start(me); },
  });
}

function start(me) {
  ctx.me = me;
  setCsrf(me.csrf_token);
  const top = document.getElementById('top');
  top.classList.remove('hidden');
  setText(document.getElementById('who'), `${me.user} (${me.role})`);
  document.getElementById('who').dataset.user = me.user;
  route();
}

async function logout() {
  try {
    await post('/logout', {}, {noAuthEvent: true});
  } catch (e) {
    if (e.status !== 401) { banner('Logout failed: ' + e.message); return; }
  }
  showLogin('You are logged out.');
  history.replaceState(null, '', '#/');
}

onUnauthorized(() => {
  if (ctx.me) showLogin('Your session has ended: log in again.');
});

document.getElementById('logout').addEventListener('click', logout);
window.addEventListener('hashchange', route);

(async function boot() {
  try {
    const me = await get('/me', {noAuthEvent: true});
    if (me.auth && me.auth !== 'session') throw new Error('not a session');
    start(me);
  } catch (e) {
    showLogin(e.status === 401 || e.message === 'not a session' ? null : 'The server answered: ' + e.message);
  }
})();
