// Users (administrators: create, change a password, disable / enable) and
// API tokens (one's own; all for an administrator): create a token (its
// secret is shown once), revoke.  Anyone may change their own password.
import {h, append, clear, setText, fmtTime, table} from '../dom.js';
import {get, post} from '../api.js';
import {errorBox} from '../app.js';
import {splitList, clearErrors, showFieldError} from '../forms.js';

const ROLES = ['viewer', 'operator', 'admin'];

export async function render(root, ctx) {
  const admin = ctx.can('admin');
  const uEl = h('div', {class: 'table-wrap', id: 'users'});
  const tEl = h('div', {class: 'table-wrap', id: 'tokens'});
  const secretEl = h('div', {id: 'token-secret'});
  const name = h('input', {id: 'token-name', placeholder: 'ci-deploy', maxlength: 64, required: true});
  const ttl = h('select', {id: 'token-ttl'}, [['86400', '1 day'], ['604800', '7 days'], ['2592000', '30 days'], ['7776000', '90 days']].map(([v, t]) => h('option', {value: v}, t)));
  ttl.value = '2592000';
  const scopes = ['read', 'run', 'admin'].filter((s) => ctx.can(s)).map((s) => h('input', {type: 'checkbox', value: s, checked: s === 'read', dataset: {scope: s}}));
  const err = h('p', {class: 'form-error', id: 'token-error'});
  const form = h('form', {class: 'row', id: 'token-form'},
    h('label', null, 'Name', name), h('label', null, 'Valid for', ttl),
    h('div', {class: 'row'}, scopes.map((c) => h('label', {class: 'inline'}, c, c.value))),
    h('button', {type: 'submit', class: 'btn primary', id: 'token-submit'}, 'Create token'), err);
  const pw = passwordForm();
  root.append(h('h1', null, 'Users & tokens'),
    h('section', {class: 'card'}, h('h2', null, 'Users'), uEl),
    admin ? h('div', {class: 'cols'}, createForm(), pw.card) : pw.card,
    h('section', {class: 'card'}, h('h2', null, 'API tokens'), form, secretEl, tEl));

  // --- create a user (POST /users)
  function createForm() {
    const f = {
      name: h('input', {id: 'user-add-name', maxlength: 64, autocomplete: 'off', spellcheck: 'false'}),
      role: h('select', {id: 'user-add-role'}, ROLES.map((r) => h('option', {value: r}, r))),
      password: h('input', {id: 'user-add-password', type: 'password', autocomplete: 'new-password', maxlength: 1024}),
      confirm: h('input', {id: 'user-add-confirm', type: 'password', autocomplete: 'new-password', maxlength: 1024}),
      idcs: h('input', {id: 'user-add-idcs', class: 'mono', placeholder: 'all', autocomplete: 'off', spellcheck: 'false'}),
      groups: h('input', {id: 'user-add-groups', class: 'mono', placeholder: 'all', autocomplete: 'off', spellcheck: 'false'}),
      modules: h('input', {id: 'user-add-modules', class: 'mono', placeholder: 'all', autocomplete: 'off', spellcheck: 'false'}),
    };
    const fld = (k, title, help) => h('label', null, title, f[k], help ? h('span', {class: 'field-help'}, help) : null, h('span', {class: 'field-error', dataset: {field: k}}));
    const msg = h('p', {class: 'form-error', id: 'user-add-error', role: 'alert'});
    const ok = h('p', {class: 'form-ok', id: 'user-add-ok', role: 'status'});
    const btn = h('button', {type: 'submit', class: 'btn primary', id: 'user-add-submit'}, 'Create user');
    const uform = h('form', {id: 'user-add-form', novalidate: true},
      h('div', {class: 'form-grid'}, fld('name', 'Name *'), fld('role', 'Role'), fld('password', 'Password *'), fld('confirm', 'Password again *')),
      h('p', {class: 'small muted'}, 'Scopes (comma-separated; empty: all): an operator sees and runs only these.'),
      h('div', {class: 'form-grid'}, fld('idcs', 'IDCs'), fld('groups', 'Groups'), fld('modules', 'Modules')),
      h('div', {class: 'row'}, btn, msg, ok));
    uform.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(uform, msg);
      setText(ok, '');
      const body = {name: f.name.value.trim(), role: f.role.value, password: f.password.value};
      if (!body.name) { showFieldError(uform, {field: 'name', message: 'name is required'}, msg); return; }
      if (!body.password) { showFieldError(uform, {field: 'password', message: 'password is required'}, msg); return; }
      if (body.password !== f.confirm.value) { showFieldError(uform, {field: 'confirm', message: 'the two passwords differ'}, msg); return; }
      for (const k of ['idcs', 'groups', 'modules']) {
        const l = splitList(f[k].value);
        if (l.length) body[k] = l;
      }
      btn.disabled = true;
      try {
        await post('/users', body);
        setText(ok, `User ${body.name} (${body.role}) created.`);
        for (const k of Object.keys(f)) if (k !== 'role') f[k].value = '';
        users();
      } catch (e) {
        showFieldError(uform, e, msg);
      } finally {
        f.password.value = f.confirm.value = '';
        btn.disabled = false;
      }
    });
    return h('section', {class: 'card', id: 'user-add-card'}, h('h2', null, 'Create a user'), uform);
  }

  // --- change a password (POST /users/{name}/password)
  function passwordForm() {
    const who = admin ? h('select', {id: 'user-pw-name'}, h('option', {value: ctx.me.user}, ctx.me.user))
      : h('input', {id: 'user-pw-name', value: ctx.me.user, readonly: true});
    const p1 = h('input', {id: 'user-pw-password', type: 'password', autocomplete: 'new-password', maxlength: 1024});
    const p2 = h('input', {id: 'user-pw-confirm', type: 'password', autocomplete: 'new-password', maxlength: 1024});
    const msg = h('p', {class: 'form-error', id: 'user-pw-error', role: 'alert'});
    const ok = h('p', {class: 'form-ok', id: 'user-pw-ok', role: 'status'});
    const btn = h('button', {type: 'submit', class: 'btn primary', id: 'user-pw-submit'}, 'Change password');
    const pform = h('form', {id: 'user-pw-form', novalidate: true},
      h('div', {class: 'form-grid'},
        h('label', null, 'User', who),
        h('label', null, 'New password', p1, h('span', {class: 'field-error', dataset: {field: 'password'}})),
        h('label', null, 'Again', p2, h('span', {class: 'field-error', dataset: {field: 'confirm'}}))),
      h('div', {class: 'row'}, btn, msg, ok));
    pform.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      clearErrors(pform, msg);
      setText(ok, '');
      const user = who.value;
      if (!p1.value) { showFieldError(pform, {field: 'password', message: 'enter the new password'}, msg); return; }
      if (p1.value !== p2.value) { showFieldError(pform, {field: 'confirm', message: 'the two passwords differ'}, msg); return; }
      btn.disabled = true;
      try {
        await post(`/users/${encodeURIComponent(user)}/password`, {password: p1.value});
        setText(ok, `Password of ${user} changed.`);
      } catch (e) {
        showFieldError(pform, e, msg);
      } finally {
        p1.value = p2.value = '';
        btn.disabled = false;
      }
    });
    const card = h('section', {class: 'card', id: 'user-pw-card'}, h('h2', null, admin ? 'Change a password' : 'Change my password'), pform);
    return {card, who, focus: (u) => { who.value = u; p1.focus(); card.scrollIntoView({block: 'nearest'}); }, setUsers: (names) => {
      if (!admin) return;
      const cur = who.value;
      append(clear(who), names.map((n) => h('option', {value: n}, n)));
      who.value = names.includes(cur) ? cur : ctx.me.user;
    }};
  }

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
    const box = h('div', {class: 'secret-box', id: 'token-secret-value'});
    box.textContent = r.secret || '';
    const hide = h('button', {type: 'button', class: 'btn small'}, 'I have copied it: hide');
    hide.addEventListener('click', () => clear(secretEl));
    clear(secretEl).append(h('div', {class: 'notice'}, `Token ${r.id} created. Copy its secret now: it is not shown again and is stored only as a hash.`, box, hide));
  }

  async function users() {
    if (!admin) { clear(uEl).append(h('div', {class: 'notice'}, 'The user list is for administrators.')); return; }
    try {
      const us = (await get('/users')).users || [];
      const list = (v) => (Array.isArray(v) ? v.join(', ') : v || '');
      pw.setUsers(us.map((u) => u.name));
      clear(uEl).append(table([
        {title: 'User', get: (u) => h('strong', null, u.name)},
        {title: 'Role', get: (u) => u.role},
        {title: 'State', get: (u) => h('span', {class: u.state === 'disabled' ? 'state st-failed' : null, dataset: {state: u.state || ''}}, u.state)},
        {title: 'IDCs', get: (u) => list(u.idcs) || h('span', {class: 'muted'}, 'all')},
        {title: 'Groups', get: (u) => list(u.groups) || h('span', {class: 'muted'}, 'all')},
        {title: 'Modules', get: (u) => list(u.modules) || h('span', {class: 'muted'}, 'all')},
        {title: 'Created', get: (u) => h('span', {class: 'small nowrap'}, fmtTime(u.created))},
        {title: '', get: (u) => userActions(u)},
      ], us, {empty: 'No user.', rowAttrs: (u) => ({dataset: {user: u.name}})}));
    } catch (e) {
      if (e.status !== 401) clear(uEl).append(errorBox(e));
    }
  }

  function userActions(u) {
    const pwb = h('button', {type: 'button', class: 'btn small', dataset: {action: 'password'}, onclick: () => pw.focus(u.name)}, 'Password…');
    const cell = h('div', {class: 'row nowrap'}, pwb);
    if (u.name === ctx.me.user) return cell; // not oneself
    const disabled = u.state === 'disabled';
    const b = h('button', {type: 'button', class: ['btn', 'small', disabled ? null : 'danger'], dataset: {action: disabled ? 'enable' : 'disable'}}, disabled ? 'Enable' : 'Disable');
    b.addEventListener('click', async () => {
      if (!disabled && !confirm(`Disable user ${u.name}? Their sessions and tokens stop working until enabled again.`)) return;
      b.disabled = true;
      try {
        await post(`/users/${encodeURIComponent(u.name)}/${disabled ? 'enable' : 'disable'}`, {});
      } catch (e) {
        ctx.banner(`${disabled ? 'Enable' : 'Disable'} failed: ` + (e.missing ? `not available yet (the server has no ${e.path})` : e.message));
      }
      users();
    });
    cell.append(b);
    return cell;
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
