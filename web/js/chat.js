// @ts-check
/**
 * @file The chat connection: one WebSocket at `/v1/ws` (protocol: docs/asyncapi.json).
 *
 * - **Exact resume.** For each conversation on screen the client holds its messages by seq and
 *   `upTo`, the highest seq below which it holds every entry. On each (re)connection it sends
 *   `resume` with `after_seq: upTo` first, so the server replays exactly what was missed, then
 *   live entries follow without a gap; an entry whose seq is already held is dropped, so nothing
 *   shows twice.
 * - **Sends** carry a `client_id` and show at once (optimistic) as "sending"; the `ack` gives
 *   them their seq. A send whose ack did not come before the connection dropped is sent again
 *   with the same `client_id` after the resumes (the server answers a repeat with the original
 *   ack and stores nothing new).
 * - **Reconnects** with exponential backoff (0.5 s doubling to 10 s, jittered), at once when the
 *   browser says it is online again; a heartbeat `ping` finds a dead connection. Offline, the
 *   socket is closed and sends wait in the queue.
 */

/** @typedef {import('./types.js').Message} Message */

/**
 * @typedef {object} ConvState
 * @property {Map<number, Message>} entries  held log entries by seq (edits and deletes too)
 * @property {number} upTo  every seq from `base` to `upTo` is held
 * @property {number} base  the lowest seq loaded
 */

/**
 * @typedef {object} Pending
 * @property {string} conv
 * @property {string} body
 * @property {string} client_id
 * @property {'sending' | 'failed'} state
 * @property {string} [error]
 * @property {number} [tries] automatic resends after `busy` or `unavailable`
 */

const HEARTBEAT_MS = 20_000;
/** Automatic resends of a message refused as `busy` or `unavailable` (pauses 0.5 s … 8 s). */
const RESEND_TRIES = 5;
const DEAD_MS = 45_000;
const TYPING_EVERY_MS = 2_500;
/** Conversations whose messages are kept and resumed. */
const MAX_TRACKED = 20;

export class ChatClient extends EventTarget {
  /**
   * @param {() => string | null} token  the current session token
   * @param {string} me  the signed-in user's id
   */
  constructor(token, me) {
    super();
    this.token = token;
    this.me = me;
    /** @type {'connecting' | 'online' | 'offline'} */
    this.status = 'connecting';
    /** @type {WebSocket | null} */
    this.ws = null;
    /** @type {Map<string, ConvState>} */
    this.convs = new Map();
    /** @type {Map<string, Pending>} in send order */
    this.pending = new Map();
    /** @type {Map<string, {conv: string, seq: number, body: string | null}>} edits and deletes awaiting their ack (`body` null: a delete) */
    this.changes = new Map();
    this.attempt = 0;
    this.stopped = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.heartbeat = undefined;
    this.lastFrameAt = 0;
    /** @type {Map<string, number>} */
    this.typingSentAt = new Map();
    /** @type {Map<string, number>} */
    this.readSent = new Map();
    this.onOnline = () => this.connectNow();
    this.onOffline = () => {
      this.ws?.close();
      this.setStatus('offline');
    };
  }

  start() {
    window.addEventListener('online', this.onOnline);
    window.addEventListener('offline', this.onOffline);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    window.removeEventListener('offline', this.onOffline);
    clearTimeout(this.retryTimer);
    clearInterval(this.heartbeat);
    this.ws?.close(1000);
  }

  /** @param {'connecting' | 'online' | 'offline'} s */
  setStatus(s) {
    if (this.status === s) return;
    this.status = s;
    this.emit('status', { status: s });
  }

  /** @param {string} type @param {object} detail */
  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  connectNow() {
    clearTimeout(this.retryTimer);
    this.attempt = 0;
    if (!this.ws || this.ws.readyState === WebSocket.CLOSED || this.ws.readyState === WebSocket.CLOSING) this.connect();
  }

