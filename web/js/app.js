// @ts-check
/**
 * @file The web client's entry: the session, the page's frame (header, navigation, connection
 * status) and a hash router (`#/feed`, `#/chat/<id>`, `#/notifications`, `#/u/<handle>`,
 * `#/people`, `#/me`), with two unread badges in the navigation: chat messages and
 * notifications (the latter `GET /v1/notifications`'s `unread_count` at sign-in, after each
 * reconnection and when the window gets focus back, plus one for each live `notification` frame
 * between).
 * Every screen is a module of `views/` with a `render(ctx, main, ...args)` function; the one
 * shown is told to clean up (`dispose`) when another replaces it. `#/p/<id>` is a post in its
 * thread.
 */
import { Api } from './api.js';
import { ChatClient } from './chat.js';
import { h, notice, replace } from './dom.js';
import { Media } from './media.js';
import { Users } from './users.js';
import * as auth from './views/auth.js';
import * as chatView from './views/chat.js';
import * as feed from './views/feed.js';
import * as notifications from './views/notifications.js';
import * as people from './views/people.js';
import * as postView from './views/post.js';
import * as profile from './views/profile.js';

/** @typedef {import('./types.js').User} User */

/**
 * What every screen can reach.
 * @typedef {object} Ctx
 * @property {Api} api
 * @property {Users} users
 * @property {Media} media
 * @property {ChatClient} chat
 * @property {User} me
 * @property {() => void} logout
 * @property {(n: number) => void} setUnread
 * @property {(now?: boolean) => void} refreshNotifications  counts the unread notifications again
 */

const SESSION_KEY = 'starling.session';

const api = new Api();
const users = new Users(api);
const media = new Media(api);
/** @type {Ctx | null} */
let ctx = null;
/** @type {(() => void) | null} */
let dispose = null;

const root = /** @type {HTMLElement} */ (document.getElementById('app'));

/** @returns {{token: string, user_id: string} | null} */
function savedSession() {
  try {
    return JSON.parse(localStorage.getItem(SESSION_KEY) || 'null');
  } catch {
    return null;
  }
}

/** @param {{token: string, user_id: string}} s */
async function signedIn(s) {
  localStorage.setItem(SESSION_KEY, JSON.stringify(s));
  api.token = s.token;
  let me;
  try {
    me = await api.me();
  } catch {
    signedOut();
    return;
  }
  users.put(me);
  const chat = new ChatClient(() => api.token, me.id);
  ctx = { api, users, media, chat, me, logout, setUnread, refreshNotifications };
  chat.addEventListener('status', () => showStatus(chat.status));
  chat.addEventListener('unauthorized', () => signedOut());
  chat.start();
  frame(ctx);
  // Setting the hash routes (hashchange); otherwise route the current one.
  if (!location.hash.startsWith('#/') || location.hash === '#/') location.hash = '#/feed';
  else route();
  refreshUnread();
  refreshNotifications(true);
}

function signedOut() {
  ctx?.chat.stop();
  window.removeEventListener('focus', onFocus);
  ctx = null;
  api.token = null;
  media.clear();
  localStorage.removeItem(SESSION_KEY);
  dispose?.();
  dispose = null;
  replace(root, auth.render(api, signedIn));
}

async function logout() {
  try {
    await api.logout();
  } catch {
    // The session may be gone already; the client forgets it either way.
  }
  signedOut();
}

/** @param {Ctx} c */
function frame(c) {
  const nav = (/** @type {string} */ href, /** @type {string} */ label, /** @type {HTMLElement | null} */ extra = null) =>
    h('a', { href, class: 'nav-link', 'data-nav': href }, h('span', {}, label), extra);
  const badge = h('span', { class: 'badge', id: 'unread-badge', hidden: true });
  // The notifications' count is read out politely when it changes (the region stays in the page,
  // empty at zero, so screen readers hear each change).
  const notes = h('span', { id: 'notifications-badge', 'aria-live': 'polite', 'aria-atomic': 'true' });
  replace(
    root,
    h('a', {
      class: 'skip', href: '#main', onclick: (/** @type {Event} */ ev) => {
        ev.preventDefault();
        document.getElementById('main')?.focus();
      },
    }, 'Skip to content'),
    h(
      'header',
      { class: 'top' },
      h('a', { class: 'brand', href: '#/feed' }, h('img', { src: '/web/icon.svg', alt: '', width: 28, height: 28 }), 'Starling'),
      h('span', { class: 'status', id: 'conn-status', role: 'status', 'data-status': c.chat.status }, statusText(c.chat.status)),
      h('button', { class: 'ghost', type: 'button', onclick: () => c.logout() }, 'Log out'),
    ),
    h(
      'nav',
      { class: 'tabs', 'aria-label': 'Main' },
      nav('#/feed', 'Feed'),
      nav('#/chat', 'Chat', badge),
      h('a', { href: '#/notifications', class: 'nav-link nav-notifications', 'data-nav': '#/notifications' },
        h('span', { class: 'nav-icon', 'aria-hidden': 'true' }), h('span', { class: 'nav-text' }, 'Notifications'), notes),
      nav('#/people', 'People'),
      nav('#/me', 'Profile'),
    ),
    h('main', { id: 'main', tabindex: '-1' }),
  );
  c.chat.addEventListener('message', () => refreshUnread());
  c.chat.addEventListener('read', () => refreshUnread());
  c.chat.addEventListener('notification', (ev) => {
    if (/** @type {CustomEvent} */ (ev).detail?.read === false) countNotification();
  });
  // Frames are not replayed after a reconnection, and another tab may have marked them read.
  c.chat.addEventListener('connected', () => refreshNotifications(true));
  window.addEventListener('focus', onFocus);
}

