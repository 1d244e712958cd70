//! Per-connection, per-conversation delivery order: the seam between history and live.
//!
//! A connection is registered with the hub *before* it reads history, so a message stored
//! while history is read arrives live as well; the cursor drops every message with a seq it
//! has already passed and holds the ones past a gap until the gap fills (every stored message
//! eventually passes through the hub on every node: from the sender, the in-region bus or the
//! change feed of replication). So a client sees each conversation's messages in seq order,
//! without gaps or duplicates from the seq it resumed at.

use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};

/// Messages held past a gap, per conversation, before the connection is closed as too slow.
pub const MAX_PENDING: usize = 4096;

/// The held part of a cursor overflowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow;

/// What one entry makes a connection write: nothing (an entry the user may not read, which
/// still moves the cursor), its frame, or its frame and one for this connection alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frames {
    /// The entry's frame.
    pub frame: Option<Bytes>,
    /// Written right after it.
    pub extra: Option<Bytes>,
}

impl Frames {
    /// One frame.
    pub fn one(frame: Bytes) -> Self {
        Frames {
            frame: Some(frame),
            extra: None,
        }
    }

    fn push_to(self, out: &mut Vec<Bytes>) {
        out.extend(self.frame);
        out.extend(self.extra);
    }
}

#[derive(Debug, Default)]
struct Cursor {
    /// Every seq up to this one was sent.
    last: u64,
    /// Entries past a gap.
    pending: BTreeMap<u64, Frames>,
}

/// The cursors of one connection.
#[derive(Debug, Default)]
pub struct Cursors {
    convs: HashMap<u64, Cursor>,
}

impl Cursors {
    /// Starts (or restarts) a conversation at `after`: what the client has.
    pub fn resume(&mut self, conv: u64, after: u64) {
        let c = self.convs.entry(conv).or_default();
        c.last = after;
        c.pending = c.pending.split_off(&(after + 1));
    }

    /// The last seq sent in `conv` (0 if none).
    pub fn last(&self, conv: u64) -> u64 {
        self.convs.get(&conv).map_or(0, |c| c.last)
    }

    /// Offers entry `seq` of `conv`; appends to `out` what can be sent now, in order. A
    /// conversation never resumed starts at its first live entry; `restart` moves the cursor
    /// up to `seq` (the user was just added: nothing before it is theirs).
    pub fn offer(
        &mut self,
        conv: u64,
        seq: u64,
        frames: Frames,
        restart: bool,
        out: &mut Vec<Bytes>,
    ) -> Result<(), Overflow> {
        let c = self.convs.entry(conv).or_insert_with(|| Cursor {
            last: seq.saturating_sub(1),
            pending: BTreeMap::new(),
        });
        if restart && c.last + 1 < seq {
            c.last = seq - 1;
            c.pending = c.pending.split_off(&seq);
        }
        if seq <= c.last {
            return Ok(());
        }
        if seq == c.last + 1 {
            frames.push_to(out);
            c.last = seq;
            while let Some(f) = c.pending.remove(&(c.last + 1)) {
                f.push_to(out);
                c.last += 1;
            }
            return Ok(());
        }
        c.pending.insert(seq, frames);
        if c.pending.len() > MAX_PENDING {
            return Err(Overflow);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: u64) -> Bytes {
        Bytes::from(s.to_string())
    }

    fn f(s: u64) -> Frames {
        Frames::one(b(s))
    }

    #[test]
    fn in_order_without_duplicates_across_the_seam() {
        let mut c = Cursors::default();
        let mut out = Vec::new();
        c.resume(1, 2);
        // Live 4 arrives while history is read: held.
        c.offer(1, 4, f(4), false, &mut out).unwrap();
        assert!(out.is_empty());
        // History 3, 4, then live 3 again and 5.
        c.offer(1, 3, f(3), false, &mut out).unwrap();
        c.offer(1, 4, f(4), false, &mut out).unwrap();
        c.offer(1, 3, f(3), false, &mut out).unwrap();
        c.offer(1, 5, f(5), false, &mut out).unwrap();
        assert_eq!(out, vec![b(3), b(4), b(5)]);
        assert_eq!(c.last(1), 5);
        // A conversation never resumed starts at its first message.
        out.clear();
        c.offer(2, 10, f(10), false, &mut out).unwrap();
        c.offer(2, 9, f(9), false, &mut out).unwrap();
        assert_eq!(out, vec![b(10)]);
        // An unreadable entry moves the cursor without a frame; a restart skips a gap.
        out.clear();
        c.offer(2, 11, Frames::default(), false, &mut out).unwrap();
        c.offer(2, 20, f(20), true, &mut out).unwrap();
        c.offer(2, 21, f(21), false, &mut out).unwrap();
        assert_eq!(out, vec![b(20), b(21)]);
    }
}
