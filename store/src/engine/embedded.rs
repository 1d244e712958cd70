//! Embedded backend on local disk: fjall (an LSM tree with a write-ahead journal).
//!
//! Batches are committed to fjall's in-process journal buffer (`manual_journal_persist`), and the
//! engine hands the buffer to the operating system before it acknowledges a write — once for all
//! the writers that committed meanwhile (group flush), instead of one `write(2)` per batch. So an
//! acknowledged write survives `kill -9` of the process whatever the fsync policy; the policy
//! decides what survives a power loss (see [`FsyncPolicy`]).
//!
//! The data directory holds a `STARLING_STORE` marker beside fjall's own folder, so a directory
//! written by something else, or by an incompatible format, is refused at open with a clear
//! error instead of being "repaired".

use super::backend::{Backend, FnSink, Op, RawRange, Sink, Space};
use crate::error::{Result, StoreError};
use bytes::Bytes;
use fjall::config::{CompressionPolicy, PinningPolicy};
use fjall::{
    AbstractTree, CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the marker file says; the first line names the format.
const MARKER: &str = "STARLING_STORE";
const FORMAT: &str = "starling-store format 1";

/// When the journal is forced to stable storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Never explicitly: the OS writes back when it likes. Survives a process crash.
    Never,
    /// Every interval, in the background: a power loss loses at most that window.
    Interval(Duration),
    /// Before each write is acknowledged; concurrent writers share one fsync (group commit).
    Always,
}

impl Default for FsyncPolicy {
    fn default() -> Self {
        FsyncPolicy::Interval(Duration::from_millis(100))
    }
}

/// An I/O error of the store's own file handling, with what it was doing.
fn io(context: String) -> impl FnOnce(std::io::Error) -> StoreError {
    move |source| StoreError::Io { context, source }
}

/// Prepares `dir` for a store: creates it with a marker, or checks the marker that is there.
fn claim_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let marker = dir.join(MARKER);
    match std::fs::read_to_string(&marker) {
        Ok(text) => {
            let first = text.lines().next().unwrap_or_default();
            if first == FORMAT {
                Ok(())
            } else {
                Err(StoreError::IncompatibleFormat {
                    path: dir.to_path_buf(),
                    found: first.to_string(),
                    expected: FORMAT,
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut entries =
                std::fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))?;
            if entries.next().is_some() {
                return Err(StoreError::ForeignDataDir {
                    path: dir.to_path_buf(),
                });
            }
            let tmp = dir.join(format!("{MARKER}.tmp"));
            std::fs::write(&tmp, format!("{FORMAT}\n"))
                .map_err(io(format!("writing {}", tmp.display())))?;
            std::fs::rename(&tmp, &marker).map_err(io(format!("writing {}", marker.display())))?;
            Ok(())
        }
        Err(e) => Err(io(format!("reading {}", marker.display()))(e)),
    }
}

/// The fjall backend.
pub(crate) struct EmbeddedBackend {
    db: Database,
    spaces: [Keyspace; 5],
    path: PathBuf,
    journal: ActiveJournal,
    /// Run store calls on the caller's thread ([`crate::EmbeddedOptions::inline`]).
    pub(crate) inline: bool,
}

impl std::fmt::Debug for EmbeddedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBackend")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The bytes allocated to fjall's journals (`*.jnl` in the database folder) and their number,
/// from the directory (fjall's own figure takes the journal's writer lock, which every commit
/// takes too). A file removed while it is read is left out.
fn journal_files(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(path) else {
        return (0, 0);
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".jnl"))
        .filter_map(|e| e.metadata().ok())
        .fold((0, 0), |(bytes, n), m| (bytes + m.blocks() * 512, n + 1))
}

/// The journals' total size past which fjall flushes the spaces still holding the oldest one
/// (fjall's least; its default is 512 MiB). fjall rotates to a new journal every 64 MB and may
/// remove an old one only once every space with data in it has flushed; a space written rarely
/// (the trim point in `meta`) never fills its memtable, so it could hold every journal until
/// their total reached 512 MiB: up to half a GiB of the store's files, filling and emptying over
/// minutes. With this bound a 20-minute soak kept one or two journals, at most 69 MiB
/// (RELIABILITY.md "Soak"), for one small flush of such a space per journal.
const MAX_JOURNALS: u64 = 64 * 1024 * 1024;