  connect() {
    if (this.stopped) return;
    if (!navigator.onLine) {
      this.setStatus('offline');
      this.scheduleRetry();
      return;
    }
    const token = this.token();
    if (!token) return;
    this.setStatus('connecting');
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/v1/ws?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this.attempt = 0;
      this.lastFrameAt = Date.now();
      this.setStatus('online');
      // Resumes first (each seam exact), a ping when there is none so live deliveries start,
      // then the sends still waiting for their ack.
      for (const [conv, st] of this.convs) this.frame({ type: 'resume', conv, after_seq: st.upTo });
      if (this.convs.size === 0) this.frame({ type: 'ping' });
      for (const p of this.pending.values()) {
        if (p.state === 'sending') this.frame({ type: 'send', conv: p.conv, client_id: p.client_id, body: p.body });
      }
      clearInterval(this.heartbeat);
      this.heartbeat = setInterval(() => {
        if (Date.now() - this.lastFrameAt > DEAD_MS) ws.close(4000, 'no answer');
        else this.frame({ type: 'ping' });
      }, HEARTBEAT_MS);
      this.emit('connected', {});
    };
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return;
      this.lastFrameAt = Date.now();
      let f;
      try {
        f = JSON.parse(String(ev.data));
      } catch {
        return;
      }
      this.onFrame(f);
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      clearInterval(this.heartbeat);
      this.ws = null;
      if (this.stopped) return;
      if (ev.code === 4001) {
        this.emit('unauthorized', {});
        return;
      }
      this.setStatus(navigator.onLine ? 'connecting' : 'offline');
      this.scheduleRetry();
    };
  }

  scheduleRetry() {
    clearTimeout(this.retryTimer);
    const base = Math.min(10_000, 500 * 2 ** this.attempt);
    this.attempt = Math.min(this.attempt + 1, 10);
    this.retryTimer = setTimeout(() => this.connect(), base * (0.5 + Math.random() / 2));
  }

  /** @param {object} f */
  frame(f) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(f));
      return true;
    }
    return false;
  }

  /** @param {any} f */
  onFrame(f) {
    switch (f.type) {
      case 'message': {
        this.hold(f.conv, /** @type {Message} */ (f));
        this.emit('message', { conv: f.conv, message: f });
        break;
      }
      case 'ack': {
        const c = this.changes.get(f.client_id);
        if (c) {
          this.changes.delete(f.client_id);
          this.onFrame(c.body === null
            ? { type: 'deleted', conv: c.conv, seq: c.seq, log_seq: f.seq, by: this.me }
            : { type: 'edited', conv: c.conv, seq: c.seq, log_seq: f.seq, sender: this.me, body: c.body, edited_at: new Date().toISOString() });
          break;
        }
        const p = this.pending.get(f.client_id);
        if (!p) break;
        this.pending.delete(f.client_id);
        this.hold(p.conv, {
          conv: p.conv,
          seq: f.seq,
          id: f.id,
          sender: this.me,
          body: p.body,
          client_id: p.client_id,
          sent_at: new Date().toISOString(),
          kind: 'text',
          edited_at: null,
          deleted: false,
          sender_deleted: false,
        });
        this.emit('message', { conv: p.conv, own: true });
        break;
      }
      case 'edited':
      case 'deleted': {
        const st = this.convs.get(f.conv);
        if (st) {
          const m = st.entries.get(f.seq);
          if (m && f.type === 'edited') Object.assign(m, { body: f.body, edited_at: f.edited_at });
          if (m && f.type === 'deleted') Object.assign(m, { deleted: true, body: '' });
          if (typeof f.log_seq === 'number') {
            this.holdEntry(st, {
              conv: f.conv, seq: f.log_seq, id: '', sender: f.sender || f.by || '', body: '', client_id: '',
              sent_at: '', kind: f.type === 'edited' ? 'edit' : 'delete', edited_at: null, deleted: false,
              // An `edited` frame says whether its sender deleted their account since.
              sender_deleted: f.sender_deleted === true,
            });
          }
        }
        this.emit('change', { conv: f.conv });
        break;
      }
      case 'error': {
        if (f.ref && this.changes.has(f.ref)) this.changes.delete(f.ref);
        const p = f.ref ? this.pending.get(f.ref) : undefined;
        // `busy` and `unavailable` are "retry later" (`busy`: the conversation's seq lease moving
        // to another node after its holder died, up to about 5 s; `unavailable`: the home region's
        // node out of reach): the same client_id is sent again after a growing pause before the
        // user is asked. (A node restarted on its data directory takes its own leases at once.)
        if (p && (f.code === 'busy' || f.code === 'unavailable') && (p.tries ?? 0) < RESEND_TRIES) {
          p.tries = (p.tries ?? 0) + 1;
          const id = p.client_id;
          setTimeout(() => {
            if (this.pending.get(id)?.state === 'sending' && this.ws?.readyState === WebSocket.OPEN) {
              this.frame({ type: 'send', conv: p.conv, client_id: id, body: p.body });
            }
          }, 250 * 2 ** p.tries);
          break;
        }
        if (p) {
          p.state = 'failed';
          p.error = f.message;
          this.emit('change', { conv: p.conv });
        } else {
          this.emit('error', f);
        }
        break;
      }
      case 'resumed':
      case 'typing':
      case 'read':
      case 'removed':
      case 'presence':
      case 'notification':
        this.emit(f.type, f);
        break;
      default:
        break;
    }
  }

  /**
   * Starts following a conversation on screen from the messages loaded over REST (ascending),
   * and resumes it on the socket after the last one held.
   * @param {string} conv @param {Message[]} loaded
   */
  track(conv, loaded) {
    let st = this.convs.get(conv);
    if (!st) {
      const base = loaded.length ? loaded[0].seq : 1;
      st = { entries: new Map(), upTo: base - 1, base };
      this.convs.set(conv, st);
      // Bounded: the conversations opened longest ago are let go (reopened, they load again).
      for (const old of this.convs.keys()) {
        if (this.convs.size <= MAX_TRACKED) break;
        if (old !== conv) this.convs.delete(old);
      }
      for (const m of loaded) this.applyEntry(st, m);
      this.frame({ type: 'resume', conv, after_seq: st.upTo });
    }
    return st;
  }

  /**
   * Adds older messages (scrolling back).
   * @param {string} conv @param {Message[]} older
   */
  prepend(conv, older) {
    const st = this.convs.get(conv);
    if (!st) return;
    for (const m of older) {
      this.applyEntry(st, m);
      st.base = Math.min(st.base, m.seq);
    }
  }

  /**
   * Holds an entry that arrived on the socket; one already held (a resume overlapping a live
   * delivery, or an own send already acked) is dropped.
   * @param {string} conv @param {Message} m
   */
  hold(conv, m) {
    const st = this.convs.get(conv);
    if (!st) {
      this.emit('activity', { conv, message: m });
      return;
    }
    // The message of a send still waiting for its ack (the ack was lost with a connection).
    if (m.sender === this.me && m.client_id && this.pending.has(m.client_id)) this.pending.delete(m.client_id);
    this.applyEntry(st, m);
  }

  /** @param {ConvState} st @param {Message} m */
  applyEntry(st, m) {
    if (m.kind === 'edit' || m.kind === 'delete') {
      const target = /** @type {any} */ (m).target_seq;
      const t = typeof target === 'number' ? st.entries.get(target) : undefined;
      if (t && m.kind === 'edit') Object.assign(t, { body: m.body, edited_at: m.sent_at });
      if (t && m.kind === 'delete') Object.assign(t, { deleted: true, body: '' });
    }
    this.holdEntry(st, m);
  }

  /** @param {ConvState} st @param {Message} m */
  holdEntry(st, m) {
    if (st.entries.has(m.seq)) return false;
    st.entries.set(m.seq, m);
    while (st.entries.has(st.upTo + 1)) st.upTo += 1;
    return true;
  }

  /** Stops following a conversation (left the screen). @param {string} conv */
  untrack(conv) {
    this.convs.delete(conv);
  }

  /**
   * The messages to show, ascending, then the sends waiting for their ack.
   * @param {string} conv
   * @returns {{messages: Message[], pending: Pending[]}}
   */
  view(conv) {
    const st = this.convs.get(conv);
    const messages = st
      ? [...st.entries.values()].filter((m) => m.kind !== 'edit' && m.kind !== 'delete').sort((a, b) => a.seq - b.seq)
      : [];
    const pending = [...this.pending.values()].filter((p) => p.conv === conv);
    return { messages, pending };
  }

  /**
   * Sends a message: shown at once, sent now or when the connection is back.
   * @param {string} conv @param {string} body
   * @returns {string} its client_id
   */
  send(conv, body) {
    const client_id = `web-${crypto.randomUUID()}`;
    this.pending.set(client_id, { conv, body, client_id, state: 'sending' });
    this.frame({ type: 'send', conv, client_id, body });
    this.emit('change', { conv });
    return client_id;
  }

  /** Sends a failed message again (same client_id). @param {string} client_id */
  retry(client_id) {
    const p = this.pending.get(client_id);
    if (!p) return;
    p.state = 'sending';
    p.error = undefined;
    p.tries = 0;
    this.frame({ type: 'send', conv: p.conv, client_id, body: p.body });
    this.emit('change', { conv: p.conv });
  }

  /** @param {string} client_id */
  discard(client_id) {
    const p = this.pending.get(client_id);
    this.pending.delete(client_id);
    if (p) this.emit('change', { conv: p.conv });
  }

  /**
   * Edits one's own message (`body`), or deletes a message (`body` null). Applied when the
   * server acks it; every member gets an `edited` / `deleted` frame.
   * @param {string} conv @param {number} seq @param {string | null} body
   * @returns {boolean} whether it was sent (the connection is up)
   */
  change(conv, seq, body) {
    const client_id = `web-${crypto.randomUUID()}`;
    const sent = this.frame(body === null ? { type: 'delete', conv, seq, client_id } : { type: 'edit', conv, seq, body, client_id });
    if (sent) this.changes.set(client_id, { conv, seq, body });
    return sent;
  }

  /** Says the user is typing (at most every 2.5 s). @param {string} conv */
  typing(conv) {
    const now = Date.now();
    if (now - (this.typingSentAt.get(conv) || 0) < TYPING_EVERY_MS) return;
    if (this.frame({ type: 'typing', conv })) this.typingSentAt.set(conv, now);
  }

  /** Moves the read marker (never backwards). @param {string} conv @param {number} seq */
  read(conv, seq) {
    if (seq <= (this.readSent.get(conv) || 0)) return;
    if (this.frame({ type: 'read', conv, seq })) this.readSent.set(conv, seq);
  }

  /** @param {string} conv */
  highest(conv) {
    const st = this.convs.get(conv);
    return st ? st.upTo : 0;
  }
}
