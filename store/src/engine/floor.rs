//! Where the tombstone index's entries begin: a stamp kept in memory below which no entry is
//! stored, so a collection seeks past the entries it consumed instead of stepping over them.
//!
//! An LSM tree (fjall) keeps a removed key as a deletion marker until a compaction drops it, so
//! an index consumed from its head and read from its head again steps over every entry consumed
//! since the last compaction: a pass would cost the recent deletes, not the due ones (the reaper
//! benchmark, `gossip/benches/reaper.rs`, embedded engine: a pass of 100 due went 0.7 → 2.0 ms
//! as 4 000 consumed entries piled up, and stays at 0.5 ms with the floor). A collection raises
//! the floor to the last stamp it consumed, unless an entry below its horizon was written while
//! it read (a count of such writes tells); such a write lowers the floor itself. At open the
//! floor is 0: the first read after a restart starts at the index's head.

use crate::hlc::Hlc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// The tombstone index's floor (see the module's doc).
#[derive(Debug, Default)]
pub(crate) struct Floor {
    /// No entry is stored below this stamp (but one being written: see [`Floor::written`]).
    floor: AtomicU64,
    /// The highest horizon a collection has read up to: a write below it may be behind a read.
    target: AtomicU64,
    /// Entries written below `target` so far.
    behind: AtomicU64,
}

impl Floor {
    /// Before a collection up to `horizon`: where it reads from (hand it to
    /// [`Floor::reached`]).
    pub(crate) fn begin(&self, horizon: Hlc) -> Begun {
        self.target.fetch_max(horizon.0, SeqCst);
        let behind = self.behind.load(SeqCst);
        Begun {
            from: Hlc(self.floor.load(SeqCst)),
            behind,
        }
    }

    /// The stamp to read from, for a read that consumes nothing.
    pub(crate) fn get(&self) -> Hlc {
        Hlc(self.floor.load(SeqCst))
    }

    /// After an entry at `hlc` is committed (a write's, or the backfill's).
    pub(crate) fn written(&self, hlc: Hlc) {
        if hlc.0 < self.target.load(SeqCst) {
            self.behind.fetch_add(1, SeqCst);
            self.floor.fetch_min(hlc.0, SeqCst);
        }
    }

    /// After a collection `begun` consumed every entry below `to`: raises the floor to `to`,
    /// unless a write below a horizon came meanwhile (it may be behind the read; the floor then
    /// stays, or is already lower).
    pub(crate) fn reached(&self, begun: Begun, to: Hlc) {
        if to > begun.from && self.behind.load(SeqCst) == begun.behind {
            let _ = self
                .floor
                .compare_exchange(begun.from.0, to.0, SeqCst, SeqCst);
        }
    }
}

/// Where a collection began ([`Floor::begin`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Begun {
    /// The stamp it reads from.
    pub(crate) from: Hlc,
    /// [`Floor`]'s count of writes below a horizon then.
    behind: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_behind_a_read_keeps_the_floor_below_it() {
        let f = Floor::default();
        let from = f.begin(Hlc(100));
        assert_eq!(from.from, Hlc(0));
        // Committed below the horizon while the read went on: the floor may not pass it.
        f.written(Hlc(50));
        f.reached(from, Hlc(100));
        assert_eq!(f.get(), Hlc(0));
        let from = f.begin(Hlc(100));
        f.reached(from, Hlc(100));
        assert_eq!(f.get(), Hlc(100));
        // After the floor rose, an old stamp lowers it again; a new one leaves it.
        f.written(Hlc(200));
        assert_eq!(f.get(), Hlc(100));
        f.written(Hlc(70));
        assert_eq!(f.get(), Hlc(70));
    }
}
