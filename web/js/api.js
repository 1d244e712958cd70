// @ts-check
/**
 * @file The REST client: one `fetch` per call with the session's bearer token; an error answer
 * (`application/problem+json`) becomes an {@link ApiError} with the server's title and detail.
 * The answers are typed by the declarations generated from `/openapi.json` (see types.js).
 */

/** @typedef {import('./types.js').User} User */
/** @typedef {import('./types.js').Post} Post */
/** @typedef {import('./types.js').Conversation} Conversation */
/** @typedef {import('./types.js').Message} Message */
/** @typedef {import('./types.js').FriendRequest} FriendRequest */
/** @typedef {import('./types.js').Session} Session */
/** @typedef {import('./types.js').Thread} Thread */
/** @typedef {import('./types.js').SignedUp} SignedUp */
/** @typedef {import('./types.js').MediaView} MediaView */
/** @typedef {import('./types.js').NotificationList} NotificationList */
/**
 * @template T
 * @typedef {import('./types.js').Page<T>} Page
 */

/** An error answer of the API. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {{title?: string, detail?: string}} problem
   */
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/**
 * @typedef {object} RequestOptions
 * @property {unknown} [json]  a body sent as JSON
 * @property {Blob} [blob]  a body sent as is, with its own type
 * @property {Record<string, string>} [headers]
 * @property {Record<string, string | number | undefined | null>} [query]
 */

export class Api {
  /** @param {string} [base] */
  constructor(base = '') {
    this.base = base;
    /** @type {string | null} */
    this.token = null;
    /** Called when the server says the session is gone (401). */
    this.onUnauthorized = () => {};
  }

