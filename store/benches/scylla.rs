//! The ScyllaDB engine beside the embedded engine, in one process, on the same keys and values:
//! get, put, CAS and a 50-item single-entity scan, each one client at a time (latency: mean,
//! p50, p99) and 32 clients at once (throughput). Writes `bench/scylla.md`.
//!
//! Needs a CQL node: `STARLING_SCYLLA_NODES=host:port cargo bench -p starling-store --features
//! scylla --bench scylla` (`infra/bench.sh scylla` starts a local Cassandra for it).

mod common;

use bytes::Bytes;
use starling_store::{
    CasOutcome, EmbeddedOptions, HlcClock, Keyspace, NodeId, RegionId, ScanRequest, ScyllaOptions,
    Store, StoreExt, Writers, open_embedded, open_scylla,
};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KS: Keyspace = Keyspace::new("bench");
const KEYS: u64 = 2000;
const ENTITIES: u64 = 20;
const ITEMS: u64 = 50;
const SEQUENTIAL: usize = 600;
const CLIENTS: usize = 32;
const PER_CLIENT: usize = 40;
const VALUE: [u8; 100] = [7u8; 100];

fn key(i: u64) -> starling_store::Key {
    KS.key().u64(i % KEYS).finish()
}

fn item(e: u64, i: u64) -> starling_store::Key {
    KS.key().u64(1_000_000 + e).u64(i).finish()
}

/// A cheap deterministic sequence.
fn mix(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Get,
    Put,
    Cas,
    Scan50,
}

const OPS: [Op; 4] = [Op::Get, Op::Put, Op::Cas, Op::Scan50];

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Put => "put",
            Op::Cas => "cas",
            Op::Scan50 => "scan50",
        }
    }
}

