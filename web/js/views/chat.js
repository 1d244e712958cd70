// @ts-check
/**
 * @file Chat: the conversation list by activity with unread counts, starting a 1:1 or a group,
 * and a conversation: live messages, optimistic sends, typing, read markers, members of a group.
 * Messages come from the {@link import('../chat.js').ChatClient}, which resumes exactly after a
 * dropped connection.
 */
import { ApiError } from '../api.js';
import { h, notice, replace, time } from '../dom.js';

/** @typedef {import('../app.js').Ctx} Ctx */
/** @typedef {import('../types.js').Conversation} Conversation */
/** @typedef {import('../types.js').Message} Message */

const TYPING_SHOWN_MS = 4_000;

/**
 * @param {Ctx} ctx @param {HTMLElement} main @param {string | undefined} convId
 * @returns {() => void}
 */
export function render(ctx, main, convId) {
  const list = h('ul', { class: 'convs', id: 'conv-list', 'aria-label': 'Conversations' });
  const aside = h('section', { class: 'card conv-pane', 'aria-label': 'Conversations' }, h('h1', {}, 'Chat'), newChat(ctx), list);
  const pane = h('section', { class: 'card thread', 'aria-label': 'Conversation' });
  main.append(h('div', { class: convId ? 'chat has-thread' : 'chat' }, aside, pane));

  /** @type {(() => void)[]} */
  const cleanups = [];
  /** @param {string} type @param {(ev: any) => void} fn */
  const on = (type, fn) => {
    ctx.chat.addEventListener(type, fn);
    cleanups.push(() => ctx.chat.removeEventListener(type, fn));
  };

  let timer = 0;
  const refreshList = () => {
    clearTimeout(timer);
    timer = setTimeout(() => showList(ctx, list, convId), 250);
  };
  showList(ctx, list, convId);
  on('message', refreshList);
  on('connected', refreshList);
  on('removed', refreshList);
  if (convId) cleanups.push(openThread(ctx, pane, convId, on));
  else pane.append(h('p', { class: 'muted center' }, 'Pick a conversation, or start one.'));
  return () => {
    clearTimeout(timer);
    for (const c of cleanups) c();
  };
}

/**
 * A conversation's title: its name, or for a 1:1 the other member.
 * @param {Ctx} ctx @param {Conversation} c
 * @returns {HTMLElement}
 */
function title(ctx, c) {
  if (c.name) return h('span', {}, c.name);
  const other = c.members.find((m) => m.id !== ctx.me.id);
  return other ? ctx.users.name(other.id) : h('span', {}, 'Just you');
}

/**
 * @param {Ctx} ctx @param {HTMLElement} list @param {string | undefined} current
 */
async function showList(ctx, list, current) {
  try {
    const page = await ctx.api.conversations();
    let unread = 0;
    replace(
      list,
      page.items.map((c) => {
        const n = c.id === current ? 0 : c.unread_count || 0;
        unread += n;
        const last = c.last_message;
        return h(
          'li',
          { 'data-conv': c.id },
          h(
            'a',
            { href: `#/chat/${c.id}`, class: 'conv', 'aria-current': c.id === current ? 'page' : false },
            h('span', { class: 'conv-title' }, title(ctx, c), c.kind === 'group' ? h('span', { class: 'muted' }, ` · ${c.members_count}`) : null),
            n ? h('span', { class: 'badge' }, String(n), h('span', { class: 'visually-hidden' }, ' unread')) : null,
            last && last.kind === 'text' ? h('span', { class: 'preview muted' }, last.deleted ? 'message deleted' : last.body) : null,
          ),
        );
      }),
      page.items.length ? null : h('li', { class: 'muted' }, 'No conversations yet.'),
    );
    ctx.setUnread(unread);
  } catch (e) {
    if (!(e instanceof ApiError)) return;
    notice(e.message, 'error');
  }
}

/**
 * Starting a conversation: one handle makes a 1:1, several or a name a group.
 * @param {Ctx} ctx
 */
