// @ts-check
/**
 * @file A user's page: avatar, name, handle, region, bio, counts, their posts; follow /
 * unfollow, friend request, block / unblock and "message" for others; editing one's own display
 * name, bio and avatar (an image uploaded with `POST /v1/media`, then named in the profile).
 */
import { ApiError } from '../api.js';
import { h, notice, replace } from '../dom.js';
import { postCard } from './feed.js';

/** @typedef {import('../app.js').Ctx} Ctx */
/** @typedef {import('../types.js').User} User */

/**
 * Whether `me` follows `id` (pages through the caller's following list, at most 1 000).
 * @param {Ctx} ctx @param {string} id
 */
async function follows(ctx, id) {
  /** @type {string | null} */
  let cursor = null;
  for (let i = 0; i < 10; i++) {
    const page = await ctx.api.relations(ctx.me.id, 'following', cursor);
    if (page.items.some((u) => u.id === id)) return true;
    cursor = page.next_cursor ?? null;
    if (!cursor) return false;
  }
  return false;
}

/**
 * @param {Ctx} ctx @param {HTMLElement} main @param {string} handle
 * @returns {() => void}
 */
export function render(ctx, main, handle) {
  let alive = true;
  main.append(h('p', { class: 'muted' }, 'Loading…'));
  (async () => {
    /** @type {User} */
    let u;
    try {
      u = await ctx.api.byHandle(handle);
    } catch (e) {
      replace(main, h('h1', {}, 'No such user'), h('p', {}, e instanceof ApiError && e.status === 404 ? `Nobody is called @${handle}.` : 'The server cannot be reached.'));
      return;
    }
    if (!alive) return;
    const own = u.id === ctx.me.id;
    const actions = h('div', { class: 'row wrap', role: 'group', 'aria-label': 'Actions' });
    const card = h(
      'section',
      { class: 'card profile', 'aria-labelledby': 'profile-name' },
      u.avatar
        ? ctx.media.image(u.avatar, `Avatar of @${u.handle}`)
        : h('div', { class: 'avatar', 'aria-hidden': 'true' }, (u.display_name || u.handle).slice(0, 1).toUpperCase()),
      h('div', { class: 'grow' },
        h('h1', { id: 'profile-name' }, u.display_name || u.handle),
        h('p', { class: 'handle' }, `@${u.handle}`, u.region ? h('span', { class: 'muted' }, ` · region ${u.region}`) : null),
        u.bio ? h('p', { class: 'bio', id: 'profile-bio' }, u.bio) : null,
        h('p', { class: 'counts' }, h('strong', { id: 'followers-count' }, String(u.followers_count ?? 0)), ' followers · ', h('strong', {}, String(u.following_count ?? 0)), ' following'),
        actions),
    );
    const posts = h('ol', { class: 'posts', 'aria-label': `Posts by @${u.handle}` });
    replace(main, card, own ? editForm(ctx, u) : null, h('h2', {}, 'Posts'), posts);
    if (own) {
      actions.append(h('span', { class: 'muted' }, 'This is you.'));
    } else {
      await otherActions(ctx, u, actions);
    }
    try {
      const page = await ctx.api.userPosts(u.id);
      for (const p of page.items) posts.append(h('li', {}, postCard(ctx, p)));
      if (!page.items.length) posts.append(h('li', { class: 'muted' }, 'No posts yet.'));
    } catch (e) {
      posts.append(h('li', { class: 'muted' }, e instanceof Error ? e.message : 'Posts could not be loaded.'));
    }
  })();
  return () => {
    alive = false;
  };
}

/**
 * @param {Ctx} ctx @param {User} u @param {HTMLElement} actions
 */
