// @ts-check
/**
 * @file The shapes of the public API the client reads, taken from the TypeScript declarations
 * generated from the server's `/openapi.json` (`clients/ts/src/schema.d.ts`, by
 * `clients/ts/generate.sh`): `tsc --checkJs` (infra/web-test.sh) checks every use against the
 * server's own document. Only the page's own state (a session, the WebSocket frames) is
 * described here.
 */

/** @typedef {import('../../clients/ts/src/schema').components['schemas']} Schemas */

/** @typedef {Schemas['UserView']} User */
/** @typedef {Schemas['SignedUp']} SignedUp */
/** @typedef {Schemas['SessionView']} Session */
/** @typedef {Schemas['PostView']} Post */
/** @typedef {Schemas['MediaView']} MediaView */
/** @typedef {Schemas['ThreadItem']} ThreadItem  a post, or `{id, deleted}` */
/** @typedef {Schemas['Thread']} Thread */
/** @typedef {Schemas['ConversationView']} Conversation */
/** @typedef {Schemas['MemberView']} Member */
/** @typedef {Schemas['MessageView']} Message */
/** @typedef {Schemas['RequestView']} FriendRequest */
/** @typedef {Schemas['ProfilePatch']} ProfilePatch */
/** @typedef {Schemas['NotificationView']} Notification  one, or several likes (reposts) of a post folded */
/** @typedef {Schemas['NotificationList']} NotificationList */
/** @typedef {Schemas['ActorView']} Actor */

/**
 * A page of a list (`limit`, `cursor`).
 * @template T
 * @typedef {object} Page
 * @property {T[]} items
 * @property {string | null} [next_cursor]
 */

export {};
