//! The domain types as stored (postcard through the store's codec). Wire types are in
//! [`crate::protocol`] and in the API crate.
//!
//! A conversation's **log** is the source of truth: every message and every change of the
//! conversation (membership, name, roles, edits, deletes) is an entry with its own seq. An entry
//! that changes the membership or the metadata carries the whole [`Conversation`] as it is after
//! it (`state`), and every entry carries the `epoch` it was written under: the seq of the newest
//! such change at or below it. So whoever holds an entry can tell whom it belongs to, and the
//! conversation record (`cv`) is only a cache of the newest state, repaired from the log.

use serde::{Deserialize, Serialize};

/// 1:1 or group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConversationKind {
    /// Two users; the same pair always has the same conversation.
    Direct,
    /// Up to the configured member cap.
    Group,
}

/// A member's role in a group (in a 1:1 both are members).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Role {
    /// Sends and reads.
    Member,
    /// Also adds and removes members, renames, deletes any message.
    Admin,
    /// Also changes roles and transfers ownership. Exactly one per group.
    Owner,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "member" => Some(Role::Member),
            "admin" => Some(Role::Admin),
            "owner" => Some(Role::Owner),
            _ => None,
        }
    }
}

/// A current member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// User id.
    pub user: u64,
    /// Role.
    pub role: Role,
    /// The first seq this member may read: 1 for the founders, the seq of the entry that added
    /// them for the others (a member reads nothing from before they joined).
    pub since: u64,
}

/// A closed stretch of a former membership: entries `from..=until` stay readable to `user`
/// (`until` is the entry that removed them, which they receive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PastMembership {
    /// User id.
    pub user: u64,
    /// First readable seq.
    pub from: u64,
    /// Last readable seq (the removal).
    pub until: u64,
}

/// A conversation as of one entry of its log (`epoch`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// Time-ordered id.
    pub id: u64,
    /// 1:1 or group.
    pub kind: ConversationKind,
    /// Current members, sorted by user id.
    pub members: Vec<Member>,
    /// The region whose owner nodes assign the sequence (the creator's home region).
    pub home_region: String,
    /// Who created it.
    pub created_by: u64,
    /// Creation time, ms since the epoch.
    pub created_at_ms: u64,
    /// A group's name ("" for none).
    pub name: String,
    /// A group's topic ("" for none).
    pub topic: String,
    /// A group's avatar (a media id).
    pub avatar: Option<u64>,
    /// The seq of the log entry this state is the result of (0: as created).
    pub epoch: u64,
    /// Former memberships, oldest first, bounded (see [`MAX_PAST`]).
    pub past: Vec<PastMembership>,
}

/// Most former memberships a conversation remembers; the oldest are forgotten (their users
/// then no longer read those stretches of history).
pub const MAX_PAST: usize = 1000;

impl Conversation {
    /// The member entry of `user`, if a member now.
    pub fn member(&self, user: u64) -> Option<&Member> {
        self.members
            .binary_search_by_key(&user, |m| m.user)
            .ok()
            .map(|i| &self.members[i])
    }

    /// Whether `user` is a member now.
    pub fn is_member(&self, user: u64) -> bool {
        self.member(user).is_some()
    }

    /// `user`'s role, if a member.
    pub fn role(&self, user: u64) -> Option<Role> {
        self.member(user).map(|m| m.role)
    }

    /// The current members' ids, sorted.
    pub fn member_ids(&self) -> Vec<u64> {
        self.members.iter().map(|m| m.user).collect()
    }

    /// Whether `user` may read entry `seq` (as a member now, or in a former membership). Valid
    /// for every seq up to the newest entry of this state's epoch and beyond, until the next
    /// membership change.
    pub fn may_read(&self, user: u64, seq: u64) -> bool {
        if let Some(m) = self.member(user)
            && seq >= m.since
        {
            return true;
        }
        self.past
            .iter()
            .any(|p| p.user == user && (p.from..=p.until).contains(&seq))
    }

    /// The owner of a group.
    pub fn owner(&self) -> Option<u64> {
        self.members
            .iter()
            .find(|m| m.role == Role::Owner)
            .map(|m| m.user)
    }

