// @ts-check
/**
 * @file The shapes of the public API the client reads (README "API", `/openapi.json`), as JSDoc
 * types for `tsc --checkJs`. Fields added by newer servers (`bio`, `avatar`, `counts`, …) are
 * optional: the client shows them when they are there.
 */

/**
 * @typedef {object} User
 * @property {string} id
 * @property {string} handle
 * @property {string} display_name
 * @property {string} [region]
 * @property {number} [followers_count]
 * @property {number} [following_count]
 * @property {string} [created_at]
 * @property {string} [bio]
 * @property {string | null} [avatar]
 */

/**
 * @typedef {object} MediaRef
 * @property {string} id
 * @property {string} [url]
 * @property {string} [content_type]
 */

/**
 * @typedef {object} Post
 * @property {string} id
 * @property {string | User} author  a user id (or, on newer servers, a user summary)
 * @property {string} text
 * @property {Array<string | MediaRef>} media
 * @property {string} created_at
 * @property {string | null} edited_at
 * @property {string | null} [reply_to]  the post it answers (on a single read, a thread, a create)
 * @property {{likes: number, replies: number, reposts?: number}} [counts]  on a single read and a thread
 * @property {{liked: boolean, reposted?: boolean}} [viewer]  on a single read and a thread
 */

/**
 * A post of a thread, or the placeholder of a deleted one.
 * @typedef {Post | {id: string, deleted: true}} ThreadItem
 */

/**
 * @typedef {object} Thread
 * @property {ThreadItem[]} ancestors  oldest first
 * @property {ThreadItem} post
 * @property {Page<Post>} replies  oldest first
 */

/**
 * @template T
 * @typedef {object} Page
 * @property {T[]} items
 * @property {string | null} next_cursor
 */

/**
 * @typedef {object} Member
 * @property {string} id
 * @property {'owner' | 'admin' | 'member'} role
 */

/**
 * @typedef {object} Message
 * @property {string} conv
 * @property {number} seq
 * @property {string} id
 * @property {string} sender
 * @property {string} body
 * @property {string} client_id
 * @property {string} sent_at
 * @property {string} kind  `text`, or a membership event (`member_added`, …)
 * @property {string | null} [target]
 * @property {string | null} edited_at
 * @property {boolean} deleted
 */

/**
 * @typedef {object} Conversation
 * @property {string} id
 * @property {'direct' | 'group'} kind
 * @property {string} name
 * @property {string} [topic]
 * @property {Member[]} members
 * @property {number} members_count
 * @property {string} home_region
 * @property {string} created_at
 * @property {number} [last_seq]
 * @property {number} [read_seq]
 * @property {number} [unread_count]
 * @property {Message | null} [last_message]
 * @property {string} [last_activity_at]
 */

/**
 * @typedef {object} FriendRequest
 * @property {string} id
 * @property {string} from
 * @property {string} to
 * @property {string} state
 */

/**
 * @typedef {object} Session
 * @property {string} token
 * @property {string} user_id
 */

export {};
