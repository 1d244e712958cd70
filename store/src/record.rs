//! The replicated state of one key, and how replicas of it merge.
//!
//! A [`Record`] is a small state-based CRDT built on a *dot kernel* (Almeida et al., "Delta State
//! Replicated Data Types"): a causal context ([`VersionVector`]) plus the live entries, each tagged
//! with the [`Dot`] of the write that made it. Two replicas join by keeping an entry when both have
//! it, or when one has it and the other has not seen its dot; contexts join pointwise. That join is
//! commutative, associative and idempotent, so replicas that receive the same records in any order,
//! any number of times, end equal — and, because every map is ordered, byte-identical once encoded.
//!
//! The [`Kind`] of a record picks how the live entries are read:
//! - [`Kind::Register`]: last writer wins by `(hlc, node)`; a delete is an entry without a value,
//!   so a later write beats an earlier delete and a later delete beats an earlier write.
//! - [`Kind::Set`]: one element of an add-wins set. A remove drops only the adds it has seen, so an
//!   add concurrent with a remove survives it.
//! - [`Kind::Counter`]: a PN-counter, one (increments, decrements) pair per node, joined by maximum.

use crate::error::StoreError;
use crate::hlc::Hlc;
use crate::node::NodeId;
use crate::version::{Dot, VersionVector};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// How concurrent writes to a key resolve; fixed per keyspace by the code that writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// Last-writer-wins register (profiles, posts).
    Register,
    /// One element of an add-wins set (follows, memberships).
    Set,
    /// A convergent counter (follower counts).
    Counter,
}

/// Increments and decrements one node contributed to a counter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PnCount {
    /// Sum of positive deltas.
    pub inc: u64,
    /// Sum of the magnitudes of negative deltas.
    pub dec: u64,
}

/// The replicated state of one key. See the module documentation for the merge rules.
///
/// Entries and counts are vectors sorted by dot and by node (a key has few of each); decoding
/// refuses unsorted or duplicated ones so every record has exactly one encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RecordRepr")]
pub struct Record {
    kind: Kind,
    context: VersionVector,
    entries: Vec<(Dot, Option<Bytes>)>,
    counts: Vec<(NodeId, PnCount)>,
}

/// The wire/disk shape of a [`Record`], checked before it becomes one.
#[derive(Deserialize)]
struct RecordRepr {
    kind: Kind,
    context: VersionVector,
    entries: Vec<(Dot, Option<Bytes>)>,
    counts: Vec<(NodeId, PnCount)>,
}

impl TryFrom<RecordRepr> for Record {
    type Error = &'static str;
    fn try_from(r: RecordRepr) -> Result<Self, Self::Error> {
        if !r.entries.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err("record entries are not sorted by dot");
        }
        if !r.counts.windows(2).all(|w| w[0].0 < w[1].0) {
            return Err("record counts are not sorted by node");
        }
        if r.kind != Kind::Counter && !r.counts.is_empty() {
            return Err("counts in a record that is not a counter");
        }
        if r.kind == Kind::Counter && !r.entries.is_empty() {
            return Err("entries in a counter record");
        }
        Ok(Record {
            kind: r.kind,
            context: r.context,
            entries: r.entries,
            counts: r.counts,
        })
    }
}

/// A value as a reader sees it, with the version needed to overwrite it or compare-and-swap it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The visible value; `None` for a deleted key (a tombstone).
    pub value: Option<T>,
    /// The causal context: pass it back to `put`/`delete`/`cas`.
    pub version: VersionVector,
    /// The stamp of the visible write (of the latest write for counters and tombstones).
    pub hlc: Hlc,
    /// How many concurrent writes are live (1 normally; more after a concurrent conflict that no
    /// later write has overwritten yet; 0 for an empty set element).
    pub siblings: usize,
}

impl<T> Versioned<T> {
    /// Maps the value, keeping the version.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Versioned<U> {
        Versioned {
            value: self.value.map(f),
            version: self.version,
            hlc: self.hlc,
            siblings: self.siblings,
        }
    }
}

impl Record {
    /// An empty record of a kind: nothing written, nothing seen.
    pub fn empty(kind: Kind) -> Self {
        Record {
            kind,
            context: VersionVector::new(),
            entries: Vec::new(),
            counts: Vec::new(),
        }
    }

    /// The record's kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The causal context: every write this record has seen.
    pub fn context(&self) -> &VersionVector {
        &self.context
    }

    /// The latest stamp this record has seen.
    pub fn max_hlc(&self) -> Hlc {
        self.context.max_hlc()
    }

