//! Counting the visible elements of sets exactly on each node: the shadow rule shared by the
//! graph's follower counts and the posts' counters.
//!
//! A change-feed consumer compares each changed element's visibility with the visibility it last
//! counted (a node-local shadow of one byte) and moves the element's counter by one when they
//! differ; a change delivered again finds its shadow and moves nothing. An element without a
//! shadow was counted if a bulk load wrote it: its record's context holds the load's dot, kept
//! in a node-local marker ([`load_marker`], [`loaded_dot`]). [`tally`] folds one batch of changes into its counter
//! moves and changed shadows; writing them, and making that crash-safe, is the caller's.

use crate::codec;
use crate::contract::{BulkRun, Change, Mutation, Store};
use crate::error::Result;
use crate::key::{Key, Keyspace};
use crate::version::Dot;
use bytes::Bytes;
use std::collections::HashMap;

/// One batch's counter moves and changed shadows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Counter key → its move (0 where the batch's moves cancel out).
    pub moves: HashMap<Key, i64>,
    /// Shadow key → whether its element is now counted.
    pub shadows: HashMap<Key, bool>,
}

impl Tally {
    /// The batch as writes: each non-zero move, then each shadow.
    pub fn into_writes(self) -> Vec<(Key, Mutation)> {
        self.moves
            .into_iter()
            .filter(|(_, d)| *d != 0)
            .map(|(k, d)| (k, Mutation::Count(d)))
            .chain(
                self.shadows
                    .into_iter()
                    .map(|(k, v)| (k, Mutation::Put(shadow_value(v)))),
            )
            .collect()
    }
}

/// A shadow as stored: one byte, 1 if its element is counted.
pub fn shadow_value(counted: bool) -> Bytes {
    Bytes::from_static(if counted { &[1] } else { &[0] })
}

/// The bulk-load run that records the load of `dot` in `marker` (read back by [`loaded_dot`]).
pub fn load_marker(marker: Keyspace, dot: &Dot) -> Result<BulkRun<'static>> {
    let key = marker.prefix();
    let value = codec::to_value(dot)?;
    Ok(BulkRun::new(
        key.clone(),
        std::iter::once(Ok((key, Mutation::Put(value)))),
    ))
}

/// The dot of the bulk load recorded in `marker` (its key is the keyspace's prefix), if the
/// node was loaded.
pub async fn loaded_dot(store: &dyn Store, marker: Keyspace) -> Result<Option<Dot>> {
    match store.get(&marker.prefix()).await?.and_then(|v| v.value) {
        Some(b) => Ok(Some(codec::from_value(&b)?)),
        None => Ok(None),
    }
}

