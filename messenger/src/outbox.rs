//! A connection's send queue, bounded in bytes (not in items: one queue of 4 KiB messages and
//! one of pings should cost the same budget). When a push would exceed the budget the queue is
//! marked overflowed and refuses everything after: the connection closes with 4008 and the
//! client resumes from its last seq.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use tokio::sync::Notify;

/// One queued frame.
#[derive(Clone, Debug)]
pub enum OutItem {
    /// A conversation message: ordered and deduplicated by the connection's cursor.
    Message {
        /// Conversation.
        conv: u64,
        /// Seq.
        seq: u64,
        /// The encoded entry's frame (shared by every recipient).
        frame: Bytes,
        /// A frame for this recipient alone, written right after `frame` (`removed`).
        extra: Option<Bytes>,
        /// The recipient has nothing before this entry (they were just added): the
        /// connection's cursor moves up to it instead of waiting for what precedes it.
        restart: bool,
    },
    /// Any other frame (ack, typing, read, presence).
    Frame(Bytes),
}

impl OutItem {
    fn len(&self) -> usize {
        match self {
            OutItem::Message { frame, extra, .. } => {
                frame.len() + extra.as_ref().map_or(0, Bytes::len)
            }
            OutItem::Frame(frame) => frame.len(),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    items: VecDeque<OutItem>,
    bytes: usize,
    overflowed: bool,
}

/// The queue. The lock is held only to push or take, never across an `.await`.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    notify: Notify,
    cap: usize,
}

impl Outbox {
    /// An empty queue of at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Outbox {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            cap,
        }
    }

    /// Queues `item`; `false` if it did not fit (the queue is now overflowed) or had already
    /// overflowed.
    pub fn push(&self, item: OutItem) -> bool {
        let mut s = self.state.lock();
        if s.overflowed {
            return false;
        }
        if s.bytes + item.len() > self.cap {
            s.overflowed = true;
            s.items.clear();
            s.bytes = 0;
            drop(s);
            self.notify.notify_one();
            return false;
        }
        s.bytes += item.len();
        s.items.push_back(item);
        drop(s);
        self.notify.notify_one();
        true
    }

    /// Moves everything queued into `out`; `true` if the queue overflowed.
    pub fn take(&self, out: &mut Vec<OutItem>) -> bool {
        let mut s = self.state.lock();
        out.extend(s.items.drain(..));
        s.bytes = 0;
        if s.items.capacity() > 64 {
            s.items.shrink_to(16);
        }
        s.overflowed
    }

    /// Whether the queue overflowed.
    pub fn overflowed(&self) -> bool {
        self.state.lock().overflowed
    }

    /// Wakes the connection's task without queuing anything (to make it look at the hub's
    /// state, e.g. a shutdown).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    /// Waits until something is pushed (or the queue overflows).
    pub async fn ready(&self) {
        self.notify.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_in_bytes() {
        let o = Outbox::new(10);
        assert!(o.push(OutItem::Frame(Bytes::from_static(b"12345"))));
        assert!(o.push(OutItem::Frame(Bytes::from_static(b"12345"))));
        let mut out = Vec::new();
        assert!(!o.take(&mut out));
        assert_eq!(out.len(), 2);
        assert!(o.push(OutItem::Frame(Bytes::from_static(b"1234567890"))));
        assert!(!o.push(OutItem::Frame(Bytes::from_static(b"1"))));
        assert!(o.overflowed());
        assert!(!o.push(OutItem::Frame(Bytes::from_static(b"1"))));
        out.clear();
        assert!(o.take(&mut out));
        assert!(out.is_empty());
    }
}
