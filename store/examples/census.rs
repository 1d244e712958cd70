//! Counts an embedded store's keys by keyspace: what a store's data is made of.
//!
//! ```text
//! cargo run --release -p starling-store --example census -- DATA_DIR
//! ```
//!
//! `DATA_DIR` is a stopped node's `--data-dir`, or a copy of a running one's (`cp -a` while it
//! runs: the copy recovers from its journal when opened). For each keyspace (the key's name up to
//! its first `0x00`; node-local ones marked `local:`) it prints the keys, how many of them are
//! tombstones, and the bytes of their keys and stored records (the record encoding, version
//! vectors included; the tombstones' share apart), largest first. The soak's data keyspace grew
//! 136 → 240 MiB in two hours with its tombstone index flat (RELIABILITY.md, "Soak"): this says
//! which keyspace grows.
use starling_store::{
    EmbeddedOptions, HlcClock, Key, NodeId, RegionId, ScanRequest, codec::encode_record,
    open_embedded,
};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Default)]
struct Tally {
    keys: u64,
    tombstones: u64,
    key_bytes: u64,
    record_bytes: u64,
    tombstone_bytes: u64,
}

fn keyspace(key: &[u8]) -> String {
    let (local, rest) = match key.split_first() {
        Some((&starling_store::key::LOCAL_PREFIX, rest)) => (true, rest),
        _ => (false, key),
    };
    let name = rest.split(|&b| b == 0).next().unwrap_or(rest);
    let name = String::from_utf8_lossy(name);
    if local {
        format!("local:{name}")
    } else {
        name.into_owned()
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: census DATA_DIR (a stopped node's store directory, or a copy)")?;
    let mut opts = EmbeddedOptions::new(dir);
    opts.inline = true;
    let store = open_embedded(
        NodeId::new(RegionId(1), 1),
        Arc::new(HlcClock::new()),
        &opts,
    )?;
    let limit = store.limits().max_scan;
    let mut tallies: BTreeMap<String, Tally> = BTreeMap::new();
    // Every key starts with a byte from 0x01 (an empty name is never used) to 0xff (local).
    for first in 1..=u8::MAX {
        let mut req = ScanRequest::prefix(Key::from_bytes(vec![first]), limit);
        req.include_tombstones = true;
        loop {
            let page = store.scan(&req).await?;
            let keys: Vec<Key> = page.items.iter().map(|(k, _)| k.clone()).collect();
            let records = store.get_records(&keys).await?;
            for (key, record) in keys.iter().zip(records) {
                let t = tallies.entry(keyspace(key.as_bytes())).or_default();
                t.keys += 1;
                t.key_bytes += key.len() as u64;
                if let Some(r) = record {
                    let bytes = encode_record(&r)?.len() as u64;
                    t.record_bytes += bytes;
                    if r.is_tombstone() {
                        t.tombstones += 1;
                        t.tombstone_bytes += bytes;
                    }
                }
            }
            match page.next {
                Some(next) => req.after = Some(next),
                None => break,
            }
        }
    }
    let mut rows: Vec<_> = tallies.into_iter().collect();
    rows.sort_by_key(|(_, t)| std::cmp::Reverse(t.key_bytes + t.record_bytes));
    println!("| keyspace | keys | tombstones | key MiB | record MiB | of which tombstones |");
    println!("|---|---|---|---|---|---|");
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    for (name, t) in &rows {
        println!(
            "| {name} | {} | {} | {:.2} | {:.2} | {:.2} |",
            t.keys,
            t.tombstones,
            mib(t.key_bytes),
            mib(t.record_bytes),
            mib(t.tombstone_bytes)
        );
    }
    store.close().await?;
    Ok(())
}
