// @ts-check
/**
 * @file The notifications screen (`#/notifications`): follows, friend requests and acceptances,
 * likes (several of one post folded into one entry: "A, B and 3 others liked your post"),
 * replies, mentions, reposts and quotes, newest first, with infinite scroll (`next_cursor`).
 * Each entry links to the profile or the post it is about, with the start of that post's text.
 *
 * Opening the screen marks every notification up to the newest shown read (`PUT
 * /v1/notifications/read`), which clears the navigation's badge. A live `notification` frame
 * reloads the first page (and marks it read) while the list is scrolled to its top; further down
 * a "new notifications" button does, so the list never moves under the reader.
 */
import { h, notice, replace, time } from '../dom.js';

/** @typedef {import('../app.js').Ctx} Ctx */
/** @typedef {import('../types.js').Notification} Notification */
/** @typedef {import('../types.js').Actor} Actor */

/** Post texts shown per screen (a bounded map: the oldest go first). */
const MAX_SNIPPETS = 200;
/** Characters of a post's text shown under an entry. */
const SNIPPET = 120;
/** Scrolled less than this (px), a new notification reloads the list in place. */
const NEAR_TOP = 200;

/** The mark shown beside each kind (decorative: the sentence says what happened). */
const ICONS = /** @type {Record<string, string>} */ ({
  follow: '+', friend_request: '★', friend_accept: '★', like: '♥', reply: '↩', mention: '@', repost: '⟳', quote: '❝',
});

/**
 * @param {Ctx} ctx @param {HTMLElement} main
 * @returns {() => void} cleanup
 */
export function render(ctx, main) {
  const list = h('ol', { class: 'notifications', id: 'notifications-list', 'aria-label': 'Notifications' });
  const fresh = h('button', { type: 'button', class: 'new-posts', hidden: true, id: 'new-notifications', onclick: () => reload(true) }, 'New notifications');
  const empty = h('p', { class: 'muted', hidden: true, id: 'notifications-empty' },
    'No notifications yet. When someone follows you, likes, replies to, reposts or quotes your posts, or mentions you, it shows up here.');
  const sentinel = h('div', { class: 'sentinel', 'aria-hidden': 'true' });
  const more = h('p', { class: 'muted center', hidden: true }, 'Loading…');
  main.append(h('h1', {}, 'Notifications'), fresh, list, empty, more, sentinel);

  /** @type {string | null} */
  let cursor = null;
  let done = false;
  let loading = false;
  let alive = true;
  /** Whether a reload is wanted once the one under way ends. */
  let again = false;
  /** The newest notification shown (marked read once the page is visible). */
  let newest = '';
  /** Whether marking read waits for the page to be visible. */
  let pendingRead = false;
  /** @type {Map<string, Promise<string | null>>} */
  const snippets = new Map();

  /** @param {boolean} first */
  async function load(first) {
    if (loading) {
      if (first) again = true;
      return;
    }
    if (done && !first) return;
    loading = true;
    more.hidden = first;
    try {
      const page = await ctx.api.notifications(first ? null : cursor);
      if (!alive) return;
      if (first) {
        list.replaceChildren();
        newest = page.items[0]?.id || '';
      }
      for (const n of page.items) list.append(h('li', {}, entry(n, snippet)));
      cursor = page.next_cursor ?? null;
      done = !cursor;
      empty.hidden = list.childElementCount > 0;
      if (first) {
        fresh.hidden = true;
        markRead(page.items[0]?.read === false);
      }
    } catch (e) {
      notice(e instanceof Error ? `Notifications: ${e.message}` : 'The notifications could not be loaded.', 'error');
    } finally {
      loading = false;
      more.hidden = true;
      if (again && alive) {
        again = false;
        load(true);
      } else if (alive && !done) {
        // A page shorter than the screen leaves the sentinel in view, which the observer does
        // not report again: observing it anew does.
        io.unobserve(sentinel);
        io.observe(sentinel);
      }
    }
  }

  /** @param {boolean} [top] scroll to the top too */
  function reload(top = false) {
    done = false;
    if (top) window.scrollTo({ top: 0 });
    return load(true);
  }

  /**
   * Marks what is shown read, when the page is in front of the reader (otherwise when it comes
   * back), and has the badge counted again.
   * @param {boolean} unread
   */
  async function markRead(unread) {
    if (!unread || !newest) return;
    if (document.visibilityState !== 'visible') {
      pendingRead = true;
      return;
    }
    pendingRead = false;
    try {
      await ctx.api.markNotificationsRead(newest);
    } catch {
      // Marked on the next visit; the badge keeps its count meanwhile.
    }
    ctx.refreshNotifications(true);
  }
  const onVisible = () => {
    if (document.visibilityState === 'visible' && pendingRead) markRead(true);
  };
  document.addEventListener('visibilitychange', onVisible);

  /**
   * The text of a post, cut short, fetched once per screen.
   * @param {string} id @returns {Promise<string | null>}
   */
  function snippet(id) {
    let p = snippets.get(id);
    if (!p) {
      p = ctx.api.post(id).then((post) => (post.text.length > SNIPPET ? `${post.text.slice(0, SNIPPET)}…` : post.text), () => null);
      snippets.set(id, p);
      if (snippets.size > MAX_SNIPPETS) {
        const oldest = snippets.keys().next().value;
        if (oldest !== undefined) snippets.delete(oldest);
      }
    }
    return p;
  }

  // A notification while the screen is open: shown at once near the top, offered further down.
  const onLive = () => {
    if (window.scrollY < NEAR_TOP) reload();
    else fresh.hidden = false;
  };
  ctx.chat.addEventListener('notification', onLive);
  // Frames missed while the connection was down: read the list again.
  const onConnected = () => reload();
  ctx.chat.addEventListener('connected', onConnected);

  const io = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && !done) load(false);
  });
  // Observed once the first page is in (see load's finally).

  load(true);
  return () => {
    alive = false;
    io.disconnect();
    ctx.chat.removeEventListener('notification', onLive);
    ctx.chat.removeEventListener('connected', onConnected);
    document.removeEventListener('visibilitychange', onVisible);
  };
}