  /**
   * @param {string} method
   * @param {string} path
   * @param {RequestOptions} [opts]
   * @returns {Promise<{status: number, data: any}>}
   */
  async request(method, path, opts = {}) {
    /** @type {Record<string, string>} */
    const headers = { ...(opts.headers || {}) };
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    /** @type {BodyInit | undefined} */
    let body;
    if (opts.json !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.json);
    } else if (opts.blob) {
      headers['content-type'] = opts.blob.type || 'application/octet-stream';
      body = opts.blob;
    }
    let url = this.base + path;
    if (opts.query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(opts.query)) if (v !== undefined && v !== null) q.set(k, String(v));
      const s = q.toString();
      if (s) url += `?${s}`;
    }
    const res = await fetch(url, { method, headers, body });
    const type = res.headers.get('content-type') || '';
    const data = type.includes('json') ? await res.json().catch(() => null) : null;
    if (!res.ok) {
      if (res.status === 401 && this.token) this.onUnauthorized();
      throw new ApiError(res.status, data || {});
    }
    return { status: res.status, data };
  }

  // ---- users and sessions
  /**
   * @param {string} handle @param {string} password @param {string} [display_name]
   * @returns {Promise<SignedUp>}
   */
  async signUp(handle, password, display_name) {
    return (await this.request('POST', '/v1/users', { json: { handle, password, display_name: display_name || undefined } })).data;
  }
  /** @param {string} handle @param {string} password @returns {Promise<Session>} */
  async login(handle, password) {
    return (await this.request('POST', '/v1/sessions', { json: { handle, password } })).data;
  }
  async logout() {
    await this.request('DELETE', '/v1/sessions');
  }
  /** @returns {Promise<User>} */
  async me() {
    return (await this.request('GET', '/v1/users/me')).data;
  }
  /**
   * `display_name`, `bio` (up to 300 characters), `avatar` (a media id the caller uploaded;
   * `null` removes it): only the fields given change.
   * @param {import('./types.js').ProfilePatch} patch @returns {Promise<User>}
   */
  async updateMe(patch) {
    return (await this.request('PATCH', '/v1/users/me', { json: patch })).data;
  }
  /** @param {string} id @returns {Promise<User>} */
  async user(id) {
    return (await this.request('GET', `/v1/users/${encodeURIComponent(id)}`)).data;
  }
  /** @param {string} handle @returns {Promise<User>} */
  async byHandle(handle) {
    return (await this.request('GET', `/v1/users/by-handle/${encodeURIComponent(handle)}`)).data;
  }

  // ---- graph
  /** @param {string} id */
  follow(id) {
    return this.request('PUT', `/v1/following/${id}`);
  }
  /** @param {string} id */
  unfollow(id) {
    return this.request('DELETE', `/v1/following/${id}`);
  }
  /** @param {string} id */
  block(id) {
    return this.request('PUT', `/v1/blocks/${id}`);
  }
  /** @param {string} id */
  unblock(id) {
    return this.request('DELETE', `/v1/blocks/${id}`);
  }
  /** @param {string} id @param {'followers' | 'following'} which @param {string | null} [cursor] @returns {Promise<Page<User>>} */
  async relations(id, which, cursor) {
    return (await this.request('GET', `/v1/users/${id}/${which}`, { query: { limit: 100, cursor } })).data;
  }
  /** @param {string} to @returns {Promise<FriendRequest>} */
  async friendRequest(to) {
    return (await this.request('POST', '/v1/friend-requests', { json: { to } })).data;
  }
  /** @param {string} id */
  acceptFriend(id) {
    return this.request('POST', `/v1/friend-requests/${id}/accept`);
  }
  /** The addressee says no. @param {string} id */
  declineFriend(id) {
    return this.request('POST', `/v1/friend-requests/${id}/decline`);
  }
  /** The sender takes a request back. @param {string} id */
  cancelFriend(id) {
    return this.request('DELETE', `/v1/friend-requests/${id}`);
  }
  /**
   * Pending requests to (`incoming`) or from (`outgoing`) the caller.
   * @param {'incoming' | 'outgoing'} direction @param {string | null} [cursor]
   * @returns {Promise<Page<FriendRequest>>}
   */
  async friendRequests(direction, cursor) {
    return (await this.request('GET', '/v1/friend-requests', { query: { direction, limit: 100, cursor } })).data;
  }
  /** @returns {Promise<Page<User>>} */
  async friends() {
    return (await this.request('GET', '/v1/friends', { query: { limit: 100 } })).data;
  }

  // ---- posts, media, feed
  /**
   * The home feed; `partial` when the server answered 206 (the timeline is still being built).
   * @param {string | null} [cursor] @param {number} [limit]
   * @returns {Promise<Page<Post> & {partial: boolean}>}
   */
  async feed(cursor, limit = 20) {
    const { status, data } = await this.request('GET', '/v1/feed', { query: { limit, cursor } });
    return { ...data, partial: status === 206 };
  }
  /** @param {string} id @param {string | null} [cursor] @returns {Promise<Page<Post>>} */
  async userPosts(id, cursor) {
    return (await this.request('GET', `/v1/users/${id}/posts`, { query: { limit: 20, cursor } })).data;
  }
  /**
   * @param {string} text @param {string[]} media @param {string} key  the Idempotency-Key
   * @param {string} [reply_to]  the post this one answers
   * @param {string} [quote_of]  the post this one quotes
   * @returns {Promise<Post>}
   */
  async createPost(text, media, key, reply_to, quote_of) {
    return (await this.request('POST', '/v1/posts', { json: { text, media, reply_to, quote_of }, headers: { 'idempotency-key': key } })).data;
  }
  /** A post in its thread. @param {string} id @param {string | null} [cursor] @returns {Promise<Thread>} */
  async thread(id, cursor) {
    return (await this.request('GET', `/v1/posts/${id}/thread`, { query: { limit: 50, cursor } })).data;
  }
  /** One post. @param {string} id @returns {Promise<Post>} */
  async post(id) {
    return (await this.request('GET', `/v1/posts/${id}`)).data;
  }
  /** @param {string} id @returns {Promise<Page<User>>} */
  async likers(id) {
    return (await this.request('GET', `/v1/posts/${id}/likes`, { query: { limit: 20 } })).data;
  }
  /** @param {string} id */
  deletePost(id) {
    return this.request('DELETE', `/v1/posts/${id}`);
  }
  /** @param {Blob} file @returns {Promise<MediaView>} */
  async upload(file) {
    return (await this.request('POST', '/v1/media', { blob: file })).data;
  }
  /** @param {string} id @param {boolean} on */
  like(id, on) {
    return this.request(on ? 'PUT' : 'DELETE', `/v1/posts/${id}/like`);
  }
  /** Reposts a post, or takes the repost back (the reposted post's id). @param {string} id @param {boolean} on */
  repost(id, on) {
    return this.request(on ? 'PUT' : 'DELETE', `/v1/posts/${id}/repost`);
  }

  // ---- notifications
  /**
   * A page of the caller's notifications, newest first, with `unread_count`.
   * @param {string | null} [cursor] @param {number} [limit]
   * @returns {Promise<NotificationList>}
   */
  async notifications(cursor, limit = 20) {
    return (await this.request('GET', '/v1/notifications', { query: { limit, cursor } })).data;
  }
  /** Marks the notifications up to `up_to` (an item's id) read; the marker only moves forward. @param {string} up_to */
  markNotificationsRead(up_to) {
    return this.request('PUT', '/v1/notifications/read', { json: { up_to } });
  }

  // ---- conversations
  /** @returns {Promise<Page<Conversation>>} */
  async conversations() {
    return (await this.request('GET', '/v1/conversations', { query: { limit: 100 } })).data;
  }
  /** @param {string} id @returns {Promise<Conversation>} */
  async conversation(id) {
    return (await this.request('GET', `/v1/conversations/${id}`)).data;
  }
  /** @param {string[]} members @param {string} [name] @returns {Promise<Conversation>} */
  async createConversation(members, name) {
    return (await this.request('POST', '/v1/conversations', { json: { members, name: name || undefined } })).data;
  }
  /** @param {string} conv @param {string} user */
  addMember(conv, user) {
    return this.request('PUT', `/v1/conversations/${conv}/members/${user}`);
  }
  /** @param {string} conv @param {string} user */
  removeMember(conv, user) {
    return this.request('DELETE', `/v1/conversations/${conv}/members/${user}`);
  }
  /** The newest messages, ascending. @param {string} conv @param {number} [limit] @returns {Promise<Message[]>} */
  async latestMessages(conv, limit = 50) {
    return (await this.request('GET', `/v1/conversations/${conv}/messages`, { query: { limit } })).data.items;
  }
  /** @param {string} conv @param {number} before @returns {Promise<Message[]>} */
  async messagesBefore(conv, before) {
    return (await this.request('GET', `/v1/conversations/${conv}/messages`, { query: { before_seq: before, limit: 50 } })).data.items;
  }
}
