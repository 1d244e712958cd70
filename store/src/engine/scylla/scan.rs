//! Ordered prefix scans over CQL partitions (see [`super::layout`]).
//!
//! A prefix that fixes its partition (one entity's keys: a user's follows, a post's likes) is a
//! single-partition range read, `LIMIT`ed to the page. A shorter prefix walks the namespace's
//! partitions in order from `kv_parts` and range-reads each: correct and ordered, but one round
//! trip per non-empty partition, so the application keeps such scans to maintenance paths.

use super::cql::{bad_rows, retry};
use super::{ScyllaEngine, layout};
use crate::codec::decode_record;
use crate::contract::{ScanPage, ScanRequest};
use crate::engine::backend::prefix_end;
use crate::engine::rules;
use crate::error::Result;
use crate::key::Key;
use bytes::Bytes;
use scylla::response::PagingState;
use std::ops::{Bound, ControlFlow};

/// Partitions fetched from `kv_parts` per request.
const PARTS_PAGE: i32 = 64;

/// The state of one scan.
struct Scan<'a> {
    e: &'a ScyllaEngine,
    req: &'a ScanRequest,
    /// Exclusive upper bound of keys (and partitions) under the prefix.
    end: Bytes,
    items: Vec<(Key, crate::record::Versioned<Bytes>)>,
    cursor: Option<Bytes>,
    budget: usize,
}

enum Step {
    /// The partition is exhausted; go on with the next one.
    Next,
    /// The page is complete.
    Done,
}

pub(super) async fn scan(e: &ScyllaEngine, req: &ScanRequest) -> Result<ScanPage> {
    let prefix = req.prefix.as_bytes();
    let end = match prefix_end(prefix) {
        Bound::Excluded(b) => b,
        // Every key is at most max_key bytes: this is above all of them.
        _ => Bytes::from(vec![0xff; e.limits.max_key + 1]),
    };
    let mut s = Scan {
        e,
        req,
        end,
        items: Vec::with_capacity(req.limit),
        cursor: req.after.as_ref().map(|k| k.0.clone()),
        budget: (req.limit * 4).max(256),
    };
    if let Some(part) = layout::fixed_partition(prefix) {
        let part = Bytes::copy_from_slice(part);
        if let Step::Done = s.partition(&part).await? {
            return Ok(s.page());
        }
        return Ok(s.finished());
    }
    // The cursor's partition first (resuming inside it), then the partitions after it.
    let mut from: Option<Bytes> = None;
    if let Some(c) = &s.cursor {
        let part = Bytes::copy_from_slice(layout::partition(c));
        if let Step::Done = s.partition(&part).await? {
            return Ok(s.page());
        }
        from = Some(part);
    }
    let namespaces = match layout::fixed_namespace(prefix) {
        Some(ns) => vec![Bytes::copy_from_slice(ns)],
        None => s.namespaces().await?,
    };
    for ns in namespaces {
        // Skip namespaces wholly before (after, in reverse) the cursor's partition.
        if let Some(f) = &from {
            let ns_end = match prefix_end(&ns) {
                Bound::Excluded(b) => b,
                _ => s.end.clone(),
            };
            let skip = if req.reverse {
                ns.as_ref() > f.as_ref()
            } else {
                ns_end.as_ref() <= f.as_ref()
            };
            if skip {
                continue;
            }
        }
        if let Step::Done = s.walk(&ns, from.clone()).await? {
            return Ok(s.page());
        }
    }
    Ok(s.finished())
}

