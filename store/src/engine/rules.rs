//! The engine-independent write rules: argument checks, dots, the new record a local
//! mutation, a compare-and-swap or a remote delta makes of the stored one, and how a peer's
//! deltas are counted (admitted, merged, refused).
//!
//! Pure functions of (stored record, request): the generic [`super::Engine`] calls them under its
//! key lock, the ScyllaDB engine inside its conditional-write loop. The CRDT logic itself lives
//! in [`crate::record`]; this is the one place that decides how a request maps onto it.

use crate::contract::{ApplyReport, CasOutcome, Delta, Limits, Mutation, ScanRequest};
use crate::error::{Result, StoreError};
use crate::hlc::{Hlc, HlcClock};
use crate::key::Key;
use crate::node::NodeId;
use crate::record::{Kind, Record, Versioned};
use crate::version::{Dot, VersionVector};
use bytes::Bytes;

/// Refuses empty and oversized keys.
pub(crate) fn check_key(limits: &Limits, key: &Key) -> Result<()> {
    if key.is_empty() {
        return Err(StoreError::EmptyKey);
    }
    if key.len() > limits.max_key {
        return Err(StoreError::KeyTooLarge {
            len: key.len(),
            max: limits.max_key,
        });
    }
    Ok(())
}

/// Refuses oversized values.
pub(crate) fn check_value(limits: &Limits, len: usize) -> Result<()> {
    if len > limits.max_value {
        return Err(StoreError::ValueTooLarge {
            len,
            max: limits.max_value,
        });
    }
    Ok(())
}

/// Checks a local mutation's key and value.
pub(crate) fn check_mutation(limits: &Limits, key: &Key, m: &Mutation) -> Result<()> {
    check_key(limits, key)?;
    if let Mutation::Put(v) | Mutation::Add(v) = m {
        check_value(limits, v.len())?;
    }
    Ok(())
}

/// Checks a CAS request's key and value.
pub(crate) fn check_cas(limits: &Limits, key: &Key, new: Option<&Bytes>) -> Result<()> {
    check_key(limits, key)?;
    if let Some(v) = new {
        check_value(limits, v.len())?;
    }
    Ok(())
}

/// Checks a delta from a peer: the same limits as local writes, and never a node-local key.
pub(crate) fn check_remote(limits: &Limits, d: &Delta) -> Result<()> {
    check_key(limits, &d.key)?;
    if d.key.is_local() {
        return Err(StoreError::InvalidArgument(
            "node-local keys are never replicated",
        ));
    }
    let largest = d.record.visible_sizes().max().unwrap_or(0);
    check_value(limits, largest)
}

/// What a keyed write did: the record before it and the one it wrote (`None`: nothing written).
pub(crate) struct Written {
    pub(crate) old: Option<Record>,
    pub(crate) new: Option<Record>,
}

impl Written {
    /// A local mutation's answer: the record it wrote.
    pub(crate) fn mutated(self) -> Result<Record> {
        self.new
            .ok_or(StoreError::InvalidArgument("mutation produced no record"))
    }

    /// A compare-and-swap's answer: the value written, or what is stored instead.
    pub(crate) fn cas_outcome(self) -> CasOutcome {
        match self.new {
            Some(r) => CasOutcome::Applied(r.visible()),
            None => CasOutcome::Conflict(self.old.map(|r| r.visible())),
        }
    }
}

/// Whether a peer's delta `d` may be merged here ([`check_remote`]); one that may not is logged
/// and counted refused in `report`.
pub(crate) fn admit_remote(limits: &Limits, d: &Delta, report: &mut ApplyReport) -> bool {
    match check_remote(limits, d) {
        Ok(()) => true,
        Err(e) => {
            refuse_remote(d, &e, report);
            false
        }
    }
}

/// Counts a peer's delta `d` in `report` once its merge was written: `Ok(true)` if it changed
/// the record, `Ok(false)` if it was already known; one of another kind than the key holds is
/// refused (logged); another error is the caller's.
pub(crate) fn count_merge(d: &Delta, merged: Result<bool>, report: &mut ApplyReport) -> Result<()> {
    match merged {
        Ok(true) => report.changed += 1,
        Ok(false) => report.unchanged += 1,
        Err(e @ StoreError::KindMismatch { .. }) => refuse_remote(d, &e, report),
        Err(e) => return Err(e),
    }
    Ok(())
}

