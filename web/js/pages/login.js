import {h, setText} from '../dom.js';
import {post} from '../api.js';

export function renderLogin(main, {message, onLoggedIn}) {
  const err = h('p', {class: 'form-error', role: 'alert', id: 'login-error'});
  const user = h('input', {id: 'login-user', name: 'user', autocomplete: 'username', required: true, maxlength: 64, autofocus: true});
  const pass = h('input', {id: 'login-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, maxlength: 1024});
  const btn = h('button', {type: 'submit', class: 'btn primary', id: 'login-submit'}, 'Log in');
  const form = h('form', {class: 'login card', id: 'login-form', novalidate: true},
    h('h1', null, 'omserver console'),
    message ? h('p', {class: 'muted', id: 'login-message'}, message) : null,
    h('label', null, 'User', user),
    h('label', null, 'Password', pass),
    btn, err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    setText(err, '');
    if (!user.value || !pass.value) { setText(err, 'Enter a user name and a password.'); return; }
    btn.disabled = true;
    try {
      const me = await post('/login', {user: user.value, password: pass.value}, {noAuthEvent: true});
      pass.value = '';
      onLoggedIn(me);
    } catch (e) {
      pass.value = '';
      if (e.status === 429) setText(err, `Too many attempts: wait ${e.retryAfter || 'a while'} s and try again.`);
      else if (e.status === 401) setText(err, 'Wrong user name or password.');
      else setText(err, e.message);
    } finally {
      btn.disabled = false;
    }
  });
  main.append(form);
  user.focus();
}
