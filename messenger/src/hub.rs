//! The node's registry of WebSocket connections by user, and the fan-out to them.
//!
//! Sharded by user (16 `RwLock`ed maps), locks held only to look up or change the registry,
//! never across an `.await`. A delivery pushes one shared, pre-encoded frame into each
//! recipient connection's [`Outbox`]; a full outbox marks that connection for closing (4008)
//! and never slows the others.

use crate::outbox::{OutItem, Outbox};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

const SHARDS: usize = 16;

/// Connection caps and the outbox budget.
#[derive(Clone, Copy, Debug)]
pub struct HubLimits {
    /// Connections one user may hold on this node.
    pub max_per_user: usize,
    /// Connections this node accepts.
    pub max_connections: usize,
    /// Bytes a connection's send queue may hold.
    pub outbox_bytes: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            max_per_user: 16,
            max_connections: 200_000,
            outbox_bytes: 1 << 20,
        }
    }
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The user holds `max_per_user` connections here.
    PerUser,
    /// The node holds `max_connections`.
    Node,
}

/// What the hub keeps of a connection.
#[derive(Debug)]
pub struct Conn {
    /// Unique on this node.
    pub id: u64,
    /// The authenticated user.
    pub user: u64,
    /// Its send queue.
    pub outbox: Outbox,
    /// Whether it takes deliveries yet: set at the client's first frame, so a client whose
    /// first frame is `resume` gets that conversation exactly from its seq, never a live
    /// message the server queued before it knew what the client holds.
    live: AtomicBool,
}

impl Conn {
    /// Starts deliveries to this connection.
    pub fn go_live(&self) {
        self.live.store(true, Ordering::Release);
    }

    /// Whether deliveries have started.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }
}

#[derive(Debug)]
struct Inner {
    shards: Vec<RwLock<HashMap<u64, Vec<Arc<Conn>>>>>,
    total: AtomicUsize,
    next_id: AtomicU64,
    limits: HubLimits,
    closing: AtomicBool,
}

/// The hub: a cheap-to-clone handle.
#[derive(Clone, Debug)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A registered connection; dropping it unregisters it.
#[derive(Debug)]
pub struct ConnHandle {
    hub: Hub,
    conn: Arc<Conn>,
    /// Whether this was the user's first connection on the node (they came online).
    pub first: bool,
}

impl ConnHandle {
    /// The connection's shared part.
    pub fn conn(&self) -> &Arc<Conn> {
        &self.conn
    }

    /// Unregisters now; `true` if it was the user's last connection here (they went offline).
    pub fn close(self) -> bool {
        let last = self.hub.unregister(&self.conn);
        std::mem::forget(self);
        last
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        self.hub.unregister(&self.conn);
    }
}

impl Hub {
    /// An empty hub.
    pub fn new(limits: HubLimits) -> Self {
        Hub {
            inner: Arc::new(Inner {
                shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
                total: AtomicUsize::new(0),
                next_id: AtomicU64::new(1),
                limits,
                closing: AtomicBool::new(false),
            }),
        }
    }

    /// The limits.
    pub fn limits(&self) -> HubLimits {
        self.inner.limits
    }

    fn shard(&self, user: u64) -> &RwLock<HashMap<u64, Vec<Arc<Conn>>>> {
        let i = (user ^ (user >> 17)) as usize % SHARDS;
        &self.inner.shards[i]
    }

    /// Registers a connection of `user`, within the caps.
    pub fn connect(&self, user: u64) -> Result<ConnHandle, Refused> {
        if self.is_closing() {
            return Err(Refused::Node);
        }
        let total = self.inner.total.fetch_add(1, Ordering::AcqRel);
        if total >= self.inner.limits.max_connections {
            self.inner.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Node);
        }
        let conn = Arc::new(Conn {
            id: self.inner.next_id.fetch_add(1, Ordering::Relaxed),
            user,
            outbox: Outbox::new(self.inner.limits.outbox_bytes),
            live: AtomicBool::new(false),
        });
        let mut shard = self.shard(user).write();
        let list = shard.entry(user).or_default();
        if list.len() >= self.inner.limits.max_per_user {
            drop(shard);
            self.inner.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::PerUser);
        }
        let first = list.is_empty();
        list.push(conn.clone());
        Ok(ConnHandle {
            hub: self.clone(),
            conn,
            first,
        })
    }

    fn unregister(&self, conn: &Arc<Conn>) -> bool {
        let mut shard = self.shard(conn.user).write();
        let mut last = false;
        if let Some(list) = shard.get_mut(&conn.user) {
            let before = list.len();
            list.retain(|c| c.id != conn.id);
            if list.len() < before {
                self.inner.total.fetch_sub(1, Ordering::AcqRel);
            }
            if list.is_empty() {
                shard.remove(&conn.user);
                last = true;
            }
        }
        last
    }

    /// Asks every connection to close (the node is shutting down) and refuses new ones.
    pub fn close_all(&self) {
        self.inner.closing.store(true, Ordering::Release);
        for shard in &self.inner.shards {
            for list in shard.read().values() {
                for c in list {
                    c.outbox.wake();
                }
            }
        }
    }

    /// Whether the node is shutting down.
    pub fn is_closing(&self) -> bool {
        self.inner.closing.load(Ordering::Acquire)
    }

    /// Connections held now.
    pub fn connections(&self) -> usize {
        self.inner.total.load(Ordering::Acquire)
    }

    /// Whether `user` has a connection here.
    pub fn is_online(&self, user: u64) -> bool {
        self.shard(user).read().contains_key(&user)
    }

    /// Queues `item` for every connection of every user in `users` (except `skip_user`).
    /// Returns how many connections it was queued for.
    pub fn deliver(&self, users: &[u64], skip_user: Option<u64>, item: &OutItem) -> usize {
        let mut n = 0;
        for &u in users {
            if Some(u) == skip_user {
                continue;
            }
            let shard = self.shard(u).read();
            if let Some(list) = shard.get(&u) {
                for c in list.iter().filter(|c| c.is_live()) {
                    // A full outbox marks the connection; its task closes it with 4008.
                    if c.outbox.push(item.clone()) {
                        n += 1;
                    }
                }
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn caps_and_delivery() {
        let hub = Hub::new(HubLimits {
            max_per_user: 2,
            max_connections: 3,
            outbox_bytes: 100,
        });
        let a1 = hub.connect(1).unwrap();
        assert!(a1.first);
        a1.conn().go_live();
        let a2 = hub.connect(1).unwrap();
        a2.conn().go_live();
        assert!(!a2.first);
        assert_eq!(hub.connect(1).unwrap_err(), Refused::PerUser);
        let b = hub.connect(2).unwrap();
        b.conn().go_live();
        assert_eq!(hub.connect(3).unwrap_err(), Refused::Node);
        let item = OutItem::Frame(Bytes::from_static(b"x"));
        assert_eq!(hub.deliver(&[1, 2], Some(2), &item), 2);
        assert!(!a1.close());
        assert!(a2.close());
        assert!(!hub.is_online(1));
        assert_eq!(hub.connections(), 1);
    }
}