function newChat(ctx) {
  const handles = /** @type {HTMLInputElement} */ (h('input', { id: 'new-chat-handles', placeholder: 'alice, bob', autocapitalize: 'none', spellcheck: 'false', required: true }));
  const name = /** @type {HTMLInputElement} */ (h('input', { id: 'new-chat-name', placeholder: 'optional: makes a group' }));
  return h(
    'details',
    { class: 'new-chat' },
    h('summary', {}, 'New conversation'),
    h(
      'form',
      {
        onsubmit: async (/** @type {SubmitEvent} */ ev) => {
          ev.preventDefault();
          try {
            const ids = [];
            for (const hd of handles.value.split(/[\s,]+/).map((s) => s.replace(/^@/, '')).filter(Boolean)) {
              ids.push((await ctx.api.byHandle(hd)).id);
            }
            const c = await ctx.api.createConversation(ids, name.value.trim() || undefined);
            location.hash = `#/chat/${c.id}`;
          } catch (e) {
            notice(e instanceof ApiError && e.status === 404 ? 'One of those handles is nobody.' : e instanceof Error ? e.message : 'failed', 'error');
          }
        },
      },
      h('div', { class: 'field' }, h('label', { for: 'new-chat-handles' }, 'With (handles)'), handles),
      h('div', { class: 'field' }, h('label', { for: 'new-chat-name' }, 'Group name'), name),
      h('button', { type: 'submit', class: 'primary' }, 'Start'),
    ),
  );
}

/**
 * @param {Ctx} ctx @param {HTMLElement} pane @param {string} convId
 * @param {(type: string, fn: (ev: any) => void) => void} on
 * @returns {() => void}
 */