    fn has_entry(&self, dot: &Dot) -> bool {
        self.entries.binary_search_by(|(d, _)| d.cmp(dot)).is_ok()
    }

    /// Adds a live entry, keeping the order (a new local dot is normally the largest).
    fn push_entry(&mut self, dot: Dot, value: Option<Bytes>) {
        match self.entries.binary_search_by(|(d, _)| d.cmp(&dot)) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (dot, value)),
        }
    }

    fn count_mut(&mut self, node: NodeId) -> &mut PnCount {
        let i = match self.counts.binary_search_by_key(&node, |(n, _)| *n) {
            Ok(i) => i,
            Err(i) => {
                self.counts.insert(i, (node, PnCount::default()));
                i
            }
        };
        &mut self.counts[i].1
    }

    fn check_kind(&self, kind: Kind) -> Result<(), StoreError> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(StoreError::KindMismatch {
                expected: kind,
                found: self.kind,
            })
        }
    }

    /// Drops the live entries the writer had seen (`ctx`, or everything here when `None`) and
    /// joins `ctx` into the context: a client that read a newer version elsewhere overwrote it.
    fn supersede(&mut self, ctx: Option<&VersionVector>) {
        match ctx {
            None => self.entries.clear(),
            Some(ctx) => {
                self.entries.retain(|(d, _)| !ctx.contains(d));
                self.context.join(ctx);
            }
        }
    }

    /// A local register write (`Some`) or delete (`None`) with dot `dot`.
    pub fn write_register(
        &mut self,
        dot: Dot,
        value: Option<Bytes>,
        ctx: Option<&VersionVector>,
    ) -> Result<(), StoreError> {
        self.check_kind(Kind::Register)?;
        self.supersede(ctx);
        self.push_entry(dot, value);
        self.context.insert(dot);
        Ok(())
    }

    /// A local add of a set element, carrying an optional payload.
    pub fn add_element(
        &mut self,
        dot: Dot,
        payload: Bytes,
        ctx: Option<&VersionVector>,
    ) -> Result<(), StoreError> {
        self.check_kind(Kind::Set)?;
        self.supersede(ctx);
        self.push_entry(dot, Some(payload));
        self.context.insert(dot);
        Ok(())
    }

    /// A local remove of a set element: drops the adds seen, leaves concurrent adds alone. The
    /// dot is recorded in the context only, stamping when the remove happened.
    pub fn remove_element(
        &mut self,
        dot: Dot,
        ctx: Option<&VersionVector>,
    ) -> Result<(), StoreError> {
        self.check_kind(Kind::Set)?;
        self.supersede(ctx);
        self.context.insert(dot);
        Ok(())
    }

    /// A local counter change by `delta`.
    pub fn add_count(&mut self, dot: Dot, delta: i64) -> Result<(), StoreError> {
        self.check_kind(Kind::Counter)?;
        let c = self.count_mut(dot.node);
        if delta >= 0 {
            c.inc = c.inc.saturating_add(delta.unsigned_abs());
        } else {
            c.dec = c.dec.saturating_add(delta.unsigned_abs());
        }
        self.context.insert(dot);
        Ok(())
    }

    /// Joins `other` into `self`. Returns whether `self` changed. Commutative, associative and
    /// idempotent (property-tested in `tests/merge_props.rs`).
    pub fn merge(&mut self, other: &Record) -> Result<bool, StoreError> {
        self.check_kind(other.kind)?;
        let before_len = self.entries.len();
        let mut changed = false;
        // Entries only there arrive unless this side has seen (and so removed) them; decided
        // against this side's entries and context as they were before the join.
        let arriving: Vec<(Dot, Option<Bytes>)> = other
            .entries
            .iter()
            .filter(|(d, _)| !self.has_entry(d) && !self.context.contains(d))
            .cloned()
            .collect();
        // Entries only here survive unless the other side has seen (and so removed) them.
        self.entries
            .retain(|(d, _)| other.has_entry(d) || !other.context.contains(d));
        changed |= self.entries.len() != before_len;
        if !arriving.is_empty() {
            changed = true;
            for (d, v) in arriving {
                self.push_entry(d, v);
            }
        }
        if !self.context.dominates(&other.context) {
            self.context.join(&other.context);
            changed = true;
        }
        for (node, theirs) in &other.counts {
            let mine = self.count_mut(*node);
            if theirs.inc > mine.inc {
                mine.inc = theirs.inc;
                changed = true;
            }
            if theirs.dec > mine.dec {
                mine.dec = theirs.dec;
                changed = true;
            }
        }
        Ok(changed)
    }

    /// Whether nothing is visible: a deleted register, an empty set element. Counters never are.
    pub fn is_tombstone(&self) -> bool {
        match self.kind {
            Kind::Register => self.entries.last().is_none_or(|(_, v)| v.is_none()),
            Kind::Set => self.entries.is_empty(),
            Kind::Counter => false,
        }
    }

    /// The visible bytes of a register or set element.
    pub fn visible(&self) -> Versioned<Bytes> {
        let last = self.entries.last();
        Versioned {
            value: last.and_then(|(_, v)| v.clone()),
            version: self.context.clone(),
            hlc: last.map_or_else(|| self.max_hlc(), |(d, _)| d.hlc),
            siblings: self.entries.len(),
        }
    }

    /// Lengths of the values held in live entries (for size limits on remote records).
    pub fn visible_sizes(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries
            .iter()
            .map(|(_, v)| v.as_ref().map_or(0, Bytes::len))
    }

    /// The value of a counter: increments minus decrements over all nodes.
    pub fn count(&self) -> i64 {
        let (inc, dec) = self
            .counts
            .iter()
            .map(|(_, c)| c)
            .fold((0u64, 0u64), |(i, d), c| {
                (i.saturating_add(c.inc), d.saturating_add(c.dec))
            });
        if inc >= dec {
            i64::try_from(inc - dec).unwrap_or(i64::MAX)
        } else {
            i64::try_from(dec - inc).map_or(i64::MIN, |v| -v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::RegionId;

    fn dot(node: u64, t: u64) -> Dot {
        Dot {
            hlc: Hlc(t),
            node: NodeId::new(RegionId(7), node),
        }
    }

    fn val(s: &str) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn register_last_writer_wins_between_concurrent_writes() {
        let mut a = Record::empty(Kind::Register);
        a.write_register(dot(1, 10), val("a"), None).unwrap();
        let mut b = Record::empty(Kind::Register);
        b.write_register(dot(2, 11), val("b"), None).unwrap();
        let mut ab = a.clone();
        ab.merge(&b).unwrap();
        let mut ba = b.clone();
        ba.merge(&a).unwrap();
        assert_eq!(ab, ba);
        assert_eq!(ab.visible().value, val("b"));
        assert_eq!(ab.visible().siblings, 2);
        // A later write that saw both collapses the siblings.
        ab.write_register(dot(1, 12), val("c"), None).unwrap();
        assert_eq!(ab.visible().siblings, 1);
        assert_eq!(ab.visible().value, val("c"));
    }

    #[test]
    fn register_delete_then_later_write() {
        let mut r = Record::empty(Kind::Register);
        r.write_register(dot(1, 1), val("x"), None).unwrap();
        r.write_register(dot(1, 2), None, None).unwrap();
        assert!(r.is_tombstone());
        r.write_register(dot(1, 3), val("y"), None).unwrap();
        assert!(!r.is_tombstone());
    }

    #[test]
    fn set_add_wins_over_concurrent_remove() {
        let mut base = Record::empty(Kind::Set);
        base.add_element(dot(1, 1), Bytes::new(), None).unwrap();
        let mut remover = base.clone();
        remover.remove_element(dot(1, 2), None).unwrap();
        assert!(remover.is_tombstone());
        let mut adder = base.clone();
        adder
            .add_element(dot(2, 2), Bytes::new(), Some(&VersionVector::new()))
            .unwrap();
        let mut m = remover.clone();
        m.merge(&adder).unwrap();
        assert!(!m.is_tombstone(), "the concurrent add survives");
        // A remove that has seen the add wins.
        m.remove_element(dot(1, 3), None).unwrap();
        let mut back = adder.clone();
        back.merge(&m).unwrap();
        assert!(back.is_tombstone());
    }

    #[test]
    fn counter_sums_nodes_and_merges_by_max() {
        let mut a = Record::empty(Kind::Counter);
        a.add_count(dot(1, 1), 5).unwrap();
        let mut b = Record::empty(Kind::Counter);
        b.add_count(dot(2, 1), -2).unwrap();
        a.merge(&b).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a.count(), 3);
    }

    #[test]
    fn kinds_do_not_mix() {
        let mut a = Record::empty(Kind::Counter);
        assert!(matches!(
            a.write_register(dot(1, 1), None, None),
            Err(StoreError::KindMismatch { .. })
        ));
        assert!(a.merge(&Record::empty(Kind::Set)).is_err());
    }

    #[test]
    fn merge_reports_no_change_for_duplicates() {
        let mut a = Record::empty(Kind::Register);
        a.write_register(dot(1, 1), val("x"), None).unwrap();
        let copy = a.clone();
        assert!(!a.merge(&copy).unwrap());
    }
}
