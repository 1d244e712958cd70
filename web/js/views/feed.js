// @ts-check
/**
 * @file The home feed: compose a post (text and an image), the timeline with infinite scroll
 * (`next_cursor`), a "new posts" button when the first page has changed, and the server's 206
 * "still building" state said plainly. A post card (here, on profiles and in threads) says who
 * reposted it, shows the post it quotes, and has like, repost (and undo) and quote.
 */
import { ApiError } from '../api.js';
import { h, notice, randomId, time } from '../dom.js';

/** @typedef {import('../app.js').Ctx} Ctx */
/** @typedef {import('../types.js').Post} Post */

const POLL_MS = 15_000;

/**
 * @param {Ctx} ctx @param {HTMLElement} main
 * @returns {() => void} cleanup
 */
export function render(ctx, main) {
  const list = h('ol', { class: 'posts', 'aria-label': 'Home feed', id: 'feed-list' });
  const building = h('p', { class: 'banner', role: 'status', hidden: true, id: 'feed-building' },
    'Your timeline is still being built: showing what is ready. It fills in by itself.');
  const fresh = h('button', { type: 'button', class: 'new-posts', hidden: true, id: 'new-posts', onclick: () => reload() }, 'New posts');
  const empty = h('p', { class: 'muted', hidden: true }, 'Nothing here yet: follow people (People tab) and their posts show up here.');
  const sentinel = h('div', { class: 'sentinel', 'aria-hidden': 'true' });
  const more = h('p', { class: 'muted center', hidden: true }, 'Loading…');
  main.append(h('h1', { class: 'visually-hidden' }, 'Home'), compose(ctx, () => reload()), building, fresh, list, empty, more, sentinel);

  /** @type {string | null} */
  let cursor = null;
  let done = false;
  let loading = false;
  let topId = '';
  const shown = new Set();
  let alive = true;

  async function load(first = false) {
    if (loading || (done && !first)) return;
    loading = true;
    more.hidden = first;
    try {
      const page = await ctx.api.feed(first ? null : cursor);
      if (!alive) return;
      if (first) {
        list.replaceChildren();
        shown.clear();
        topId = page.items[0]?.id || '';
      }
      for (const p of page.items) {
        if (shown.has(p.id)) continue;
        shown.add(p.id);
        list.append(h('li', {}, postCard(ctx, p)));
      }
      cursor = page.next_cursor ?? null;
      done = !cursor;
      building.hidden = !page.partial;
      empty.hidden = list.childElementCount > 0;
      // A timeline being rebuilt fills in soon: read it again rather than show a hole.
      if (page.partial && first) setTimeout(() => alive && reload(), 2000);
    } catch (e) {
      notice(e instanceof Error ? e.message : 'The feed could not be loaded', 'error');
    } finally {
      loading = false;
      more.hidden = true;
      // The sentinel is observed anew once each page is in: one observed from the start reported
      // the empty list's sentinel in view after the first page had arrived, which loaded a second
      // page unasked; and a page shorter than the screen leaves it in view, which the observer
      // does not report again.
      if (alive && !done) {
        io.unobserve(sentinel);
        io.observe(sentinel);
      }
    }
  }

  function reload() {
    fresh.hidden = true;
    done = false;
    return load(true);
  }

  const io = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && !done) load();
  });

  // Newer posts than the top one shown? Asked every 15 s and when the window gets focus again.
  const check = async () => {
    try {
      const page = await ctx.api.feed(null, 5);
      const newer = page.items.findIndex((p) => p.id === topId);
      const count = newer < 0 ? page.items.length : newer;
      if (alive && count > 0 && page.items[0]?.id !== topId) {
        fresh.textContent = `${count}${newer < 0 ? '+' : ''} new post${count > 1 ? 's' : ''}`;
        fresh.hidden = false;
      }
    } catch {
      // The next poll tries again.
    }
  };
  const poll = setInterval(check, POLL_MS);
  window.addEventListener('focus', check);

  load(true);
  return () => {
    alive = false;
    io.disconnect();
    clearInterval(poll);
    window.removeEventListener('focus', check);
  };
}

/**
 * The compose box: text, an optional image (uploaded first), one Idempotency-Key per post so a
 * retried click never posts twice.
 * @param {Ctx} ctx @param {() => void} posted
 */