const onFocus = () => refreshNotifications();

/** @param {string} s */
function statusText(s) {
  return s === 'online' ? 'Online' : s === 'offline' ? 'Offline — messages will be sent when you are back' : 'Reconnecting…';
}

/** @param {string} s */
function showStatus(s) {
  const el = document.getElementById('conn-status');
  if (!el) return;
  el.textContent = statusText(s);
  el.dataset.status = s;
}

/** @param {number} n */
function setUnread(n) {
  const b = document.getElementById('unread-badge');
  if (!b) return;
  b.replaceChildren(String(n), h('span', { class: 'visually-hidden' }, ' unread'));
  b.hidden = n === 0;
}

let unreadTimer = 0;
function refreshUnread() {
  clearTimeout(unreadTimer);
  unreadTimer = setTimeout(async () => {
    if (!ctx) return;
    try {
      const list = await ctx.api.conversations();
      setUnread(list.items.reduce((n, c) => n + (c.unread_count || 0), 0));
    } catch {
      // Shown again on the next event.
    }
  }, 300);
}

/** @param {number} n */
function setNotificationsUnread(n) {
  const b = document.getElementById('notifications-badge');
  if (!b) return;
  if (n === 0) b.replaceChildren();
  else b.replaceChildren(h('span', { class: 'badge' }, String(n), h('span', { class: 'visually-hidden' }, ' unread')));
  b.dataset.count = String(n);
}

/** One more unread notification (a live frame): counted here, with no request. */
function countNotification() {
  // A count asked for before this frame arrived may not include it: its answer is dropped.
  notesAsked++;
  const b = document.getElementById('notifications-badge');
  setNotificationsUnread(Number(b?.dataset.count || 0) + 1);
}

let notesTimer = 0;
/** The latest count asked for: an older answer arriving late is not shown. */
let notesAsked = 0;
/** @param {boolean} [now] at once, rather than once a burst of frames is over */
function refreshNotifications(now = false) {
  clearTimeout(notesTimer);
  notesTimer = setTimeout(async () => {
    if (!ctx) return;
    const asked = ++notesAsked;
    try {
      const page = await ctx.api.notifications(null, 1);
      if (asked === notesAsked) setNotificationsUnread(page.unread_count);
    } catch {
      // Counted again on the next frame or reconnection.
    }
  }, now ? 0 : 300);
}

function route() {
  if (!ctx) return;
  const main = /** @type {HTMLElement} */ (document.getElementById('main'));
  const [, page = 'feed', arg] = location.hash.split('/').map(decodeURIComponent);
  for (const a of document.querySelectorAll('[data-nav]')) {
    const on = a.getAttribute('data-nav') === `#/${page === 'u' ? 'people' : page === 'p' ? 'feed' : page}`;
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  dispose?.();
  dispose = null;
  main.replaceChildren();
  switch (page) {
    case 'chat':
      dispose = chatView.render(ctx, main, arg);
      break;
    case 'people':
      dispose = people.render(ctx, main);
      break;
    case 'u':
      dispose = profile.render(ctx, main, arg);
      break;
    case 'p':
      dispose = postView.render(ctx, main, arg);
      break;
    case 'notifications':
      dispose = notifications.render(ctx, main);
      break;
    case 'me':
      dispose = profile.render(ctx, main, ctx.me.handle);
      break;
    default:
      dispose = feed.render(ctx, main);
  }
}

window.addEventListener('hashchange', route);
api.onUnauthorized = () => {
  if (ctx) {
    notice('Your session ended: please log in again.', 'error');
    signedOut();
  }
};

const saved = savedSession();
if (saved) signedIn(saved);
else signedOut();