    /// Adds `user` as a member readable from `since`.
    pub(crate) fn add_member(&mut self, user: u64, role: Role, since: u64) {
        if let Err(i) = self.members.binary_search_by_key(&user, |m| m.user) {
            self.members.insert(i, Member { user, role, since });
        }
    }

    /// Forgets the former memberships that ended below `floor`: with history kept from `floor`
    /// on, they read nothing the conversation still holds.
    pub(crate) fn forget_past_below(&mut self, floor: u64) {
        self.past.retain(|p| p.until >= floor);
    }

    /// Removes `user`, remembering the stretch they could read up to `until`.
    pub(crate) fn remove_member(&mut self, user: u64, until: u64) {
        if let Ok(i) = self.members.binary_search_by_key(&user, |m| m.user) {
            let m = self.members.remove(i);
            self.past.push(PastMembership {
                user,
                from: m.since,
                until,
            });
            if self.past.len() > MAX_PAST {
                self.past.remove(0);
            }
        }
    }
}

/// What a log entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageKind {
    /// A message with a body.
    Text,
    /// `target` was added by `sender`.
    MemberAdded,
    /// `target` was removed by `sender`.
    MemberRemoved,
    /// `sender` left.
    MemberLeft,
    /// `sender` changed the name or topic.
    Renamed,
    /// `sender` changed `target`'s role (to [`Message::role`]).
    RoleChanged,
    /// `sender` edited entry `target_seq` (the new body is this entry's body).
    Edit,
    /// `sender` deleted entry `target_seq`.
    Delete,
}

impl MessageKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Text => "text",
            MessageKind::MemberAdded => "member_added",
            MessageKind::MemberRemoved => "member_removed",
            MessageKind::MemberLeft => "member_left",
            MessageKind::Renamed => "renamed",
            MessageKind::RoleChanged => "role_changed",
            MessageKind::Edit => "edit",
            MessageKind::Delete => "delete",
        }
    }

    /// Whether entries of this kind change the conversation (and carry its new state).
    pub fn changes_conversation(self) -> bool {
        matches!(
            self,
            MessageKind::MemberAdded
                | MessageKind::MemberRemoved
                | MessageKind::MemberLeft
                | MessageKind::Renamed
                | MessageKind::RoleChanged
        )
    }
}

/// An entry of a conversation's log: the value of its sequence slot. `sender` and `client_id`
/// come first so the idempotency search can decode just them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Sender's user id (for events: who made the change).
    pub sender: u64,
    /// The sender's idempotency key.
    pub client_id: String,
    /// Conversation id.
    pub conv: u64,
    /// Position in the conversation: 1, 2, 3, … without gaps.
    pub seq: u64,
    /// Time-ordered id (unique across conversations).
    pub id: u64,
    /// Text ("" for membership events and deletes; the new text for an edit).
    pub body: String,
    /// When the slot was claimed, ms since the epoch.
    pub sent_at_ms: u64,
    /// What this entry is.
    pub kind: MessageKind,
    /// The user a membership event concerns.
    pub target: Option<u64>,
    /// The entry an edit or delete applies to.
    pub target_seq: Option<u64>,
    /// The role a `RoleChanged` gave.
    pub role: Option<Role>,
    /// The seq of the newest conversation change at or below this entry (its own seq for a
    /// change): the state it was written under.
    pub epoch: u64,
    /// When the text was last edited (text messages).
    pub edited_at_ms: Option<u64>,
    /// Deleted: the body is gone.
    pub deleted: bool,
    /// For a conversation change: the conversation after it.
    pub state: Option<Box<Conversation>>,
}

impl Message {
    /// A text message (the slot fields are set by the claim).
    pub fn text(sender: u64, client_id: &str, conv: u64, body: &str) -> Message {
        Message {
            sender,
            client_id: client_id.to_string(),
            conv,
            seq: 0,
            id: 0,
            body: body.to_string(),
            sent_at_ms: 0,
            kind: MessageKind::Text,
            target: None,
            target_seq: None,
            role: None,
            epoch: 0,
            edited_at_ms: None,
            deleted: false,
            state: None,
        }
    }
}

/// The first two fields of a stored [`Message`], decoded without the rest and without copying.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageHead<'a> {
    pub(crate) sender: u64,
    pub(crate) client_id: &'a str,
}
