// @ts-check
/**
 * @file Users by id, fetched once and kept (a bounded map: the oldest entries go first), so a
 * feed or a conversation of many items asks for each author once.
 */
import { h } from './dom.js';

/** @typedef {import('./types.js').User} User */
/** @typedef {import('./api.js').Api} Api */

const MAX = 500;

export class Users {
  /** @param {Api} api */
  constructor(api) {
    this.api = api;
    /** @type {Map<string, Promise<User | null>>} */
    this.cache = new Map();
  }

  /** @param {string} id @returns {Promise<User | null>} */
  get(id) {
    let p = this.cache.get(id);
    if (!p) {
      p = this.api.user(id).catch(() => null);
      this.cache.set(id, p);
      if (this.cache.size > MAX) {
        const oldest = this.cache.keys().next().value;
        if (oldest !== undefined) this.cache.delete(oldest);
      }
    }
    return p;
  }

  /** @param {User} u */
  put(u) {
    this.cache.set(u.id, Promise.resolve(u));
  }

  /** Forgets a user (after they changed, e.g. their own profile). @param {string} id */
  forget(id) {
    this.cache.delete(id);
  }

  /**
   * A link to a user's profile, filled in when the user is known.
   * @param {string | User} who  an id or a user
   * @returns {HTMLElement}
   */
  link(who) {
    const a = h('a', { class: 'user-link', href: '#/' }, '…');
    /** @param {User | null} u */
    const fill = (u) => {
      if (!u) {
        a.textContent = 'unknown user';
        return;
      }
      a.setAttribute('href', `#/u/${encodeURIComponent(u.handle)}`);
      a.replaceChildren(h('strong', {}, u.display_name || u.handle), ' ', h('span', { class: 'handle' }, `@${u.handle}`));
    };
    if (typeof who === 'string') this.get(who).then(fill);
    else fill(who);
    return a;
  }

  /**
   * A user's name as text, once known.
   * @param {string} id
   * @returns {HTMLElement}
   */
  name(id) {
    const s = h('span', {}, '…');
    this.get(id).then((u) => (s.textContent = u ? u.display_name || `@${u.handle}` : 'unknown user'));
    return s;
  }
}
