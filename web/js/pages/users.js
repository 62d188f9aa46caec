// Users (administrators) and API tokens (one's own; all for an
// administrator): create a token (its secret is shown once), revoke.
import {h, clear, setText, fmtTime, table} from '../dom.js';
import {get, post} from '../api.js';
import {errorBox} from '../app.js';

export async function render(root, ctx) {
  const uEl = h('div', {class: 'table-wrap', id: 'users'});
  const tEl = h('div', {class: 'table-wrap', id: 'tokens'});
  const secretEl = h('div', {id: 'token-secret'});
  const name = h('input', {id: 'token-name', placeholder: 'ci-deploy', maxlength: 64, required: true});
  const ttl = h('select', {id: 'token-ttl'}, [['86400', '1 day'], ['604800', '7 days'], ['2592000', '30 days'], ['7776000', '90 days']].map(([v, t]) => h('option', {value: v}, t)));
  ttl.value = '2592000';
  const scopes = ['read', 'run', 'admin'].filter((s) => ctx.can(s)).map((s) => h('input', {type: 'checkbox', value: s, checked: s === 'read', dataset: {scope: s}}));
  const err = h('p', {class: 'form-error'});
  const form = h('form', {class: 'row', id: 'token-form'},
    h('label', null, 'Name', name), h('label', null, 'Valid for', ttl),
    h('div', {class: 'row'}, scopes.map((c) => h('label', {class: 'inline'}, c, c.value))),
    h('button', {type: 'submit', class: 'btn primary'}, 'Create token'), err);
  root.append(h('h1', null, 'Users & tokens'),
    h('section', {class: 'card'}, h('h2', null, 'Users'), uEl,
      h('p', {class: 'small muted'}, 'Adding users and changing roles: omctl users add / set (not available in the console yet).')),
    h('section', {class: 'card'}, h('h2', null, 'API tokens'), form, secretEl, tEl));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    setText(err, '');
    const sc = scopes.filter((c) => c.checked).map((c) => c.value);
    if (!name.value.trim()) { setText(err, 'Give the token a name.'); return; }
    if (!sc.length) { setText(err, 'Choose at least one scope.'); return; }
    try {
      const r = await post('/tokens', {name: name.value.trim(), scopes: sc, ttl_s: Number(ttl.value)});
      name.value = '';
      showSecret(r);
      tokens();
    } catch (e2) {
      setText(err, (e2.field ? e2.field + ': ' : '') + e2.message);
    }
  });

  function showSecret(r) {
    const box = h('div', {class: 'secret-box'});
    box.textContent = r.secret || '';
    const hide = h('button', {type: 'button', class: 'btn small'}, 'I have copied it: hide');
    hide.addEventListener('click', () => clear(secretEl));
    clear(secretEl).append(h('div', {class: 'notice'}, `Token ${r.id} created. Copy its secret now: it is not shown again and is stored only as a hash.`, box, hide));
  }

  async function users() {
    if (!ctx.can('admin')) { clear(uEl).append(h('div', {class: 'notice'}, 'The user list is for administrators.')); return; }
    try {
      const us = (await get('/users')).users || [];
      const list = (v) => (Array.isArray(v) ? v.join(', ') : v || '');
      clear(uEl).append(table([
        {title: 'User', get: (u) => h('strong', null, u.name)},
        {title: 'Role', get: (u) => u.role},
        {title: 'State', get: (u) => u.state},
        {title: 'IDCs', get: (u) => list(u.idcs) || h('span', {class: 'muted'}, 'all')},
        {title: 'Groups', get: (u) => list(u.groups) || h('span', {class: 'muted'}, 'all')},
        {title: 'Modules', get: (u) => list(u.modules) || h('span', {class: 'muted'}, 'all')},
        {title: 'Created', get: (u) => h('span', {class: 'small nowrap'}, fmtTime(u.created))},
      ], us, {empty: 'No user.', rowAttrs: (u) => ({dataset: {user: u.name}})}));
    } catch (e) {
      if (e.status !== 401) clear(uEl).append(errorBox(e));
    }
  }

  async function tokens() {
    try {
      const ts = (await get('/tokens')).tokens || [];
      clear(tEl).append(table([
        {title: 'ID', get: (t) => String(t.id)},
        {title: 'User', get: (t) => t.user || ''},
        {title: 'Name', get: (t) => h('strong', null, t.name || '')},
        {title: 'Scopes', get: (t) => Array.isArray(t.scopes) ? t.scopes.join(',') : (t.scopes || '')},
        {title: 'Created', get: (t) => h('span', {class: 'small nowrap'}, fmtTime(t.created))},
        {title: 'Expires', get: (t) => h('span', {class: 'small nowrap'}, fmtTime(t.expires))},
        {title: 'Last used', get: (t) => h('span', {class: 'small nowrap'}, fmtTime(t.last_used))},
        {title: 'State', get: (t) => t.revoked ? h('span', {class: 'muted'}, 'revoked ' + fmtTime(t.revoked)) : (t.expires && Date.parse(t.expires) < Date.now() ? 'expired' : 'active')},
        {title: '', get: (t) => t.revoked ? '' : revokeBtn(t)},
      ], ts, {empty: 'No token.', rowAttrs: (t) => ({dataset: {token: String(t.id)}})}));
    } catch (e) {
      if (e.status !== 401) clear(tEl).append(errorBox(e));
    }
  }

  function revokeBtn(t) {
    const b = h('button', {type: 'button', class: 'btn small danger'}, 'Revoke');
    b.addEventListener('click', async () => {
      if (!confirm(`Revoke token ${t.id} '${t.name}' of ${t.user}? Clients using it are refused from now on.`)) return;
      b.disabled = true;
      try {
        await post(`/tokens/${encodeURIComponent(t.id)}/revoke`, {});
      } catch (e) {
        ctx.banner('Revoke failed: ' + e.message);
      }
      tokens();
    });
    return b;
  }

  await Promise.all([users(), tokens()]);
  return () => clear(secretEl);
}
