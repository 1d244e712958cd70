// @ts-check
/** @file Finding a user by handle, one's friends and friend requests. */
import { ApiError } from '../api.js';
import { h, notice } from '../dom.js';

/** @typedef {import('../app.js').Ctx} Ctx */

/**
 * @param {Ctx} ctx @param {HTMLElement} main
 * @returns {() => void}
 */
export function render(ctx, main) {
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
  const requests = h('ul', { class: 'people', 'aria-label': 'Friend requests' });
  const requestsNote = h('p', { class: 'muted' });
  main.append(h('h1', {}, 'People'), find, h('section', { class: 'card' }, h('h2', {}, 'Friend requests'), requestsNote, requests), h('section', { class: 'card' }, h('h2', {}, 'Friends'), friends));

  (async () => {
    try {
      const page = await ctx.api.friends();
      for (const u of page.items) friends.append(h('li', {}, ctx.users.link(u)));
      if (!page.items.length) friends.append(h('li', { class: 'muted' }, 'No friends yet: send a request from someone’s profile.'));
    } catch (e) {
      friends.append(h('li', { class: 'muted' }, e instanceof Error ? e.message : 'failed'));
    }
    try {
      const incoming = await ctx.api.friendRequests('incoming');
      if (!incoming) {
        requestsNote.textContent = 'This server does not list friend requests yet.';
        return;
      }
      for (const r of incoming.items.filter((r) => r.state === 'pending')) {
        const li = h('li', {}, ctx.users.link(r.from), ' ');
        const accept = h('button', {
          type: 'button', class: 'primary', onclick: async () => {
            try {
              await ctx.api.acceptFriend(r.id);
              li.replaceChildren(ctx.users.link(r.from), ' — now friends');
            } catch (e) {
              notice(e instanceof Error ? e.message : 'failed', 'error');
            }
          },
        }, 'Accept');
        const decline = h('button', {
          type: 'button', class: 'ghost', onclick: async () => {
            try {
              await ctx.api.declineFriend(r.id);
              li.remove();
            } catch (e) {
              notice(e instanceof Error ? e.message : 'failed', 'error');
            }
          },
        }, 'Decline');
        li.append(accept, decline);
        requests.append(li);
      }
      if (!requests.childElementCount) requests.append(h('li', { class: 'muted' }, 'No pending requests.'));
    } catch (e) {
      requestsNote.textContent = e instanceof Error ? e.message : 'failed';
    }
  })();
  return () => {};
}