impl EmbeddedBackend {
    /// Opens (or creates) the store in `dir`, with a block cache of `cache_bytes` and, for
    /// spaces this call creates, memtables of at most `memtable_bytes` each (fjall keeps the
    /// size a space was created with).
    pub(crate) fn open(dir: &Path, cache_bytes: u64, memtable_bytes: u64) -> Result<Self> {
        claim_dir(dir)?;
        let path = dir.join("kv");
        let db = Database::builder(&path)
            .cache_size(cache_bytes)
            .manual_journal_persist(true)
            .max_journaling_size(MAX_JOURNALS)
            .open()
            .map_err(|e| StoreError::Corrupt(format!("cannot open {}: {e}", path.display())))?;
        // Tables above level 0 (compactions, and bulk loads, which land in level 1) are LZ4
        // compressed: records repeat their stamps and keys share prefixes, so this roughly
        // halves what is written for little CPU. Memtable flushes (level 0) stay uncompressed.
        //
        // The memtable bound is the store's share of the node's memory that grows with writes:
        // fjall's default (64 MiB a space, four spaces) let a node's RSS climb by a quarter of a
        // GiB before the first flush, which a soak cannot tell from a leak.
        //
        // No index or filter block is pinned: all go through the block cache, so that the
        // store's memory stays within the cache and memtable bounds however much data it holds.
        // fjall pins level 0 and 1 index blocks and level 0 filter blocks by default, and
        // heaptrack found them among what grew in a soak (`starling_store_pinned_bytes`).
        let options = || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(memtable_bytes)
                .index_block_pinning_policy(PinningPolicy::all(false))
                .filter_block_pinning_policy(PinningPolicy::all(false))
                .data_block_compression_policy(CompressionPolicy::new([
                    CompressionType::None,
                    CompressionType::Lz4,
                ]))
        };
        // The index spaces are only ever scanned (by bucket; the tombstone index from its
        // start): no point reads, no bloom filters. A store from before the tombstone index
        // gets an empty `tombs` space here (the reaper backfills it: see `Store::tombstone_index`).
        let open = |s: Space| match s {
            Space::Index | Space::Tombs => {
                db.keyspace(s.name(), || options().expect_point_read_hits(true))
            }
            _ => db.keyspace(s.name(), options),
        };
        let spaces = [
            open(Space::ALL[0])?,
            open(Space::ALL[1])?,
            open(Space::ALL[2])?,
            open(Space::ALL[3])?,
            open(Space::ALL[4])?,
        ];
        Ok(EmbeddedBackend {
            db,
            spaces,
            journal: ActiveJournal::new(path.clone()),
            path,
            inline: false,
        })
    }

    fn space(&self, s: Space) -> &Keyspace {
        &self.spaces[s as usize]
    }
}

impl Backend for EmbeddedBackend {
    fn blocking(&self) -> bool {
        !self.inline
    }

