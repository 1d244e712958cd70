// @ts-check
/** @file Sign up and log in. */
import { ApiError } from '../api.js';
import { h } from '../dom.js';

/** @typedef {import('../api.js').Api} Api */

/**
 * @param {Api} api
 * @param {(s: {token: string, user_id: string}) => void} done  called with the new session
 * @returns {HTMLElement}
 */
export function render(api, done) {
  let mode = /** @type {'login' | 'signup'} */ ('login');
  const error = h('p', { class: 'error', role: 'alert', id: 'auth-error' });
  const handle = h('input', { id: 'auth-handle', name: 'handle', autocomplete: 'username', required: true, autocapitalize: 'none', spellcheck: 'false' });
  const password = h('input', { id: 'auth-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true, minlength: 8 });
  const name = h('input', { id: 'auth-name', name: 'display_name', autocomplete: 'name' });
  const nameRow = h('div', { class: 'field', hidden: true }, h('label', { for: 'auth-name' }, 'Display name (optional)'), name);
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Log in');
  const title = h('h1', { id: 'auth-title' }, 'Log in to Starling');
  const switcher = h('button', { type: 'button', class: 'link', onclick: () => setMode(mode === 'login' ? 'signup' : 'login') }, 'New here? Create an account');

  /** @param {'login' | 'signup'} m */
  function setMode(m) {
    mode = m;
    nameRow.hidden = m === 'login';
    title.textContent = m === 'login' ? 'Log in to Starling' : 'Create your account';
    submit.textContent = m === 'login' ? 'Log in' : 'Sign up';
    switcher.textContent = m === 'login' ? 'New here? Create an account' : 'Have an account? Log in';
    password.setAttribute('autocomplete', m === 'login' ? 'current-password' : 'new-password');
    error.textContent = '';
  }

  const form = h(
    'form',
    {
      class: 'card auth',
      'aria-labelledby': 'auth-title',
      onsubmit: async (/** @type {SubmitEvent} */ ev) => {
        ev.preventDefault();
        error.textContent = '';
        submit.setAttribute('disabled', '');
        const hv = /** @type {HTMLInputElement} */ (handle).value.trim();
        const pv = /** @type {HTMLInputElement} */ (password).value;
        try {
          if (mode === 'signup') {
            const u = await api.signUp(hv, pv, /** @type {HTMLInputElement} */ (name).value.trim());
            done({ token: u.token, user_id: u.id });
          } else {
            done(await api.login(hv, pv));
          }
        } catch (e) {
          error.textContent = e instanceof ApiError ? e.message : 'The server cannot be reached.';
        } finally {
          submit.removeAttribute('disabled');
        }
      },
    },
    title,
    h('p', { class: 'muted' }, 'A small social network with a live messenger, running on your own Starling node.'),
    h('div', { class: 'field' }, h('label', { for: 'auth-handle' }, 'Handle'), handle),
    h('div', { class: 'field' }, h('label', { for: 'auth-password' }, 'Password'), password),
    nameRow,
    error,
    submit,
    switcher,
  );
  return h('main', { class: 'auth-page', id: 'main' }, h('div', { class: 'brand big' }, h('img', { src: '/web/icon.svg', alt: '', width: 40, height: 40 }), 'Starling'), form);
}