impl Scan<'_> {
    fn page(self) -> ScanPage {
        ScanPage {
            items: self.items,
            next: self.cursor.map(Key),
        }
    }

    fn finished(self) -> ScanPage {
        ScanPage {
            items: self.items,
            next: None,
        }
    }

    /// Every namespace starting with the prefix, in scan order (a scan of partition keys:
    /// only for prefixes shorter than a keyspace name).
    async fn namespaces(&self) -> Result<Vec<Bytes>> {
        let mut out = Vec::new();
        let mut paging = PagingState::start();
        loop {
            let (res, next) = retry("listing namespaces", || {
                self.e
                    .session
                    .execute_single_page(&self.e.st.all_namespaces, (), paging.clone())
            })
            .await?;
            let rows = res
                .into_rows_result()
                .map_err(|e| bad_rows("kv_parts", e))?;
            for row in rows
                .rows::<(Vec<u8>,)>()
                .map_err(|e| bad_rows("kv_parts", e))?
            {
                let (ns,) = row.map_err(|e| bad_rows("kv_parts", e))?;
                if ns.starts_with(self.req.prefix.as_bytes()) {
                    out.push(Bytes::from(ns));
                }
            }
            match next.into_paging_control_flow() {
                ControlFlow::Break(()) => break,
                ControlFlow::Continue(p) => paging = p,
            }
        }
        out.sort();
        if self.req.reverse {
            out.reverse();
        }
        Ok(out)
    }

    /// Scans the partitions of `ns` under the prefix, in order, strictly after (before, in
    /// reverse) `from`.
    async fn walk(&mut self, ns: &Bytes, mut from: Option<Bytes>) -> Result<Step> {
        let prefix = self.req.prefix.0.clone();
        loop {
            let st = &self.e.st;
            let (stmt, lo, hi) = match (&from, self.req.reverse) {
                (None, false) => (&st.parts_from_asc, prefix.clone(), self.end.clone()),
                (Some(f), false) => (&st.parts_after_asc, f.clone(), self.end.clone()),
                (None, true) => (&st.parts_from_desc, prefix.clone(), self.end.clone()),
                (Some(f), true) => (&st.parts_from_desc, prefix.clone(), f.clone()),
            };
            let res = retry("listing partitions", || {
                self.e
                    .session
                    .execute_unpaged(stmt, (ns.as_ref(), lo.as_ref(), hi.as_ref(), PARTS_PAGE))
            })
            .await?;
            let parts: Vec<Bytes> = res
                .into_rows_result()
                .map_err(|e| bad_rows("kv_parts", e))?
                .rows::<(Vec<u8>,)>()
                .map_err(|e| bad_rows("kv_parts", e))?
                .map(|r| r.map(|(p,)| Bytes::from(p)))
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| bad_rows("kv_parts", e))?;
            let short = parts.len() < PARTS_PAGE as usize;
            for p in parts {
                if let Step::Done = self.partition(&p).await? {
                    return Ok(Step::Done);
                }
                from = Some(p);
            }
            if short {
                return Ok(Step::Next);
            }
        }
    }

    /// Range-reads one partition from the cursor on, until the page or the budget is full.
    async fn partition(&mut self, part: &Bytes) -> Result<Step> {
        let prefix = self.req.prefix.0.clone();
        loop {
            if self.items.len() == self.req.limit || self.budget == 0 {
                return Ok(Step::Done);
            }
            // The cursor bounds the range only inside its own partition.
            let cursor = self
                .cursor
                .as_ref()
                .filter(|c| layout::partition(c) == part.as_ref())
                .cloned();
            let want = (self.req.limit - self.items.len()).min(self.budget);
            let st = &self.e.st;
            let (stmt, lo, hi) = match (&cursor, self.req.reverse) {
                (None, false) => (&st.scan_from_asc, prefix.clone(), self.end.clone()),
                (Some(c), false) => (&st.scan_after_asc, c.clone(), self.end.clone()),
                (None, true) => (&st.scan_from_desc, prefix.clone(), self.end.clone()),
                (Some(c), true) => (&st.scan_from_desc, prefix.clone(), c.clone()),
            };
            let n = want as i32;
            let res = retry("scanning", || {
                self.e
                    .session
                    .execute_unpaged(stmt, (part.as_ref(), lo.as_ref(), hi.as_ref(), n))
            })
            .await?;
            let rows = res.into_rows_result().map_err(|e| bad_rows("kv", e))?;
            let mut got = 0;
            for row in rows
                .rows::<(Vec<u8>, Vec<u8>)>()
                .map_err(|e| bad_rows("kv", e))?
            {
                let (k, v) = row.map_err(|e| bad_rows("kv", e))?;
                got += 1;
                let k = Bytes::from(k);
                self.cursor = Some(k.clone());
                if let Some(v) = rules::scan_item(&decode_record(&v)?, self.req.include_tombstones)
                {
                    self.items.push((Key(k), v));
                }
            }
            self.budget -= got;
            if got < want {
                return Ok(Step::Next);
            }
        }
    }
}