    fn memory(&self) -> Option<crate::contract::MemoryStats> {
        let (journal_bytes, journals) = journal_files(&self.path);
        Some(crate::contract::MemoryStats {
            memtable_bytes: self.db.write_buffer_size(),
            cache_bytes: self.db.cache_size(),
            cache_capacity: self.db.cache_capacity(),
            tables: self.spaces.iter().map(|s| s.table_count() as u64).sum(),
            pinned_bytes: self
                .spaces
                .iter()
                .map(|s| (s.tree.pinned_block_index_size() + s.tree.pinned_filter_size()) as u64)
                .sum(),
            journal_bytes,
            journals,
        })
    }

    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self
            .space(space)
            .get(key)?
            .map(|v| Bytes::copy_from_slice(&v)))
    }

    fn commit(&self, ops: Vec<Op>) -> Result<()> {
        let mut batch = self.db.batch();
        for op in ops {
            let ks = self.space(op.space);
            match op.value {
                Some(v) => batch.insert(ks, op.key.as_ref(), v.as_ref()),
                None => batch.remove(ks, op.key.as_ref()),
            }
        }
        batch.commit()?;
        Ok(())
    }

    fn scan(
        &self,
        space: Space,
        range: RawRange,
        reverse: bool,
        max: usize,
    ) -> Result<Vec<(Bytes, Bytes)>> {
        let it = self.space(space).range::<Bytes, _>(range);
        let mut out = Vec::with_capacity(max.min(1024));
        let mut push = |g: fjall::Guard| -> Result<()> {
            let (k, v) = g.into_inner()?;
            out.push((Bytes::copy_from_slice(&k), Bytes::copy_from_slice(&v)));
            Ok(())
        };
        if reverse {
            for g in it.rev().take(max) {
                push(g)?;
            }
        } else {
            for g in it.take(max) {
                push(g)?;
            }
        }
        Ok(out)
    }

    /// A fjall ingestion: the run goes straight into new sorted tables, bypassing the journal
    /// and the memtable (the caller has checked the order, which fjall would panic on).
    fn ingest(
        &self,
        space: Space,
        fill: &mut dyn FnMut(&mut dyn Sink) -> Result<()>,
    ) -> Result<()> {
        let mut run = self.space(space).start_ingestion()?;
        fill(&mut FnSink(&mut |k: &[u8], v: &[u8]| Ok(run.write(k, v)?)))?;
        run.finish()?;
        Ok(())
    }

    fn approximate_len(&self, space: Space) -> u64 {
        self.space(space).approximate_len() as u64
    }

    fn flush(&self) -> Result<()> {
        self.db.persist(PersistMode::Buffer)?;
        Ok(())
    }

    /// Hands the journal buffer to the OS (under fjall's journal lock, one `write(2)`), then
    /// `fdatasync`s the active journal file *outside* that lock. fjall's own
    /// `persist(SyncData)` holds the journal lock through the `fdatasync`, and every batch
    /// commit takes that lock: in a soak a node's tokio workers spent 14 % of their time
    /// waiting behind the periodic fsync (p99 39 ms, max 71 ms a commit), long enough for
    /// requests to pile up past the load generator's in-flight cap.
    fn sync(&self) -> Result<()> {
        self.db.persist(PersistMode::Buffer)?;
        self.journal.sync()
    }
}

/// The journal file fjall is appending to, synced through a descriptor of our own.
///
/// fjall writes its journal to `N.jnl` files in the database folder and, when it rotates to
/// `N+1`, syncs `N` completely before the switch (`Writer::rotate`). So once the buffer has been
/// handed to the OS, syncing the newest journal file there makes every batch committed so far
/// durable: a batch is either in that file or in an older one that its rotation synced. (A
/// descriptor of the same inode syncs the pages written through fjall's own: `fdatasync`
/// acts on the file, not on the descriptor.)
struct ActiveJournal {
    dir: PathBuf,
    /// The newest journal's number and a read-only descriptor of it.
    open: parking_lot::Mutex<Option<(u64, std::fs::File)>>,
}

impl ActiveJournal {
    fn new(dir: PathBuf) -> Self {
        ActiveJournal {
            dir,
            open: parking_lot::Mutex::new(None),
        }
    }