fn refuse_remote(d: &Delta, e: &StoreError, report: &mut ApplyReport) {
    tracing::warn!(key = ?d.key, error = %e, "refusing a remote delta");
    report.rejected += 1;
}

/// Checks a scan request's limit and cursor.
pub(crate) fn check_scan(limits: &Limits, req: &ScanRequest) -> Result<()> {
    if req.limit == 0 || req.limit > limits.max_scan {
        return Err(StoreError::InvalidArgument("scan limit out of range"));
    }
    if let Some(a) = &req.after
        && !a.starts_with(req.prefix.as_bytes())
    {
        return Err(StoreError::InvalidArgument(
            "scan cursor is not under the prefix",
        ));
    }
    Ok(())
}

/// What a scan returns for one stored record: nothing for counters (not listed) and, unless
/// asked for, tombstones.
pub(crate) fn scan_item(r: &Record, include_tombstones: bool) -> Option<Versioned<Bytes>> {
    if r.kind() == Kind::Counter || (!include_tombstones && r.is_tombstone()) {
        return None;
    }
    Some(r.visible())
}

/// What `get` answers for a stored record: counters are not registers.
pub(crate) fn visible(r: Option<Record>) -> Result<Option<Versioned<Bytes>>> {
    match r {
        Some(r) if r.kind() == Kind::Counter => Err(StoreError::KindMismatch {
            expected: Kind::Register,
            found: Kind::Counter,
        }),
        r => Ok(r.map(|r| r.visible())),
    }
}

/// Applies mutation `m`, stamped `dot`, to record `r`.
pub(crate) fn write(
    r: &mut Record,
    dot: Dot,
    m: Mutation,
    ctx: Option<&VersionVector>,
) -> Result<()> {
    match m {
        Mutation::Put(v) => r.write_register(dot, Some(v), ctx)?,
        Mutation::Delete => r.write_register(dot, None, ctx)?,
        Mutation::Add(p) => r.add_element(dot, p, ctx)?,
        Mutation::Remove => r.remove_element(dot, ctx)?,
        Mutation::Count(d) => r.add_count(dot, d)?,
    }
    Ok(())
}

/// Stamps this node's local writes.
#[derive(Debug, Clone)]
pub(crate) struct Stamper {
    pub(crate) node: NodeId,
    pub(crate) clock: std::sync::Arc<HlcClock>,
}

impl Stamper {
    /// A dot for a local write to a record whose latest stamp is `floor`: strictly after every
    /// write the record has seen, whatever this node's wall clock says.
    pub(crate) fn dot(&self, floor: Hlc) -> Dot {
        let mut hlc = self.clock.now();
        if hlc <= floor {
            self.clock.observe(floor);
            hlc = self.clock.now().max(Hlc(floor.0 + 1));
        }
        Dot {
            hlc,
            node: self.node,
        }
    }

    /// The record after a local mutation of `old`.
    pub(crate) fn mutated(
        &self,
        old: Option<&Record>,
        m: Mutation,
        ctx: Option<&VersionVector>,
    ) -> Result<Record> {
        let mut r = old.cloned().unwrap_or_else(|| Record::empty(m.kind()));
        let dot = self.dot(r.max_hlc());
        write(&mut r, dot, m, ctx)?;
        Ok(r)
    }

    /// The record after a compare-and-swap of `old`: `None` when the expected version does not
    /// match (nothing changes).
    pub(crate) fn swapped(
        &self,
        old: Option<&Record>,
        expected: Option<&VersionVector>,
        new: Option<Bytes>,
    ) -> Result<Option<Record>> {
        if let Some(r) = old
            && r.kind() != Kind::Register
        {
            return Err(StoreError::KindMismatch {
                expected: Kind::Register,
                found: r.kind(),
            });
        }
        let matches = match (old, expected) {
            (None, None) => true,
            (Some(r), Some(e)) => r.context() == e,
            _ => false,
        };
        if !matches {
            return Ok(None);
        }
        let mut r = old
            .cloned()
            .unwrap_or_else(|| Record::empty(Kind::Register));
        let dot = self.dot(r.max_hlc());
        r.write_register(dot, new, None)?;
        Ok(Some(r))
    }
}

/// The record after merging a peer's `remote` state into `old`: `None` when it adds nothing.
pub(crate) fn merged(old: Option<&Record>, remote: &Record) -> Result<Option<Record>> {
    match old {
        None => Ok(Some(remote.clone())),
        Some(o) => {
            let mut m = o.clone();
            Ok(m.merge(remote)?.then_some(m))
        }
    }
}