function openThread(ctx, pane, convId, on) {
  const messages = h('ol', { class: 'messages', id: 'messages', 'aria-label': 'Messages', 'aria-live': 'polite' });
  const typing = h('p', { class: 'typing muted', id: 'typing', 'aria-live': 'polite' });
  const input = /** @type {HTMLInputElement} */ (h('input', { id: 'message-input', autocomplete: 'off', maxlength: 4000, placeholder: 'Message' }));
  const header = h('header', { class: 'thread-head' }, h('a', { href: '#/chat', class: 'back' }, '← All chats'), h('h2', { id: 'thread-title' }, '…'));
  const older = h('button', { type: 'button', class: 'ghost', hidden: true }, 'Earlier messages');
  const members = h('div', { class: 'members' });
  const form = h(
    'form',
    {
      class: 'composer',
      onsubmit: (/** @type {SubmitEvent} */ ev) => {
        ev.preventDefault();
        const body = input.value;
        if (!body.trim()) return;
        ctx.chat.send(convId, body);
        input.value = '';
        input.focus();
      },
    },
    h('label', { for: 'message-input', class: 'visually-hidden' }, 'Message'),
    input,
    h('button', { type: 'submit', class: 'primary' }, 'Send'),
  );
  input.addEventListener('input', () => ctx.chat.typing(convId));
  pane.append(header, members, older, messages, typing, form);

  /** @type {Conversation | null} */
  let conv = null;
  /** @type {Map<string, number>} the other members' read markers */
  const readBy = new Map();
  /** @type {Map<string, ReturnType<typeof setTimeout>>} */
  const typers = new Map();
  /** The own message being edited, and the draft (kept across redraws). */
  const editing = { seq: 0, draft: '' };
  /** @type {MessageActions} */
  const actions = {
    editing,
    edit: (seq, body) => {
      editing.seq = seq;
      editing.draft = body;
      draw();
      /** @type {HTMLInputElement | null} */ (messages.querySelector('.edit-input'))?.focus();
    },
    cancel: () => {
      editing.seq = 0;
      draw();
    },
    save: (seq, body) => {
      if (!body.trim()) return;
      if (!ctx.chat.change(convId, seq, body)) return notice('Offline: try again when connected.', 'error');
      editing.seq = 0;
      draw();
    },
    remove: (seq) => {
      if (!confirm('Delete this message for everyone?')) return;
      if (!ctx.chat.change(convId, seq, null)) notice('Offline: try again when connected.', 'error');
    },
  };

  const draw = () => {
    const atBottom = messages.scrollHeight - messages.scrollTop - messages.clientHeight < 40;
    const v = ctx.chat.view(convId);
    const mine = v.messages.filter((m) => m.sender === ctx.me.id && m.kind === 'text');
    replace(
      messages,
      v.messages.map((m) => messageItem(ctx, m, mine, readBy, actions)),
      v.pending.map((p) =>
        h(
          'li',
          { class: `msg own pending ${p.state}`, 'data-client-id': p.client_id },
          h('span', { class: 'body' }, p.body),
          p.state === 'failed'
            ? h('span', { class: 'meta error' }, `Not sent: ${p.error || ''} `, h('button', { type: 'button', class: 'link', onclick: () => ctx.chat.retry(p.client_id) }, 'Retry'), ' ', h('button', { type: 'button', class: 'link', onclick: () => ctx.chat.discard(p.client_id) }, 'Discard'))
            : h('span', { class: 'meta muted' }, 'Sending…'),
        ),
      ),
    );
    const st = ctx.chat.convs.get(convId);
    older.hidden = !st || st.base <= 1;
    if (atBottom) messages.scrollTop = messages.scrollHeight;
    markRead();
  };

  const markRead = () => {
    if (document.visibilityState !== 'visible') return;
    const v = ctx.chat.view(convId);
    const last = v.messages[v.messages.length - 1];
    if (last) ctx.chat.read(convId, ctx.chat.highest(convId));
  };

  older.addEventListener('click', async () => {
    const st = ctx.chat.convs.get(convId);
    if (!st) return;
    try {
      ctx.chat.prepend(convId, await ctx.api.messagesBefore(convId, st.base));
      draw();
    } catch (e) {
      notice(e instanceof Error ? e.message : 'failed', 'error');
    }
  });

  const mine = (/** @type {any} */ ev) => ev.detail.conv === convId;
  on('message', (ev) => {
    if (!mine(ev)) return;
    const m = ev.detail.message;
    if (m && typers.has(m.sender)) {
      clearTimeout(typers.get(m.sender));
      typers.delete(m.sender);
      drawTyping();
    }
    if (m && m.kind !== 'text') loadConv();
    draw();
  });
  on('change', (ev) => mine(ev) && draw());
  on('read', (ev) => {
    if (!mine(ev) || ev.detail.user === ctx.me.id) return;
    readBy.set(ev.detail.user, Math.max(readBy.get(ev.detail.user) || 0, ev.detail.seq));
    draw();
  });
  on('typing', (ev) => {
    if (!mine(ev) || ev.detail.user === ctx.me.id) return;
    const u = ev.detail.user;
    clearTimeout(typers.get(u));
    typers.set(u, setTimeout(() => {
      typers.delete(u);
      drawTyping();
    }, TYPING_SHOWN_MS));
    drawTyping();
  });
  on('removed', (ev) => {
    if (mine(ev)) notice('You are no longer a member of this conversation.', 'error');
  });
  const drawTyping = () => {
    replace(typing, typers.size ? [[...typers.keys()].map((u) => ctx.users.name(u)), typers.size > 1 ? ' are typing…' : ' is typing…'] : null);
  };
  const onVisible = () => markRead();
  document.addEventListener('visibilitychange', onVisible);

  async function loadConv() {
    try {
      conv = await ctx.api.conversation(convId);
      replace(/** @type {HTMLElement} */ (header.querySelector('h2')), title(ctx, conv));
      replace(members, conv.kind === 'group' ? memberPanel(ctx, conv, loadConv) : null);
    } catch (e) {
      replace(pane, h('p', { class: 'error' }, e instanceof ApiError && e.status === 403 ? 'You are not a member of this conversation.' : 'This conversation could not be loaded.'));
    }
  }

  (async () => {
    await loadConv();
    if (!conv) return;
    try {
      const loaded = ctx.chat.convs.has(convId) ? [] : await ctx.api.latestMessages(convId);
      ctx.chat.track(convId, loaded);
      draw();
      messages.scrollTop = messages.scrollHeight;
    } catch (e) {
      notice(e instanceof Error ? e.message : 'failed', 'error');
    }
  })();

  return () => {
    document.removeEventListener('visibilitychange', onVisible);
    for (const t of typers.values()) clearTimeout(t);
  };
}

/**
 * @typedef {object} MessageActions
 * @property {{seq: number, draft: string}} editing
 * @property {(seq: number, body: string) => void} edit
 * @property {() => void} cancel
 * @property {(seq: number, body: string) => void} save
 * @property {(seq: number) => void} remove
 */

/**
 * @param {Ctx} ctx @param {Message} m @param {Message[]} mine  own text messages, ascending
 * @param {Map<string, number>} readBy @param {MessageActions} act
 */
