//! Wake-ups of the change feed's readers by key prefix ([`crate::Store::subscribe_to`]).
//!
//! A reader of the feed that derives state from a few keyspaces (follower counts, like counts,
//! timelines, live notifications) need not be woken by writes to others: at 5 000 chat messages
//! a second, each such wake-up was one read of its position, one read of the feed and one write
//! of its position, for no change it reads. Each subscription holds its prefixes and a
//! [`watch`] channel; a commit sends its last sequence number to the subscriptions that one of
//! its keys matches. Subscriptions whose receivers are all dropped are removed at the next
//! commit that finds one.

use crate::key::Key;
use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::watch;

/// One reader's prefixes and its channel.
struct Subscription {
    prefixes: Box<[Bytes]>,
    tx: watch::Sender<u64>,
}

impl Subscription {
    fn wants(&self, key: &Key) -> bool {
        self.prefixes.iter().any(|p| key.starts_with(p))
    }
}

/// The subscriptions by prefix of one engine.
#[derive(Default)]
pub(crate) struct Interests {
    subs: RwLock<Vec<Subscription>>,
}

impl Interests {
    /// A receiver told the sequence number of each later commit that writes a key starting with
    /// one of `prefixes`, holding `last` until then.
    pub(crate) fn subscribe(&self, prefixes: &[Bytes], last: u64) -> watch::Receiver<u64> {
        let (tx, rx) = watch::channel(last);
        self.subs.write().push(Subscription {
            prefixes: prefixes.into(),
            tx,
        });
        rx
    }

    /// How many subscriptions are held (dropped ones until the next commit prunes them).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.subs.read().len()
    }

    /// A commit of `keys` that ends the feed at `seq`: wakes each subscription one of them
    /// matches. Called under the engine's commit lock, so each channel sees increasing numbers.
    pub(crate) fn committed<'a>(&self, keys: impl Iterator<Item = &'a Key> + Clone, seq: u64) {
        let mut closed = false;
        {
            let subs = self.subs.read();
            for s in subs.iter() {
                if s.tx.is_closed() {
                    closed = true;
                } else if keys.clone().any(|k| s.wants(k)) {
                    s.tx.send_replace(seq);
                }
            }
        }
        if closed {
            self.subs.write().retain(|s| !s.tx.is_closed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Keyspace;

    const A: Keyspace = Keyspace::new("a");
    const AB: Keyspace = Keyspace::new("ab");

    fn key(ks: Keyspace, n: u64) -> Key {
        ks.key().u64(n).finish()
    }

    #[test]
    fn a_commit_wakes_only_the_subscriptions_its_keys_match() {
        let i = Interests::default();
        let a = i.subscribe(&[A.prefix().0], 7);
        let ab = i.subscribe(&[AB.prefix().0], 7);
        assert_eq!(*a.borrow(), 7);
        // "ab" starts with the letter "a" but not with keyspace "a"'s prefix (its name and the
        // segment's terminator).
        i.committed([key(AB, 1)].iter(), 8);
        assert!(!a.has_changed().unwrap());
        assert!(ab.has_changed().unwrap());
        assert_eq!(*ab.borrow(), 8);
        // A batch wakes each subscription once, with its last number.
        i.committed([key(A, 1), key(AB, 2)].iter(), 10);
        assert!(a.has_changed().unwrap());
        assert_eq!(*a.borrow(), 10);
        assert_eq!(*ab.borrow(), 10);
    }

    #[test]
    fn dropped_subscriptions_are_pruned_at_the_next_commit() {
        let i = Interests::default();
        let kept = i.subscribe(&[A.prefix().0], 0);
        drop(i.subscribe(&[AB.prefix().0], 0));
        assert_eq!(i.len(), 2);
        i.committed([key(A, 1)].iter(), 1);
        assert_eq!(i.len(), 1);
        assert_eq!(*kept.borrow(), 1);
    }
}