/**
 * "A", "A and B", "A, B and C", "A, B and 3 others": the first two actors by name (each a link
 * to their profile), the rest counted.
 * @param {Actor[]} actors @param {number} count
 * @returns {Array<string | HTMLElement>}
 */
export function actorNames(actors, count) {
  /** @param {Actor} a */
  const link = (a) => h('a', { href: `#/u/${encodeURIComponent(a.handle)}`, class: 'actor' }, a.display_name || `@${a.handle}`);
  const total = Math.max(count, actors.length);
  if (actors.length === 0) return [total === 1 ? 'Someone' : `${total} people`];
  if (total === 1) return [link(actors[0])];
  if (total === 2 && actors.length >= 2) return [link(actors[0]), ' and ', link(actors[1])];
  if (total === 3 && actors.length >= 3) return [link(actors[0]), ', ', link(actors[1]), ' and ', link(actors[2])];
  const shown = actors.slice(0, 2);
  const others = total - shown.length;
  const names = shown.flatMap((a, i) => (i ? [', ', link(a)] : [link(a)]));
  return [...names, ` and ${others} other${others === 1 ? '' : 's'}`];
}

/**
 * What happened, as a sentence after the actors' names, and where it links.
 * @param {Notification} n
 * @returns {{verb: string, link: string | null, linkText: string, post: string | null}}
 */
function describe(n) {
  const post = n.post ?? null;
  const subject = n.subject ?? null;
  switch (n.type) {
    case 'follow':
      return { verb: ' followed you', link: null, linkText: '', post: null };
    case 'friend_request':
      return { verb: ' sent you a friend request', link: '#/people', linkText: 'Answer it', post: null };
    case 'friend_accept':
      return { verb: ' accepted your friend request', link: null, linkText: '', post: null };
    case 'like':
      return { verb: ' liked your post', link: post && `#/p/${post}`, linkText: 'Open the post', post };
    case 'repost':
      return { verb: ' reposted your post', link: post && `#/p/${post}`, linkText: 'Open the post', post };
    case 'reply':
      return { verb: ' replied to your post', link: `#/p/${subject || post}`, linkText: 'Open the reply', post: subject || post };
    case 'quote':
      return { verb: ' quoted your post', link: `#/p/${subject || post}`, linkText: 'Open the quote', post: subject || post };
    case 'mention':
      return { verb: ' mentioned you', link: subject && `#/p/${subject}`, linkText: 'Open the post', post: subject };
    default:
      return { verb: ` (${n.type})`, link: null, linkText: '', post: null };
  }
}

/**
 * One entry of the list.
 * @param {Notification} n @param {(id: string) => Promise<string | null>} snippet
 * @returns {HTMLElement}
 */
export function entry(n, snippet) {
  const d = describe(n);
  const quoted = h('p', { class: 'snippet muted' });
  if (d.post) {
    snippet(d.post).then((text) => {
      if (text) replace(quoted, `“${text}”`);
    });
  }
  return h(
    'article',
    { class: `card notification${n.read ? '' : ' unread'}`, 'data-id': n.id, 'data-type': n.type },
    h('span', { class: 'note-icon', 'aria-hidden': 'true', 'data-type': n.type }, ICONS[n.type] || '•'),
    h(
      'div',
      { class: 'note-body' },
      h('p', { class: 'note-text' }, n.read ? null : h('span', { class: 'visually-hidden' }, 'New: '),
        actorNames(n.actors, n.actors_count), d.verb, '.'),
      d.post ? quoted : null,
      h('p', { class: 'note-meta' }, time(n.created_at),
        d.link ? [h('span', { class: 'dot' }, ' · '), h('a', { href: d.link }, d.linkText)] : null),
    ),
  );
}