/// One timed operation number `n`; for CAS, the untimed read of the current version comes first.
async fn run_op(s: &Arc<dyn Store>, op: Op, n: u64) -> Duration {
    let r = mix(n.wrapping_add(0x9e37_79b9));
    let v = Bytes::from_static(&VALUE);
    match op {
        Op::Get => {
            let t = Instant::now();
            s.get(&key(r)).await.expect("get");
            t.elapsed()
        }
        Op::Put => {
            let t = Instant::now();
            s.put(&key(r), v).await.expect("put");
            t.elapsed()
        }
        Op::Cas => {
            let k = key(r);
            let cur = s.get(&k).await.expect("get");
            let t = Instant::now();
            let out = s
                .cas(&k, cur.as_ref().map(|c| &c.version), Some(v))
                .await
                .expect("cas");
            let d = t.elapsed();
            // Another client may have won the race on this key: a conflict is a valid answer.
            let _ = matches!(out, CasOutcome::Applied(_));
            d
        }
        Op::Scan50 => {
            let prefix = KS.key().u64(1_000_000 + r % ENTITIES).finish();
            let t = Instant::now();
            let page = s
                .scan(&ScanRequest::prefix(prefix, ITEMS as usize))
                .await
                .expect("scan");
            assert_eq!(page.items.len(), ITEMS as usize);
            t.elapsed()
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    mean: Duration,
    p50: Duration,
    p99: Duration,
    /// Operations per second with [`CLIENTS`] concurrent clients.
    throughput: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summarize(mut lat: Vec<Duration>, throughput: f64) -> Figures {
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
    Figures {
        mean,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        throughput,
    }
}

async fn measure(s: &Arc<dyn Store>, op: Op) -> Figures {
    // Warm up connections, caches and prepared statements.
    for n in 0..50 {
        run_op(s, op, n).await;
    }
    let mut lat = Vec::with_capacity(SEQUENTIAL);
    for n in 0..SEQUENTIAL as u64 {
        lat.push(run_op(s, op, 1000 + n).await);
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS as u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..PER_CLIENT as u64 {
                run_op(&s, op, 100_000 * (c + 1) + n).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let throughput = (CLIENTS * PER_CLIENT) as f64 / t.elapsed().as_secs_f64();
    summarize(lat, throughput)
}

/// The raw driver on plain tables: the round trip the engine cannot beat. `get` and `put` by
/// key, `cas` as one LWT (`IF v = ?`) after an untimed read, `scan50` as one partition read.
struct RawCql {
    session: scylla::client::session::Session,
    get: scylla::statement::prepared::PreparedStatement,
    put: scylla::statement::prepared::PreparedStatement,
    cas: scylla::statement::prepared::PreparedStatement,
    scan: scylla::statement::prepared::PreparedStatement,
}

impl RawCql {
    async fn open(nodes: &[String], ks: &str) -> RawCql {
        let session = scylla::client::session_builder::SessionBuilder::new()
            .known_nodes(nodes)
            .build()
            .await
            .expect("session");
        for stmt in [
            format!("CREATE TABLE IF NOT EXISTS {ks}.raw (k bigint PRIMARY KEY, v blob)"),
            format!(
                "CREATE TABLE IF NOT EXISTS {ks}.raw_scan (p bigint, i bigint, v blob, \
                 PRIMARY KEY ((p), i))"
            ),
        ] {
            session.query_unpaged(stmt, ()).await.expect("raw table");
        }
        let get = session
            .prepare(format!("SELECT v FROM {ks}.raw WHERE k = ?"))
            .await
            .expect("prepare");
        let put = session
            .prepare(format!("INSERT INTO {ks}.raw (k, v) VALUES (?, ?)"))
            .await
            .expect("prepare");
        let cas = session
            .prepare(format!("UPDATE {ks}.raw SET v = ? WHERE k = ? IF v = ?"))
            .await
            .expect("prepare");
        let scan = session
            .prepare(format!(
                "SELECT i, v FROM {ks}.raw_scan WHERE p = ? LIMIT 50"
            ))
            .await
            .expect("prepare");
        let insert_scan = session
            .prepare(format!(
                "INSERT INTO {ks}.raw_scan (p, i, v) VALUES (?, ?, ?)"
            ))
            .await
            .expect("prepare");
        for k in 0..KEYS as i64 {
            session
                .execute_unpaged(&put, (k, &VALUE[..]))
                .await
                .expect("load");
        }
        for e in 0..ENTITIES as i64 {
            for i in 0..ITEMS as i64 {
                session
                    .execute_unpaged(&insert_scan, (e, i, &VALUE[..]))
                    .await
                    .expect("load");
            }
        }
        RawCql {
            session,
            get,
            put,
            cas,
            scan,
        }
    }

    async fn run(&self, op: Op, n: u64) -> Duration {
        let r = mix(n.wrapping_add(0x9e37_79b9));
        let k = (r % KEYS) as i64;
        match op {
            Op::Get => {
                let t = Instant::now();
                self.session
                    .execute_unpaged(&self.get, (k,))
                    .await
                    .expect("get");
                t.elapsed()
            }
            Op::Put => {
                let t = Instant::now();
                self.session
                    .execute_unpaged(&self.put, (k, &VALUE[..]))
                    .await
                    .expect("put");
                t.elapsed()
            }
            Op::Cas => {
                let cur: Option<Vec<u8>> = self
                    .session
                    .execute_unpaged(&self.get, (k,))
                    .await
                    .expect("get")
                    .into_rows_result()
                    .expect("rows")
                    .maybe_first_row::<(Option<Vec<u8>>,)>()
                    .expect("row")
                    .and_then(|(v,)| v);
                let t = Instant::now();
                self.session
                    .execute_unpaged(&self.cas, (&VALUE[..], k, cur))
                    .await
                    .expect("cas");
                t.elapsed()
            }
            Op::Scan50 => {
                let t = Instant::now();
                self.session
                    .execute_unpaged(&self.scan, ((r % ENTITIES) as i64,))
                    .await
                    .expect("scan");
                t.elapsed()
            }
        }
    }
}

async fn measure_raw(raw: &Arc<RawCql>, op: Op) -> Figures {
    for n in 0..50 {
        raw.run(op, n).await;
    }
    let mut lat = Vec::with_capacity(SEQUENTIAL);
    for n in 0..SEQUENTIAL as u64 {
        lat.push(raw.run(op, 1000 + n).await);
    }
    let t = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS as u64 {
        let raw = raw.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..PER_CLIENT as u64 {
                raw.run(op, 100_000 * (c + 1) + n).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("client");
    }
    let throughput = (CLIENTS * PER_CLIENT) as f64 / t.elapsed().as_secs_f64();
    summarize(lat, throughput)
}

async fn load(s: &Arc<dyn Store>) {
    let v = Bytes::from_static(&VALUE);
    let mut tasks = Vec::new();
    for c in 0..16u64 {
        let s = s.clone();
        let v = v.clone();
        tasks.push(tokio::spawn(async move {
            for i in (c..KEYS).step_by(16) {
                s.put(&key(i), v.clone()).await.expect("load");
            }
            for e in (c..ENTITIES).step_by(16) {
                for i in 0..ITEMS {
                    s.add(&item(e, i), v.clone()).await.expect("load");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("loader");
    }
}

fn us(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let nodes = common::scylla_nodes();
    let rt = common::runtime();
    let node = NodeId::new(RegionId::from_name("bench"), 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = std::process::id();
    let ks_names = [format!("bench_shared_{tag}"), format!("bench_single_{tag}")];
    let mut rows: Vec<(Op, Figures, Figures, Figures, Figures)> = Vec::new();
    rt.block_on(async {
        let embedded = open_embedded(
            node,
            Arc::new(HlcClock::new()),
            &EmbeddedOptions::new(dir.path()),
        )
        .expect("embedded");
        let mut shared_o = ScyllaOptions::new(nodes.clone(), ks_names[0].clone());
        shared_o.writers = Writers::Shared;
        let mut single_o = ScyllaOptions::new(nodes.clone(), ks_names[1].clone());
        single_o.writers = Writers::Single;
        let shared = open_scylla(node, Arc::new(HlcClock::new()), &shared_o)
            .await
            .expect("scylla");
        let single = open_scylla(node, Arc::new(HlcClock::new()), &single_o)
            .await
            .expect("scylla");
        for s in [&embedded, &shared, &single] {
            load(s).await;
        }
        let raw = Arc::new(RawCql::open(&nodes, &ks_names[1]).await);
        for op in OPS {
            let e = measure(&embedded, op).await;
            let r = measure_raw(&raw, op).await;
            let sh = measure(&shared, op).await;
            let si = measure(&single, op).await;
            eprintln!(
                "{}: embedded {e:?} raw {r:?} shared {sh:?} single {si:?}",
                op.name()
            );
            rows.push((op, e, r, sh, si));
        }
        let s = scylla::client::session_builder::SessionBuilder::new()
            .known_nodes(&nodes)
            .build()
            .await
            .expect("session");
        for ks in &ks_names {
            let _ = s
                .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
                .await;
        }
    });
    let commit = common::report::commit();
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# ScyllaDB engine beside the embedded engine (store/benches/scylla.rs)\n\n\
         Command: `infra/bench.sh scylla` (a local single-node Apache Cassandra 5.0 from \
         infra/cassandra.sh, or the cluster in `STARLING_SCYLLA_NODES`).\n\n\
         Run at commit `{commit}` on {} cores, loopback, one process; CQL node on the same \
         machine (replication factor 1, LOCAL_QUORUM). Engines hold the same {KEYS} keys of 100 \
         bytes plus {ENTITIES} entities × {ITEMS} set elements. Latency: one client, {SEQUENTIAL} \
         operations; throughput: {CLIENTS} concurrent clients × {PER_CLIENT} operations. CAS \
         times the `cas` call only (its read of the current version is not timed). `shared` = \
         every record write a lightweight transaction (several Starling nodes per keyspace, the \
         default); `single` = one LOGGED batch per write (`?writers=single`, one node per keyspace).\n",
        common::report::cores(),
    );
    let _ = writeln!(
        md,
        "| op | engine | mean | p50 | p99 | ops/s ({CLIENTS} clients) | p99 ÷ embedded | ops/s ÷ embedded | mean ÷ raw CQL |\n|---|---|---|---|---|---|---|---|---|"
    );
    for (op, e, r, sh, si) in &rows {
        for (name, f) in [
            ("embedded", e),
            ("raw CQL (driver only)", r),
            ("scylla shared", sh),
            ("scylla single", si),
        ] {
            let _ = writeln!(
                md,
                "| {} | {name} | {} | {} | {} | {:.0} | {:.1}× | {:.3}× | {:.2}× |",
                op.name(),
                us(f.mean),
                us(f.p50),
                us(f.p99),
                f.throughput,
                f.p99.as_secs_f64() / e.p99.as_secs_f64(),
                f.throughput / e.throughput,
                f.mean.as_secs_f64() / r.mean.as_secs_f64(),
            );
        }
    }
    let _ = writeln!(
        md,
        "\nRaw CQL is the driver alone on plain tables (`get`/`put` by key, `cas` one LWT, \
         `scan50` one partition read): the floor for any engine over this cluster. The engine \
         adds to it the read of read-modify-write (put: read + change-feed row + record, the \
         latter two one LOGGED batch in `single` mode; CAS in `shared` mode: a `LOCAL_SERIAL` read + the LWT) and record decoding. The embedded \
         engine answers in-process, so the ratios to it are mostly the loopback round trip to a \
         JVM sharing the same 2 cores; a real ScyllaDB cluster on its own machines has lower \
         and steadier latency than this Cassandra."
    );
    print!("{md}");
    let out = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/scylla.md");
    std::fs::write(out, md).expect("writing bench/scylla.md");
}
