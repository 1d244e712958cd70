//! When committed writes reach stable storage: group commit and the periodic fsync thread.
//!
//! The thread is owned by [`Syncer`] and stops when the syncer is dropped (its channel closes).

use super::{Durable, FsyncPolicy};
use crate::error::{Result, StoreError};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

struct SyncState {
    durable: Arc<dyn Durable>,
    /// The highest sequence number known to be handed to the OS; held while flushing.
    flushed: Mutex<u64>,
    /// The highest sequence number known to be on stable storage. Held while syncing, so writers
    /// queue behind one fsync and then find their write already covered (group commit).
    synced: Mutex<u64>,
}

impl SyncState {
    /// Group flush to the OS: one `write(2)` for every writer queued behind it.
    fn flush_through(&self, seq: u64) -> Result<()> {
        let mut flushed = self.flushed.lock();
        if *flushed >= seq {
            return Ok(());
        }
        let target = self.durable.committed();
        self.durable.flush()?;
        *flushed = target;
        Ok(())
    }

    fn sync_through(&self, seq: u64) -> Result<()> {
        let mut synced = self.synced.lock();
        if *synced >= seq {
            return Ok(());
        }
        let target = self.durable.committed();
        self.durable.sync()?;
        *synced = target;
        Ok(())
    }
}

/// Group flush to the OS, called on the thread that committed (a blocking one for a disk
/// backend).
pub(crate) struct Flusher(Arc<SyncState>);

impl Flusher {
    /// Makes sure everything up to `seq` is handed to the OS (survives a process crash).
    pub(crate) fn flush_through(&self, seq: u64) -> Result<()> {
        self.0.flush_through(seq)
    }
}

/// Applies an [`FsyncPolicy`] to an engine.
pub(crate) struct Syncer {
    state: Arc<SyncState>,
    always: bool,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Syncer {
    pub(crate) fn start(durable: Arc<dyn Durable>, policy: Option<FsyncPolicy>) -> Self {
        let state = Arc::new(SyncState {
            durable,
            flushed: Mutex::new(0),
            synced: Mutex::new(0),
        });
        let mut s = Syncer {
            state: state.clone(),
            always: policy == Some(FsyncPolicy::Always),
            stop: None,
            thread: None,
        };
        if let Some(FsyncPolicy::Interval(every)) = policy {
            let (tx, rx) = mpsc::channel::<()>();
            let spawned = std::thread::Builder::new()
                .name("starling-fsync".into())
                .spawn(move || {
                    while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
                        let seq = state.durable.committed();
                        if let Err(e) = state.sync_through(seq) {
                            tracing::error!(error = %e, "periodic fsync failed");
                        }
                    }
                });
            match spawned {
                Ok(t) => {
                    s.stop = Some(tx);
                    s.thread = Some(t);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the fsync thread; syncing every write");
                    s.always = true;
                }
            }
        }
        s
    }

    /// What hands committed writes to the OS, for the blocking call that committed them.
    pub(crate) fn flusher(&self) -> Flusher {
        Flusher(self.state.clone())
    }

    /// After [`Flusher::flush_through`]: waits until `seq` is on stable storage if the policy
    /// asks for it before acknowledging (the fsync runs on the blocking pool).
    pub(crate) async fn wait_synced(&self, seq: u64) -> Result<()> {
        if self.always {
            self.sync(seq).await
        } else {
            Ok(())
        }
    }

    /// Syncs everything committed so far.
    pub(crate) async fn sync_now(&self) -> Result<()> {
        self.sync(self.state.durable.committed()).await
    }

    async fn sync(&self, seq: u64) -> Result<()> {
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || state.sync_through(seq))
            .await
            .map_err(|_| StoreError::Closed)?
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // Whatever the policy, leave the journal on disk when the store closes cleanly.
        if let Err(e) = self.state.sync_through(self.state.durable.committed()) {
            tracing::error!(error = %e, "final fsync failed");
        }
    }
}