function compose(ctx, posted) {
  let key = randomId();
  const text = /** @type {HTMLTextAreaElement} */ (h('textarea', { id: 'compose-text', rows: 3, maxlength: 5000, required: true, placeholder: 'What is happening?' }));
  const file = /** @type {HTMLInputElement} */ (h('input', { id: 'compose-image', type: 'file', accept: 'image/png,image/jpeg,image/gif,image/webp', class: 'visually-hidden' }));
  const preview = h('div', { class: 'preview' });
  const button = h('button', { type: 'submit', class: 'primary', id: 'compose-submit' }, 'Post');
  file.addEventListener('change', () => {
    preview.replaceChildren();
    const f = file.files?.[0];
    if (f) {
      const url = URL.createObjectURL(f);
      preview.append(h('img', { src: url, alt: `Selected image ${f.name}` }), h('button', { type: 'button', class: 'ghost', onclick: () => { file.value = ''; preview.replaceChildren(); } }, 'Remove image'));
    }
  });
  return h(
    'form',
    {
      class: 'card compose',
      'aria-label': 'New post',
      onsubmit: async (/** @type {SubmitEvent} */ ev) => {
        ev.preventDefault();
        if (!text.value.trim()) return;
        button.setAttribute('disabled', '');
        try {
          const media = [];
          const f = file.files?.[0];
          if (f) media.push((await ctx.api.upload(f)).id);
          await ctx.api.createPost(text.value, media, key);
          key = randomId();
          text.value = '';
          file.value = '';
          preview.replaceChildren();
          notice('Posted.');
          posted();
        } catch (e) {
          notice(e instanceof ApiError ? `Not posted: ${e.message}` : 'Not posted: the server cannot be reached.', 'error');
        } finally {
          button.removeAttribute('disabled');
        }
      },
    },
    h('label', { for: 'compose-text', class: 'visually-hidden' }, 'Post text'),
    text,
    preview,
    h('div', { class: 'row' }, h('label', { for: 'compose-image', class: 'button ghost' }, 'Add image'), file, h('span', { class: 'grow' }), button),
  );
}

/**
 * A link to a user's profile from the summary a post carries.
 * @param {{handle: string, display_name: string}} a
 */
function actorLink(a) {
  return h('a', { href: `#/u/${encodeURIComponent(a.handle)}`, class: 'user-link' }, h('strong', {}, a.display_name || `@${a.handle}`));
}

/**
 * The post a post quotes, inside it; said so when it cannot be shown (deleted, or a block).
 * @param {Ctx} ctx @param {Post} p
 * @returns {HTMLElement | null}
 */
function quotedCard(ctx, p) {
  if (!p.quote_of) return null;
  const q = p.quoted;
  if (!q) return h('p', { class: 'quoted muted' }, 'The quoted post is not available.');
  return h(
    'blockquote',
    { class: 'quoted', 'data-quoted': q.id },
    h('p', { class: 'quoted-head' }, ctx.users.link(q.author), h('span', { class: 'dot' }, ' · '),
      h('a', { href: `#/p/${q.id}` }, time(q.created_at), h('span', { class: 'visually-hidden' }, ', open the quoted post'))),
    h('p', { class: 'text' }, q.text),
    q.media.map((id) => ctx.media.image(id, 'Image attached to the quoted post')),
  );
}

/**
 * One post: who reposted it (a feed's repost), author, time, text, images, the post it quotes,
 * and the interactions the server has: like, replies, repost (and undo), quote.
 * @param {Ctx} ctx @param {Post} p
 * @returns {HTMLElement}
 */
