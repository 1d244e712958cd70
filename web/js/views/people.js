// @ts-check
/**
 * @file Finding a user by handle, one's friends, and pending friend requests: those received
 * (accept / decline) and those sent (cancel).
 */
import { ApiError } from '../api.js';
import { h, notice } from '../dom.js';

/** @typedef {import('../app.js').Ctx} Ctx */
/** @typedef {import('../types.js').FriendRequest} FriendRequest */
/** @typedef {import('../types.js').User} User */

/**
 * @param {Ctx} ctx @param {HTMLElement} main
 * @returns {() => void}
 */
export function render(ctx, main) {
  let alive = true;
  const input = /** @type {HTMLInputElement} */ (h('input', { id: 'find-handle', name: 'handle', placeholder: 'handle', autocapitalize: 'none', spellcheck: 'false', required: true }));
  const result = h('p', { role: 'status', class: 'muted' });
  const find = h(
    'form',
    {
      class: 'card row wrap',
      role: 'search',
      onsubmit: async (/** @type {SubmitEvent} */ ev) => {
        ev.preventDefault();
        const handle = input.value.trim().replace(/^@/, '');
        if (!handle) return;
        try {
          await ctx.api.byHandle(handle);
          location.hash = `#/u/${encodeURIComponent(handle)}`;
        } catch (e) {
          result.textContent = e instanceof ApiError && e.status === 404 ? `Nobody is called @${handle}.` : 'The server cannot be reached.';
        }
      },
    },
    h('label', { for: 'find-handle' }, 'Find a user by handle'),
    input,
    h('button', { type: 'submit', class: 'primary' }, 'Find'),
    result,
  );
  const friends = h('ul', { class: 'people', 'aria-label': 'Friends' });
  const incoming = h('ul', { class: 'people', 'aria-labelledby': 'requests-in' });
  const outgoing = h('ul', { class: 'people', 'aria-labelledby': 'requests-out' });
  main.append(
    h('h1', {}, 'People'),
    find,
    h('section', { class: 'card', 'aria-labelledby': 'requests-heading' },
      h('h2', { id: 'requests-heading' }, 'Friend requests'),
      h('h3', { id: 'requests-in', tabindex: '-1' }, 'Received'),
      incoming,
      h('h3', { id: 'requests-out', tabindex: '-1' }, 'Sent'),
      outgoing),
    h('section', { class: 'card' }, h('h2', {}, 'Friends'), friends),
  );

  /** @param {User} u */
  const addFriend = (u) => {
    friends.querySelector('li.muted')?.remove();
    friends.append(h('li', {}, ctx.users.link(u)));
  };

  /**
   * Takes an answered request off its list and moves the focus to the next one's first button
   * (or the list's heading), so a keyboard user stays in place.
   * @param {HTMLElement} li @param {HTMLElement} list @param {string} empty
   */
  const done = (li, list, empty) => {
    const next = /** @type {HTMLElement | null} */ (li.nextElementSibling || li.previousElementSibling);
    const focused = li.contains(document.activeElement) || document.activeElement === document.body;
    li.remove();
    if (!list.childElementCount) list.append(h('li', { class: 'muted' }, empty));
    const target = next?.querySelector('button') || document.getElementById(list.getAttribute('aria-labelledby') || '');
    if (focused) target?.focus();
  };

  /**
   * One request: the other user and the buttons for it.
   * @param {FriendRequest} r @param {'incoming' | 'outgoing'} direction
   */
  const item = async (r, direction) => {
    const otherId = direction === 'incoming' ? r.from : r.to;
    const other = await ctx.users.get(otherId);
    const who = other ? `@${other.handle}` : 'this user';
    const li = h('li', { dataset: { request: r.id } }, ctx.users.link(other || otherId));
    /**
     * @param {string} text @param {string} label @param {string} cls
     * @param {() => Promise<unknown>} call @param {() => void} then
     */
    const button = (text, label, cls, call, then) => {
      const b = /** @type {HTMLButtonElement} */ (h('button', { type: 'button', class: cls, 'aria-label': label }, text));
      b.addEventListener('click', async () => {
        for (const x of li.querySelectorAll('button')) /** @type {HTMLButtonElement} */ (x).disabled = true;
        try {
          await call();
          then();
        } catch (e) {
          for (const x of li.querySelectorAll('button')) /** @type {HTMLButtonElement} */ (x).disabled = false;
          notice(e instanceof ApiError && e.status === 404 ? 'That request is no longer pending.' : e instanceof Error ? e.message : 'failed', 'error');
        }
      });
      return b;
    };
    if (direction === 'incoming') {
      li.append(
        button('Accept', `Accept ${who}`, 'primary', () => ctx.api.acceptFriend(r.id), () => {
          if (other) addFriend(other);
          done(li, incoming, 'No requests waiting.');
          notice(`You and ${who} are now friends.`);
        }),
        button('Decline', `Decline ${who}`, 'ghost', () => ctx.api.declineFriend(r.id), () => {
          done(li, incoming, 'No requests waiting.');
          notice(`Declined ${who}’s request.`);
        }),
      );
    } else {
      li.append(
        h('span', { class: 'muted' }, 'waiting'),
        button('Cancel', `Cancel request to ${who}`, 'ghost', () => ctx.api.cancelFriend(r.id), () => {
          done(li, outgoing, 'No requests sent.');
          notice(`Request to ${who} cancelled.`);
        }),
      );
    }
    return li;
  };

  /**
   * Fills a list with the pending requests one way, a page at a time ("Show more").
   * @param {HTMLElement} list @param {'incoming' | 'outgoing'} direction @param {string} empty
   * @param {string | null} [cursor]
   */
  const load = async (list, direction, empty, cursor) => {
    try {
      const page = await ctx.api.friendRequests(direction, cursor);
      if (!alive) return;
      const items = await Promise.all(page.items.filter((r) => r.state === 'pending').map((r) => item(r, direction)));
      list.append(...items);
      if (page.next_cursor) {
        const more = h('li', {}, h('button', {
          type: 'button', class: 'link', onclick: () => {
            more.remove();
            load(list, direction, empty, page.next_cursor);
          },
        }, 'Show more'));
        list.append(more);
      }
      if (!list.childElementCount) list.append(h('li', { class: 'muted' }, empty));
    } catch (e) {
      list.append(h('li', { class: 'muted' }, e instanceof Error ? e.message : 'failed'));
    }
  };

  (async () => {
    try {
      const page = await ctx.api.friends();
      for (const u of page.items) friends.append(h('li', {}, ctx.users.link(u)));
      if (!page.items.length) friends.append(h('li', { class: 'muted' }, 'No friends yet: send a request from someone’s profile.'));
    } catch (e) {
      friends.append(h('li', { class: 'muted' }, e instanceof Error ? e.message : 'failed'));
    }
  })();
  load(incoming, 'incoming', 'No requests waiting.');
  load(outgoing, 'outgoing', 'No requests sent.');
  return () => {
    alive = false;
  };
}