    /// The number of the newest `N.jnl` in the folder.
    fn newest(&self) -> Result<Option<u64>> {
        let listing = || io(format!("listing journals in {}", self.dir.display()));
        let mut newest = None;
        for entry in std::fs::read_dir(&self.dir).map_err(listing())? {
            let name = entry.map_err(listing())?.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.strip_suffix(".jnl"))
                .and_then(|n| n.parse::<u64>().ok());
            newest = newest.max(id);
        }
        Ok(newest)
    }

    /// `fdatasync`s the newest journal file (reopened when fjall has rotated to another).
    fn sync(&self) -> Result<()> {
        let mut open = self.open.lock();
        let mut attempts = 0;
        let (id, file) = loop {
            let Some(id) = self.newest()? else {
                return Err(StoreError::Corrupt(format!(
                    "no journal file in {}",
                    self.dir.display()
                )));
            };
            if let Some(cached) = open.take().filter(|(at, _)| *at == id) {
                break cached;
            }
            let path = self.dir.join(format!("{id}.jnl"));
            match std::fs::File::open(&path) {
                Ok(file) => break (id, file),
                // Only journals older than the newest are ever removed, after their data was
                // flushed; one that went between the listing and the open had been rotated
                // away, so list again.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && attempts < 3 => {
                    attempts += 1;
                }
                Err(e) => return Err(io(format!("opening {}", path.display()))(e)),
            }
        };
        let synced = file.sync_data().map_err(io(format!(
            "syncing journal {id} in {}",
            self.dir.display()
        )));
        *open = Some((id, file));
        synced
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clean close saves the digests; a write after it (then a crash) removes the snapshot,
    /// so the next open scans and still gets them right.
    #[tokio::test]
    async fn saved_digests_are_used_only_while_no_write_followed() {
        use crate::{EmbeddedOptions, HlcClock, Key, NodeId, StoreExt, open_embedded};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let opts = EmbeddedOptions::new(dir.path());
        let node = NodeId::from_names("local", "n1");
        let open = || open_embedded(node, Arc::new(HlcClock::new()), &opts).unwrap();
        let saved_key = || {
            let b = EmbeddedBackend::open(dir.path(), 1 << 20, 1 << 20).unwrap();
            b.get(Space::Meta, super::super::META_DIGESTS)
                .unwrap()
                .is_some()
        };
        let first = {
            let s = open();
            s.put(&Key::from("a"), Bytes::from_static(b"1"))
                .await
                .unwrap();
            s.close().await.unwrap();
            s.digests()
        };
        assert!(saved_key(), "close saves the digests");
        let (second, stamp) = {
            let s = open();
            assert_eq!(s.digests(), first, "loaded from the snapshot");
            s.put(&Key::from("b"), Bytes::from_static(b"2"))
                .await
                .unwrap();
            let stamp = s.get(&Key::from("b")).await.unwrap().unwrap().hlc;
            (s.digests(), stamp)
            // dropped without close: a crash
        };
        assert_ne!(second, first);
        assert!(!saved_key(), "the write removed the snapshot");
        let s = open();
        assert_eq!(s.digests(), second, "rebuilt by a scan");
        s.put(&Key::from("c"), Bytes::from_static(b"3"))
            .await
            .unwrap();
        assert!(s.get(&Key::from("c")).await.unwrap().unwrap().hlc > stamp);
    }

    /// Index entries written before the index kept entry hashes are empty: `bucket_hashes`
    /// reads their records instead and answers the same.
    #[tokio::test]
    async fn bucket_hashes_read_records_for_index_entries_without_a_hash() {
        use crate::digest::bucket_of;
        use crate::{EmbeddedOptions, HlcClock, Key, NodeId, StoreExt, open_embedded};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let opts = EmbeddedOptions::new(dir.path());
        let node = NodeId::from_names("local", "n1");
        let open = || open_embedded(node, Arc::new(HlcClock::new()), &opts).unwrap();
        let keys: Vec<Key> = (0..50)
            .map(|i| Key::from(format!("k{i}").as_str()))
            .collect();
        let bucket = bucket_of(keys[0].as_bytes());
        let before = {
            let s = open();
            for k in &keys {
                s.put(k, Bytes::from_static(b"v")).await.unwrap();
            }
            s.close().await.unwrap();
            s.bucket_hashes(bucket, None, 100).await.unwrap()
        };
        assert!(!before.0.is_empty());
        {
            let b = EmbeddedBackend::open(dir.path(), 1 << 20, 1 << 20).unwrap();
            let ops = keys
                .iter()
                .map(|k| Op::put(Space::Index, super::super::index_key(k.as_bytes()), vec![]))
                .collect();
            b.commit(ops).unwrap();
            b.sync().unwrap();
        }
        let s = open();
        assert_eq!(s.bucket_hashes(bucket, None, 100).await.unwrap(), before);
    }

    #[test]
    fn the_journal_synced_is_the_newest_one() {
        let dir = tempfile::tempdir().unwrap();
        let j = ActiveJournal::new(dir.path().to_path_buf());
        assert!(
            matches!(j.sync(), Err(StoreError::Corrupt(_))),
            "no journal"
        );
        for name in ["0.jnl", "1.jnl", "9.tmp", "lock", "10.jnl.bak"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        j.sync().unwrap();
        assert_eq!(j.open.lock().as_ref().map(|o| o.0), Some(1));
        // fjall rotates to 2.jnl and later removes the flushed 0 and 1.
        std::fs::write(dir.path().join("2.jnl"), b"y").unwrap();
        std::fs::remove_file(dir.path().join("0.jnl")).unwrap();
        std::fs::remove_file(dir.path().join("1.jnl")).unwrap();
        j.sync().unwrap();
        assert_eq!(j.open.lock().as_ref().map(|o| o.0), Some(2));
    }

    /// No index or filter block is held outside the block cache, even for a level-0 table
    /// (fjall pins those by default), and the table still reads back.
    #[test]
    fn no_block_is_pinned_outside_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let b = EmbeddedBackend::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        for chunk in 0u32..20 {
            let ops = (chunk * 1000..(chunk + 1) * 1000)
                .map(|i| Op::put(Space::Data, i.to_be_bytes().to_vec(), vec![7u8; 64]))
                .collect();
            b.commit(ops).unwrap();
        }
        // A flush writes a level-0 table, whose index and filter fjall would pin.
        b.space(Space::Data).rotate_memtable_and_wait().unwrap();
        let m = b.memory().unwrap();
        assert!(m.tables > 0, "the flush wrote a table: {m:?}");
        assert_eq!(m.pinned_bytes, 0, "{m:?}");
        assert_eq!(
            b.get(Space::Data, &12_345u32.to_be_bytes()).unwrap(),
            Some(Bytes::from(vec![7u8; 64]))
        );
    }

    /// The backend's sync finds the journal in fjall's folder, and what it synced reads back
    /// after a reopen.
    #[test]
    fn sync_finds_fjalls_journal() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = EmbeddedBackend::open(dir.path(), 1 << 20, 1 << 20).unwrap();
            b.commit(vec![Op::put(Space::Data, &b"k"[..], &b"v"[..])])
                .unwrap();
            b.sync().unwrap();
            assert!(b.journal.open.lock().is_some(), "a journal was synced");
            // The journal gauge counts it, from the folder.
            let m = b.memory().unwrap();
            assert!(m.journals >= 1 && m.journal_bytes > 0, "{m:?}");
        }
        let b = EmbeddedBackend::open(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(
            b.get(Space::Data, b"k").unwrap(),
            Some(Bytes::from_static(b"v"))
        );
    }

    #[test]
    fn refuses_a_foreign_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("something.txt"), "hello").unwrap();
        let err = EmbeddedBackend::open(dir.path(), 1 << 20, 1 << 20).unwrap_err();
        assert!(matches!(err, StoreError::ForeignDataDir { .. }), "{err}");
    }

    #[test]
    fn refuses_another_format() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MARKER), "starling-store format 99\n").unwrap();
        let err = EmbeddedBackend::open(dir.path(), 1 << 20, 1 << 20).unwrap_err();
        assert!(
            matches!(err, StoreError::IncompatibleFormat { .. }),
            "{err}"
        );
    }

    #[test]
    fn damaged_engine_files_give_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = EmbeddedBackend::open(dir.path(), 1 << 20, 1 << 20).unwrap();
            b.commit(vec![Op::put(Space::Data, &b"k"[..], &b"v"[..])])
                .unwrap();
            b.flush().unwrap();
        }
        // Overwrite every file fjall wrote with garbage.
        fn scribble(p: &Path) {
            for e in std::fs::read_dir(p).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    scribble(&p);
                } else {
                    std::fs::write(&p, b"\xde\xad\xbe\xef garbage").unwrap();
                }
            }
        }
        scribble(&dir.path().join("kv"));
        let r =
            std::panic::catch_unwind(|| EmbeddedBackend::open(dir.path(), 1 << 20, 1 << 20).err());
        let err = r.expect("opening a damaged store must not panic");
        assert!(err.is_some(), "a damaged store must not open silently");
    }
}