async function otherActions(ctx, u, actions) {
  let following = await follows(ctx, u.id).catch(() => false);
  let blocked = false;
  const follow = h('button', { type: 'button', class: 'primary', id: 'follow-button' });
  const label = () => {
    follow.textContent = following ? 'Unfollow' : 'Follow';
    follow.setAttribute('aria-pressed', String(following));
  };
  label();
  follow.addEventListener('click', async () => {
    try {
      await (following ? ctx.api.unfollow(u.id) : ctx.api.follow(u.id));
      following = !following;
      label();
      const count = document.getElementById('followers-count');
      if (count) count.textContent = String(Math.max(0, Number(count.textContent) + (following ? 1 : -1)));
      notice(following ? `Following @${u.handle}.` : `Unfollowed @${u.handle}.`);
    } catch (e) {
      notice(e instanceof ApiError && e.status === 403 ? 'You cannot follow this user.' : String(e instanceof Error ? e.message : e), 'error');
    }
  });
  const friend = h('button', {
    type: 'button', class: 'ghost', onclick: async () => {
      try {
        await ctx.api.friendRequest(u.id);
        notice(`Friend request sent to @${u.handle}.`);
      } catch (e) {
        notice(e instanceof Error ? e.message : 'failed', 'error');
      }
    },
  }, 'Add friend');
  const message = h('button', {
    type: 'button', class: 'ghost', onclick: async () => {
      try {
        const c = await ctx.api.createConversation([u.id]);
        location.hash = `#/chat/${c.id}`;
      } catch (e) {
        notice(e instanceof Error ? e.message : 'failed', 'error');
      }
    },
  }, 'Message');
  const block = h('button', { type: 'button', class: 'ghost danger' }, 'Block');
  block.addEventListener('click', async () => {
    if (!blocked && !confirm(`Block @${u.handle}? Follows between you are removed.`)) return;
    try {
      await (blocked ? ctx.api.unblock(u.id) : ctx.api.block(u.id));
      blocked = !blocked;
      if (blocked) following = false;
      label();
      block.textContent = blocked ? 'Unblock' : 'Block';
      notice(blocked ? `Blocked @${u.handle}.` : `Unblocked @${u.handle}.`);
    } catch (e) {
      notice(e instanceof Error ? e.message : 'failed', 'error');
    }
  });
  actions.append(follow, message, friend, block);
}

/** Reloads the own profile after a change. @param {Ctx} ctx @param {User} me */
function saved(ctx, me) {
  ctx.users.put(me);
  Object.assign(ctx.me, me);
  location.hash = '#/me';
  window.dispatchEvent(new HashChangeEvent('hashchange'));
}

/**
 * Editing one's own profile: display name, bio (up to 300 characters) and avatar (an image
 * uploaded when the form is saved; removed at once with its own button).
 * @param {Ctx} ctx @param {User} u
 */
function editForm(ctx, u) {
  const name = /** @type {HTMLInputElement} */ (h('input', { id: 'edit-name', value: u.display_name || '', maxlength: 64 }));
  const bio = /** @type {HTMLTextAreaElement} */ (h('textarea', { id: 'edit-bio', rows: 3, maxlength: 300, 'aria-describedby': 'edit-bio-count' }));
  bio.value = u.bio || '';
  const count = h('span', { id: 'edit-bio-count', class: 'muted' });
  const counted = () => (count.textContent = `${bio.value.length} / 300 characters`);
  counted();
  bio.addEventListener('input', counted);
  const file = /** @type {HTMLInputElement} */ (h('input', { id: 'edit-avatar', type: 'file', accept: 'image/png,image/jpeg,image/gif,image/webp' }));
  const preview = h('div', { class: 'preview' });
  file.addEventListener('change', () => {
    preview.replaceChildren();
    const f = file.files?.[0];
    if (f) preview.append(h('img', { src: URL.createObjectURL(f), alt: `New avatar ${f.name}` }));
  });
  const remove = u.avatar
    ? h('button', {
      type: 'button', class: 'ghost danger', onclick: async () => {
        try {
          const me = await ctx.api.updateMe({ avatar: null });
          notice('Avatar removed.');
          saved(ctx, me);
        } catch (e) {
          notice(e instanceof Error ? e.message : 'failed', 'error');
        }
      },
    }, 'Remove avatar')
    : null;
  const button = h('button', { type: 'submit', class: 'primary' }, 'Save');
  return h(
    'form',
    {
      class: 'card',
      'aria-label': 'Edit profile',
      onsubmit: async (/** @type {SubmitEvent} */ ev) => {
        ev.preventDefault();
        button.setAttribute('disabled', '');
        try {
          /** @type {import('../types.js').ProfilePatch} */
          const patch = { bio: bio.value };
          const display = name.value.trim();
          if (display) patch.display_name = display;
          const f = file.files?.[0];
          if (f) patch.avatar = (await ctx.api.upload(f)).id;
          const me = await ctx.api.updateMe(patch);
          notice('Profile saved.');
          saved(ctx, me);
        } catch (e) {
          notice(e instanceof ApiError ? `Not saved: ${e.message}` : 'Not saved: the server cannot be reached.', 'error');
        } finally {
          button.removeAttribute('disabled');
        }
      },
    },
    h('h2', {}, 'Edit profile'),
    h('div', { class: 'field' }, h('label', { for: 'edit-name' }, 'Display name'), name),
    h('div', { class: 'field' }, h('label', { for: 'edit-bio' }, 'Bio'), bio, count),
    h('div', { class: 'field' },
      h('label', { for: 'edit-avatar' }, 'Avatar image'),
      h('div', { class: 'avatar-edit' }, file, remove),
      preview),
    button,
  );
}
