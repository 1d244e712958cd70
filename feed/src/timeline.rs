//! One home timeline as a value: the capped, ordered list of fanned-out post ids with their
//! authors, and the floor below which it is no longer complete.
//!
//! Entries are kept oldest first in a ring buffer, so the common insert (a new post, newer than
//! everything) is a push at the back and trimming to the cap is a pop at the front.
//!
//! **The floor.** A timeline holds every post with id ≥ `floor` of every ordinary (fanned-out)
//! author its owner follows. Trimming raises the floor to the oldest entry kept; a rebuild that
//! read only the newest `k` posts of each followee raises it to the newest of their `k`-th posts.
//! Below the floor, pages are merged from the followees' own post lists, so the feed has no hard
//! end and no gap where a timeline was cut.

use std::collections::VecDeque;

/// A timeline entry: `(post id, author id)`.
pub type Entry = (u64, u64);

/// A home timeline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Oldest first, strictly increasing post ids.
    entries: VecDeque<Entry>,
    /// Complete for post ids ≥ floor.
    pub floor: u64,
}

impl Timeline {
    /// An empty timeline, complete for all ids.
    pub fn new() -> Self {
        Timeline::default()
    }

    /// A timeline from entries in any order (duplicates dropped), capped.
    pub fn from_entries(mut entries: Vec<Entry>, floor: u64, cap: usize) -> Self {
        entries.sort_unstable();
        entries.dedup_by_key(|e| e.0);
        let mut t = Timeline {
            entries: entries.into(),
            floor,
        };
        t.trim(cap);
        t
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether post `id` is an entry.
    pub fn contains(&self, id: u64) -> bool {
        self.entries.binary_search_by_key(&id, |e| e.0).is_ok()
    }

    /// Entries, oldest first.
    pub fn entries(&self) -> impl DoubleEndedIterator<Item = &Entry> + ExactSizeIterator {
        self.entries.iter()
    }

    /// Inserts a post (ignored if present or below the floor), then trims to `cap`. Returns
    /// whether the timeline changed.
    pub fn insert(&mut self, post: u64, author: u64, cap: usize) -> bool {
        if post < self.floor {
            return false;
        }
        match self.entries.back() {
            Some(&(last, _)) if last < post => self.entries.push_back((post, author)),
            None => self.entries.push_back((post, author)),
            Some(_) => match self.entries.binary_search_by_key(&post, |e| e.0) {
                Ok(_) => return false,
                Err(i) => self.entries.insert(i, (post, author)),
            },
        }
        self.trim(cap);
        true
    }

    /// Merges another timeline's entries (a rebuild finishing under live fan-out).
    pub fn merge(&mut self, other: &Timeline, cap: usize) {
        self.floor = self.floor.max(other.floor);
        let mut all: Vec<Entry> = self
            .entries
            .iter()
            .chain(other.entries.iter())
            .copied()
            .collect();
        all.retain(|e| e.0 >= self.floor);
        *self = Timeline::from_entries(all, self.floor, cap);
    }

    /// Drops the oldest entries past `cap` and raises the floor to the oldest kept.
    fn trim(&mut self, cap: usize) {
        if self.entries.len() > cap {
            let excess = self.entries.len() - cap;
            self.entries.drain(..excess);
            if let Some(&(oldest, _)) = self.entries.front() {
                self.floor = self.floor.max(oldest);
            }
        }
    }

    /// Removes every entry of `author`; returns how many.
    pub fn remove_author(&mut self, author: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|e| e.1 != author);
        before - self.entries.len()
    }

    /// Up to `limit` entries with id < `before` and ≥ `floor` (or all below `before` when
    /// `ignore_floor`), newest first.
    pub fn page(&self, before: Option<u64>, limit: usize, ignore_floor: bool) -> Vec<Entry> {
        let end = match before {
            Some(b) => self.entries.partition_point(|e| e.0 < b),
            None => self.entries.len(),
        };
        let floor = if ignore_floor { 0 } else { self.floor };
        self.entries
            .range(..end)
            .rev()
            .take_while(|e| e.0 >= floor)
            .take(limit)
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[Entry]) -> Vec<u64> {
        v.iter().map(|e| e.0).collect()
    }

    #[test]
    fn inserts_keep_order_and_skip_duplicates() {
        let mut t = Timeline::new();
        for p in [5, 9, 7, 9, 1] {
            t.insert(p, 100 + p, 10);
        }
        assert_eq!(ids(&t.page(None, 10, false)), vec![9, 7, 5, 1]);
        assert_eq!(t.len(), 4);
        assert_eq!(ids(&t.page(Some(7), 10, false)), vec![5, 1]);
        assert_eq!(ids(&t.page(Some(8), 1, false)), vec![7]);
    }

    #[test]
    fn the_cap_trims_the_oldest_and_raises_the_floor() {
        let mut t = Timeline::new();
        for p in 1..=10 {
            t.insert(p, 1, 4);
        }
        assert_eq!(ids(&t.page(None, 10, false)), vec![10, 9, 8, 7]);
        assert_eq!(t.floor, 7);
        assert!(
            !t.insert(3, 1, 4),
            "below the floor: the pull-merge serves it"
        );
        assert!(t.insert(11, 1, 4));
        assert_eq!(t.floor, 8);
    }

    #[test]
    fn remove_author_and_merge() {
        let mut t = Timeline::from_entries(vec![(3, 1), (1, 2), (2, 1)], 0, 10);
        assert_eq!(t.remove_author(1), 2);
        assert_eq!(ids(&t.page(None, 10, false)), vec![1]);
        let other = Timeline::from_entries(vec![(5, 3), (1, 2)], 1, 10);
        t.merge(&other, 10);
        assert_eq!(ids(&t.page(None, 10, false)), vec![5, 1]);
        assert_eq!(t.floor, 1);
    }

    #[test]
    fn pages_stop_at_the_floor_unless_told() {
        let t = Timeline::from_entries(vec![(1, 1), (5, 1), (9, 1)], 5, 10);
        assert_eq!(ids(&t.page(None, 10, false)), vec![9, 5]);
        assert_eq!(ids(&t.page(None, 10, true)), vec![9, 5, 1]);
    }
}