/// The counter moves and shadows of `changes`: for each change whose key `counter_of` maps to
/// a counter, the element's visibility against what was counted (the batch's pending shadows
/// first, then the stored one in `shadows`, then whether the bulk load `loaded` wrote it).
pub async fn tally(
    store: &dyn Store,
    changes: &[Change],
    shadows: Keyspace,
    loaded: Option<&Dot>,
    counter_of: impl Fn(&Key) -> Option<Key>,
) -> Result<Tally> {
    let mut t = Tally::default();
    for c in changes {
        let Some(counter) = counter_of(&c.key) else {
            continue;
        };
        let record = store.get_record(&c.key).await?;
        let visible = record.as_ref().is_some_and(|r| r.visible().value.is_some());
        let shadow = shadows.key().raw(c.key.as_bytes()).finish();
        let counted = match t.shadows.get(&shadow) {
            Some(v) => *v,
            None => match store.get(&shadow).await?.and_then(|v| v.value) {
                Some(b) => b.as_ref() == [1],
                None => {
                    loaded.is_some_and(|d| record.as_ref().is_some_and(|r| r.context().contains(d)))
                }
            },
        };
        if visible != counted {
            *t.moves.entry(counter).or_default() += if visible { 1 } else { -1 };
            t.shadows.insert(shadow, visible);
        }
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{HlcClock, Limits, NodeId, RegionId, StoreExt, open_memory};
    use std::sync::Arc;

    const SET: Keyspace = Keyspace::new("ts");
    const SHADOWS: Keyspace = Keyspace::local("tss");
    const COUNTS: Keyspace = Keyspace::local("tsc");

    fn counter_of(key: &Key) -> Option<Key> {
        key.starts_with(SET.prefix().as_bytes())
            .then(|| COUNTS.key().u64(1).finish())
    }

    fn store() -> Arc<dyn Store> {
        let node = NodeId::new(RegionId::from_name("us"), 1);
        open_memory(node, Arc::new(HlcClock::new()), Limits::default())
    }

    /// The tally of the whole feed, as a replay from position 0 sees it.
    async fn tally_all(store: &dyn Store, loaded: Option<&Dot>) -> Tally {
        let changes = store.changes(0, 1024).await.unwrap();
        tally(store, &changes, SHADOWS, loaded, counter_of)
            .await
            .unwrap()
    }

    fn moves(t: &Tally) -> Vec<i64> {
        t.moves.values().copied().collect()
    }

    #[tokio::test]
    async fn an_element_counts_once_and_its_removal_moves_it_back() {
        let store = store();
        let a = SET.key().u64(1).u64(2).finish();
        let b = SET.key().u64(1).u64(3).finish();
        store.add(&a, Bytes::new()).await.unwrap();
        store.add(&b, Bytes::new()).await.unwrap();
        store.add(&a, Bytes::new()).await.unwrap();
        let t = tally_all(store.as_ref(), None).await;
        assert_eq!(moves(&t), vec![2]);
        assert_eq!(t.shadows.len(), 2);
        store.mutate_many(&t.into_writes()).await.unwrap();
        let counter = COUNTS.key().u64(1).finish();
        assert_eq!(store.counter(&counter).await.unwrap(), 2);
        // The same batch again (a replay) finds its shadows and moves nothing.
        assert!(
            tally_all(store.as_ref(), None)
                .await
                .into_writes()
                .is_empty()
        );
        store.remove(&a).await.unwrap();
        let t = tally_all(store.as_ref(), None).await;
        assert_eq!(moves(&t), vec![-1]);
        assert_eq!(t.shadows.into_values().collect::<Vec<_>>(), vec![false]);
    }

    #[tokio::test]
    async fn an_element_the_load_wrote_is_counted_without_a_shadow() {
        let store = store();
        let a = SET.key().u64(1).u64(2).finish();
        let vv = store.add(&a, Bytes::new()).await.unwrap();
        let node = store.node();
        let dot = Dot {
            hlc: vv.get(node).unwrap(),
            node,
        };
        // Loaded by the load of `dot`: counted already, no move and no shadow.
        assert_eq!(
            tally_all(store.as_ref(), Some(&dot)).await,
            Tally::default()
        );
        // Not loaded: counted now.
        assert_eq!(moves(&tally_all(store.as_ref(), None).await), vec![1]);
        store.remove(&a).await.unwrap();
        let t = tally_all(store.as_ref(), Some(&dot)).await;
        assert_eq!(moves(&t), vec![-1]);
    }

    #[tokio::test]
    async fn the_marker_holds_the_loaded_dot() {
        let store = store();
        assert_eq!(loaded_dot(store.as_ref(), SHADOWS).await.unwrap(), None);
        let dot = Dot {
            hlc: crate::Hlc(7),
            node: store.node(),
        };
        let run = load_marker(SHADOWS, &dot).unwrap();
        let writes: Vec<_> = run.items.map(|i| i.unwrap()).collect();
        store.mutate_many(&writes).await.unwrap();
        assert_eq!(
            loaded_dot(store.as_ref(), SHADOWS).await.unwrap(),
            Some(dot)
        );
    }
}