function messageItem(ctx, m, mine, readBy, act) {
  if (m.kind !== 'text') {
    const what = {
      member_added: 'added',
      member_removed: 'removed',
      member_left: 'left',
      renamed: 'renamed the group',
      role_changed: 'changed the role of',
    }[m.kind] || m.kind;
    // An event made by a user who deleted their account since reads as from a deleted user.
    const who = m.sender_deleted ? 'deleted user' : ctx.users.name(m.sender);
    return h('li', { class: 'msg event', 'data-seq': m.seq }, who, ` ${what} `, m.target && m.kind !== 'member_left' ? ctx.users.name(m.target) : null);
  }
  const own = m.sender === ctx.me.id;
  // "Seen" under one's newest message that a member has read up to.
  let seen = null;
  if (own && mine[mine.length - 1] === m) {
    const readers = [...readBy].filter(([, s]) => s >= m.seq).map(([u]) => u);
    if (readers.length) seen = h('span', { class: 'meta muted seen' }, 'Seen by ', readers.map((u, i) => [i ? ', ' : '', ctx.users.name(u)]));
  }
  if (own && act.editing.seq === m.seq) {
    const input = /** @type {HTMLInputElement} */ (h('input', { class: 'edit-input', value: act.editing.draft, maxlength: 4000, 'aria-label': 'Edit message' }));
    input.addEventListener('input', () => (act.editing.draft = input.value));
    input.addEventListener('keydown', (ev) => ev.key === 'Escape' && act.cancel());
    return h(
      'li',
      { class: 'msg own editing', 'data-seq': m.seq },
      h('form', { class: 'row', onsubmit: (/** @type {SubmitEvent} */ ev) => { ev.preventDefault(); act.save(m.seq, input.value); } },
        input, h('button', { type: 'submit', class: 'link' }, 'Save'), h('button', { type: 'button', class: 'link', onclick: () => act.cancel() }, 'Cancel')),
    );
  }
  const tools = own && !m.deleted
    ? h('span', { class: 'tools' },
      h('button', { type: 'button', class: 'link', onclick: () => act.edit(m.seq, m.body), 'aria-label': `Edit “${m.body.slice(0, 40)}”` }, 'Edit'),
      h('button', { type: 'button', class: 'link', onclick: () => act.remove(m.seq), 'aria-label': `Delete “${m.body.slice(0, 40)}”` }, 'Delete'))
    : null;
  return h(
    'li',
    { class: own ? 'msg own' : 'msg', 'data-seq': m.seq, 'data-client-id': m.client_id },
    own ? null : h('span', { class: 'sender' }, m.sender_deleted ? 'deleted user' : ctx.users.name(m.sender)),
    h('span', { class: 'body' }, m.deleted ? h('em', {}, 'message deleted') : m.body),
    tools,
    h('span', { class: 'meta muted' }, m.sent_at ? time(m.sent_at) : null, m.edited_at ? ' · edited' : null),
    seen,
  );
}

/**
 * A group's members: add by handle, remove (owner/admin), leave.
 * @param {Ctx} ctx @param {Conversation} c @param {() => void} changed
 */
function memberPanel(ctx, c, changed) {
  const myRole = c.members.find((m) => m.id === ctx.me.id)?.role;
  const manage = myRole === 'owner' || myRole === 'admin';
  const handle = /** @type {HTMLInputElement} */ (h('input', { id: 'add-member', placeholder: 'handle', autocapitalize: 'none', required: true }));
  /** @param {() => Promise<unknown>} f */
  const act = async (f) => {
    try {
      await f();
      changed();
    } catch (e) {
      notice(e instanceof Error ? e.message : 'failed', 'error');
    }
  };
  return h(
    'details',
    { class: 'member-panel' },
    h('summary', {}, `Members (${c.members.length})`),
    h(
      'ul',
      { class: 'people' },
      c.members.map((m) =>
        h(
          'li',
          {},
          ctx.users.link(m.id),
          h('span', { class: 'muted' }, ` ${m.role}`),
          manage && m.id !== ctx.me.id && m.role !== 'owner'
            ? h('button', { type: 'button', class: 'ghost danger', onclick: () => act(() => ctx.api.removeMember(c.id, m.id)) }, 'Remove')
            : null,
        ),
      ),
    ),
    manage
      ? h(
          'form',
          {
            class: 'row',
            onsubmit: (/** @type {SubmitEvent} */ ev) => {
              ev.preventDefault();
              act(async () => ctx.api.addMember(c.id, (await ctx.api.byHandle(handle.value.trim().replace(/^@/, ''))).id));
            },
          },
          h('label', { for: 'add-member' }, 'Add'),
          handle,
          h('button', { type: 'submit', class: 'ghost' }, 'Add'),
        )
      : null,
    h('button', {
      type: 'button', class: 'ghost danger', onclick: () => act(async () => {
        await ctx.api.removeMember(c.id, ctx.me.id);
        location.hash = '#/chat';
      }),
    }, 'Leave group'),
  );
}