export function postCard(ctx, p) {
  const authorId = p.author;
  const images = p.media;
  const article = h(
    'article',
    { class: 'card post', 'data-post': p.id },
    p.reposted_by
      ? h('p', { class: 'reposted-by muted' }, h('span', { 'aria-hidden': 'true' }, '⟳ '), 'Reposted by ', actorLink(p.reposted_by))
      : null,
    h('header', {}, ctx.users.link(p.author), h('span', { class: 'dot' }, '·'),
      h('a', { href: `#/p/${p.id}`, class: 'post-link' }, time(p.created_at), h('span', { class: 'visually-hidden' }, ', open the post')),
      p.edited_at ? h('span', { class: 'muted' }, ' (edited)') : null),
    h('p', { class: 'text' }, p.text),
    images.map((id) => ctx.media.image(id, 'Image attached to the post')),
    quotedCard(ctx, p),
  );
  const actions = h('div', { class: 'actions' });
  if (p.counts && p.viewer) {
    const viewer = p.viewer;
    const counts = p.counts;
    const likeText = () => [`♥ ${counts.likes}`, h('span', { class: 'visually-hidden' }, counts.likes === 1 ? ' like' : ' likes')];
    const like = h('button', { type: 'button', class: 'ghost like', 'aria-pressed': String(viewer.liked) }, likeText());
    like.addEventListener('click', async () => {
      const on = !viewer.liked;
      try {
        await ctx.api.like(p.id, on);
        viewer.liked = on;
        counts.likes += on ? 1 : -1;
        like.replaceChildren(...likeText());
        like.setAttribute('aria-pressed', String(on));
      } catch (e) {
        notice(e instanceof Error ? e.message : 'failed', 'error');
      }
    });
    const repostText = () => [`⟳ ${counts.reposts}`, h('span', { class: 'visually-hidden' }, counts.reposts === 1 ? ' repost' : ' reposts')];
    const repost = h('button', { type: 'button', class: 'ghost repost', 'aria-pressed': String(viewer.reposted) }, repostText());
    repost.addEventListener('click', async () => {
      const on = !viewer.reposted;
      try {
        await ctx.api.repost(p.id, on);
        viewer.reposted = on;
        counts.reposts += on ? 1 : -1;
        repost.replaceChildren(...repostText());
        repost.setAttribute('aria-pressed', String(on));
        notice(on ? 'Reposted.' : 'Repost undone.');
      } catch (e) {
        notice(e instanceof Error ? e.message : 'failed', 'error');
      }
    });
    actions.append(like, h('a', { href: `#/p/${p.id}`, class: 'button ghost' }, `Replies ${counts.replies}`), repost, quoteButton(ctx, p, article));
  } else {
    actions.append(h('a', { href: `#/p/${p.id}`, class: 'button ghost' }, 'Like or reply'));
  }
  if (authorId === ctx.me.id) {
    actions.append(
      h('button', {
        type: 'button', class: 'ghost', onclick: async () => {
          if (!confirm('Delete this post?')) return;
          try {
            await ctx.api.deletePost(p.id);
            article.remove();
          } catch (e) {
            notice(e instanceof Error ? e.message : 'failed', 'error');
          }
        },
      }, 'Delete'),
    );
  }
  if (actions.childElementCount) article.append(actions);
  return article;
}

/**
 * "Quote": opens a form under the post for a post of one's own quoting it.
 * @param {Ctx} ctx @param {Post} p @param {HTMLElement} article
 * @returns {HTMLElement}
 */
function quoteButton(ctx, p, article) {
  const id = `quote-${p.id}`;
  let key = randomId();
  const button = h('button', { type: 'button', class: 'ghost', 'aria-expanded': 'false', 'aria-controls': id }, 'Quote');
  const text = /** @type {HTMLTextAreaElement} */ (h('textarea', { id: `${id}-text`, rows: 2, maxlength: 5000, required: true, placeholder: 'Add your words' }));
  const form = h(
    'form',
    {
      class: 'compose quote-form', id, hidden: true, 'aria-label': 'Quote the post',
      onsubmit: async (/** @type {SubmitEvent} */ ev) => {
        ev.preventDefault();
        if (!text.value.trim()) return;
        try {
          await ctx.api.createPost(text.value, [], key, undefined, p.id);
          key = randomId();
          text.value = '';
          toggle(false);
          notice('Quoted.');
        } catch (e) {
          notice(e instanceof ApiError ? `Not posted: ${e.message}` : 'Not posted: the server cannot be reached.', 'error');
        }
      },
    },
    h('label', { for: `${id}-text`, class: 'visually-hidden' }, 'Quote text'),
    text,
    h('div', { class: 'row' }, h('span', { class: 'grow' }), h('button', { type: 'submit', class: 'primary' }, 'Post quote')),
  );
  /** @param {boolean} open */
  const toggle = (open) => {
    form.hidden = !open;
    button.setAttribute('aria-expanded', String(open));
    if (open) text.focus();
    else button.focus();
  };
  button.addEventListener('click', () => {
    if (!form.isConnected) article.append(form);
    toggle(form.hidden);
  });
  return button;
}
