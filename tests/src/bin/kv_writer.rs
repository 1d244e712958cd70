//! Writes to an embedded store as fast as it can and prints one line per acknowledged write:
//! `put I`, `add I`, `incr I` or `cas I`. The durability test kills it with SIGKILL at random
//! moments and checks that every reported write survived.
//!
//! Usage: `kv-writer DATA_DIR START_INDEX FSYNC(never|always)`

use anyhow::{Context, bail};
use bytes::Bytes;
use starling_store::{
    CasOutcome, EmbeddedOptions, FsyncPolicy, HlcClock, NodeId, RegionId, StoreExt, open_embedded,
};
use starling_tests::{CAS, ELEMENTS, counter_key, register_key, register_value};
use std::io::Write;
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, start, fsync] = args.as_slice() else {
        bail!("usage: kv-writer DATA_DIR START_INDEX never|always");
    };
    let start: u64 = start.parse().context("START_INDEX")?;
    let mut opts = EmbeddedOptions::new(dir);
    opts.fsync = match fsync.as_str() {
        "never" => FsyncPolicy::Never,
        "always" => FsyncPolicy::Always,
        other => bail!("unknown fsync policy {other}"),
    };
    let node = NodeId::new(RegionId::from_name("test"), 1);
    let store = open_embedded(node, Arc::new(HlcClock::new()), &opts)?;
    let out = std::io::stdout();
    let counter = counter_key();
    let cas_key = CAS.key().finish();
    for i in start.. {
        let line = match i % 4 {
            0 | 1 => {
                store
                    .put(&register_key(i), Bytes::from(register_value(i)))
                    .await?;
                format!("put {i}")
            }
            2 => {
                store
                    .add(&ELEMENTS.key().u64(i).finish(), Bytes::new())
                    .await?;
                store.incr(&counter, 1).await?;
                format!("add {i}\nincr {i}")
            }
            _ => {
                // The CAS chain holds the index of its last successful swap.
                let cur = store.get(&cas_key).await?;
                let next = Bytes::copy_from_slice(&i.to_be_bytes());
                match store
                    .cas(&cas_key, cur.as_ref().map(|v| &v.version), Some(next))
                    .await?
                {
                    CasOutcome::Applied(_) => format!("cas {i}"),
                    CasOutcome::Conflict(_) => bail!("unexpected CAS conflict with one writer"),
                }
            }
        };
        let mut o = out.lock();
        writeln!(o, "{line}")?;
        o.flush()?;
    }
    Ok(())
}
