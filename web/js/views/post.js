// @ts-check
/**
 * @file One post in its thread: its ancestors (oldest first), the post with its like button and
 * counters, who liked it, a reply box, and its replies (oldest first, page by page).
 */
import { ApiError } from '../api.js';
import { h, notice, randomId, replace } from '../dom.js';
import { postCard } from './feed.js';

/** @typedef {import('../app.js').Ctx} Ctx */
/** @typedef {import('../types.js').ThreadItem} ThreadItem */

/**
 * @param {Ctx} ctx @param {ThreadItem} item
 * @returns {HTMLElement}
 */
function itemCard(ctx, item) {
  if ('deleted' in item) return h('article', { class: 'card post muted' }, 'This post was deleted.');
  if ('blocked' in item) return h('article', { class: 'card post muted' }, 'A post you cannot see (a block between you and its author).');
  return postCard(ctx, item);
}

/**
 * @param {Ctx} ctx @param {HTMLElement} main @param {string} id
 * @returns {() => void}
 */
export function render(ctx, main, id) {
  let alive = true;
  const ancestors = h('ol', { class: 'posts thread-up', 'aria-label': 'Earlier in the thread' });
  const focus = h('div', { id: 'thread-post' });
  const likers = h('p', { class: 'muted', id: 'likers' });
  const replies = h('ol', { class: 'posts replies', id: 'replies', 'aria-label': 'Replies' });
  const more = h('button', { type: 'button', class: 'ghost', hidden: true }, 'More replies');
  let key = randomId();
  const text = /** @type {HTMLTextAreaElement} */ (h('textarea', { id: 'reply-text', rows: 2, maxlength: 5000, required: true, placeholder: 'Write a reply' }));
  const reply = h(
    'form',
    {
      class: 'card compose',
      'aria-label': 'Reply',
      onsubmit: async (/** @type {SubmitEvent} */ ev) => {
        ev.preventDefault();
        if (!text.value.trim()) return;
        try {
          await ctx.api.createPost(text.value, [], key, id);
          key = randomId();
          text.value = '';
          notice('Replied.');
          load();
        } catch (e) {
          notice(e instanceof ApiError ? `Not sent: ${e.message}` : 'Not sent: the server cannot be reached.', 'error');
        }
      },
    },
    h('label', { for: 'reply-text', class: 'visually-hidden' }, 'Reply text'),
    text,
    h('div', { class: 'row' }, h('span', { class: 'grow' }), h('button', { type: 'submit', class: 'primary' }, 'Reply')),
  );
  main.append(h('h1', { class: 'visually-hidden' }, 'Post'), ancestors, focus, likers, reply, h('h2', {}, 'Replies'), replies, more);

  /** @type {string | null} */
  let cursor = null;
  async function load(next = false) {
    try {
      const t = await ctx.api.thread(id, next ? cursor : null);
      if (!alive) return;
      if (!next) {
        replace(ancestors, t.ancestors.map((a) => h('li', {}, itemCard(ctx, a))));
        replace(focus, itemCard(ctx, t.post));
        replace(replies);
        const liked = await ctx.api.likers(id).catch(() => null);
        replace(likers, liked && liked.items.length ? ['Liked by ', liked.items.map((u, i) => [i ? ', ' : '', ctx.users.link(u)])] : null);
      }
      for (const r of t.replies.items) replies.append(h('li', {}, postCard(ctx, r)));
      if (!replies.childElementCount) replies.append(h('li', { class: 'muted' }, 'No replies yet.'));
      cursor = t.replies.next_cursor ?? null;
      more.hidden = !cursor;
    } catch (e) {
      replace(main, h('h1', {}, 'Post not found'), h('p', {}, e instanceof ApiError && e.status === 404 ? 'This post does not exist, or was deleted.' : 'The server cannot be reached.'));
    }
  }
  more.addEventListener('click', () => load(true));
  load();
  return () => {
    alive = false;
  };
}
