//! Fan-out of events to the members' connections: this node's hub at once, the other gateway
//! nodes of the region through the [`Bus`], and — for messages — every other node through
//! replication of the log (each node's [`tail`](crate::tail) delivers what arrives).

use crate::Messenger;
use crate::bus::{Bus, BusEvent};
use crate::error::MessengerError;
use crate::hub::Hub;
use crate::model::{Conversation, Message, MessageKind};
use crate::outbox::OutItem;
use crate::protocol::{self, ServerFrame};
use parking_lot::Mutex;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// Messages this node delivered itself, remembered so its change-feed tail does not read,
/// decode and deliver them a second time (bounded: the oldest are forgotten; forgetting early
/// only costs a duplicate that the cursors drop).
#[derive(Debug, Default)]
pub struct Recent {
    set: HashSet<(u64, u64)>,
    order: VecDeque<(u64, u64)>,
}

/// How many delivered messages are remembered.
const RECENT: usize = 1 << 16;

impl Recent {
    fn insert(&mut self, k: (u64, u64)) {
        if self.set.insert(k) {
            self.order.push_back(k);
            if self.order.len() > RECENT
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

/// Hub, bus and the conversations they need. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Fanout {
    /// Conversations (for members).
    pub messenger: Messenger,
    /// This node's connections.
    pub hub: Hub,
    /// The in-region bus.
    pub bus: Bus,
    /// Messages delivered here by their sender's node (see [`Recent`]).
    pub recent: Arc<Mutex<Recent>>,
}

impl Fanout {
    /// Hub and bus over `messenger`.
    pub fn new(messenger: Messenger, hub: Hub, bus: Bus) -> Self {
        Fanout {
            messenger,
            hub,
            bus,
            recent: Arc::default(),
        }
    }

    /// Delivers a log entry to the members connected here, and publishes it on the bus.
    /// `conv` is the state it was written under (or newer). The entry is shared, not copied,
    /// as the conversation's head.
    pub fn message(&self, conv: &Conversation, m: &Arc<Message>) {
        self.recent.lock().insert((m.conv, m.seq));
        self.messenger.note_head_shared(m);
        self.to_readers(conv, m);
        // (No copy of the entry for a bus that reaches no other node.)
        if self.bus.is_shared() {
            self.bus.publish(BusEvent::Message((**m).clone()));
        }
    }

    /// Whether this node already delivered message `seq` of `conv`.
    pub fn delivered(&self, conv: u64, seq: u64) -> bool {
        self.recent.lock().set.contains(&(conv, seq))
    }

    /// Delivers a log entry to the members connected here who may read it: the members of
    /// the state it was written under (or of the state it makes, for a change) who joined at or
    /// before it, and the user a removal concerns (with a `removed` frame after it). A member
    /// it adds gets it as the start of their cursor.
    pub fn local_message(&self, conv: &Conversation, m: &Message) {
        self.messenger.note_head(m);
        self.to_readers(conv, m);
    }

    /// [`Fanout::local_message`] without noting the head.
    fn to_readers(&self, conv: &Conversation, m: &Message) {
        let state = m.state.as_deref().unwrap_or(conv);
        // A live entry's sender was signed in to write it: not a deleted user (a resume reads
        // the deletion records, `starling_api::ws`).
        let frame = protocol::message_frame(m, false);
        let concerned = match m.kind {
            MessageKind::MemberAdded | MessageKind::MemberRemoved | MessageKind::MemberLeft => {
                m.target
            }
            _ => None,
        };
        let readers: Vec<u64> = state
            .members
            .iter()
            .filter(|x| x.since <= m.seq && Some(x.user) != concerned)
            .map(|x| x.user)
            .collect();
        let item = OutItem::Message {
            conv: m.conv,
            seq: m.seq,
            frame: frame.clone(),
            extra: None,
            restart: false,
        };
        self.hub.deliver(&readers, None, &item);
        if let Some(user) = concerned {
            let item = OutItem::Message {
                conv: m.conv,
                seq: m.seq,
                frame,
                extra: (m.kind != MessageKind::MemberAdded).then(|| protocol::removed_frame(m)),
                restart: m.kind == MessageKind::MemberAdded,
            };
            self.hub.deliver(&[user], None, &item);
        }
    }

    /// A member is typing: to the other members.
    pub fn typing(&self, conv: &Conversation, user: u64) {
        self.local_typing(conv, user);
        self.bus.publish(BusEvent::Typing {
            conv: conv.id,
            user,
        });
    }

    fn local_typing(&self, conv: &Conversation, user: u64) {
        let frame = protocol::encode(&ServerFrame::Typing {
            conv: conv.id.to_string(),
            user: user.to_string(),
        });
        self.hub
            .deliver(&conv.member_ids(), Some(user), &OutItem::Frame(frame));
    }

    /// A member read up to `seq`: to the members (their other devices too).
    pub fn read(&self, conv: &Conversation, user: u64, seq: u64) {
        self.local_read(conv, user, seq);
        self.bus.publish(BusEvent::Read {
            conv: conv.id,
            user,
            seq,
        });
    }

    /// A member read up to `seq`: to the members connected here.
    pub fn local_read(&self, conv: &Conversation, user: u64, seq: u64) {
        let frame = protocol::encode(&ServerFrame::Read {
            conv: conv.id.to_string(),
            user: user.to_string(),
            seq,
        });
        self.hub
            .deliver(&conv.member_ids(), None, &OutItem::Frame(frame));
    }

    /// `user` came online or went offline: to `contacts`.
    pub fn presence(&self, user: u64, online: bool, contacts: Vec<u64>) {
        self.local_presence(user, online, &contacts);
        self.bus.publish(BusEvent::Presence {
            user,
            online,
            to: contacts,
        });
    }

    fn local_presence(&self, user: u64, online: bool, contacts: &[u64]) {
        let frame = protocol::encode(&ServerFrame::Presence {
            user: user.to_string(),
            online,
        });
        self.hub.deliver(contacts, None, &OutItem::Frame(frame));
    }

    /// Delivers an event another node published on the bus to this node's connections.
    pub async fn from_bus(&self, ev: BusEvent) -> Result<(), MessengerError> {
        match ev {
            BusEvent::Message(m) => {
                let conv = self.messenger.state_for(&m).await?;
                self.local_message(&conv, &m);
            }
            BusEvent::Typing { conv, user } => {
                let conv = self.messenger.conversation(conv).await?;
                self.local_typing(&conv, user);
            }
            BusEvent::Read { conv, user, seq } => {
                let conv = self.messenger.conversation(conv).await?;
                self.local_read(&conv, user, seq);
            }
            BusEvent::Presence { user, online, to } => self.local_presence(user, online, &to),
        }
        Ok(())
    }
}
