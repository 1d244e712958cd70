//! `kill -9` durability of the embedded engine: a child process writes and reports each
//! acknowledged write; the parent kills it with SIGKILL at seeded random moments, reopens the
//! store, and checks that every acknowledged write is there, intact, and nothing is corrupt.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use starling_store::{
    EmbeddedOptions, HlcClock, NodeId, RegionId, ScanRequest, StoreExt, open_embedded,
};
use starling_tests::{CAS, ELEMENTS, REGISTERS, counter_key, register_key, register_value};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

#[derive(Default)]
struct Acked {
    puts: Vec<u64>,
    adds: Vec<u64>,
    incrs: i64,
    last_cas: Option<u64>,
    next: u64,
    rounds: i64,
}

/// Runs one writer until it is killed; returns after recording what it acknowledged.
fn round(dir: &std::path::Path, fsync: &str, acked: &mut Acked, rng: &mut StdRng) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kv-writer"))
        .arg(dir)
        .arg(acked.next.to_string())
        .arg(fsync)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start kv-writer");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    std::thread::sleep(Duration::from_millis(rng.random_range(30..400)));
    child.kill().expect("SIGKILL the writer");
    child.wait().expect("reap the writer");
    for line in reader.join().expect("reader thread") {
        let (what, i) = line.split_once(' ').expect("ack line");
        let i: u64 = i.parse().expect("ack index");
        match what {
            "put" => acked.puts.push(i),
            "add" => acked.adds.push(i),
            "incr" => acked.incrs += 1,
            "cas" => acked.last_cas = Some(i),
            other => panic!("unknown ack {other}"),
        }
        acked.next = acked.next.max(i + 1);
    }
    acked.rounds += 1;
    // Indices a killed writer may have started but not acknowledged are skipped, not reused.
    acked.next += 4;
}

async fn verify(dir: &std::path::Path, acked: &Acked) {
    let node = NodeId::new(RegionId::from_name("test"), 1);
    let store = open_embedded(node, Arc::new(HlcClock::new()), &EmbeddedOptions::new(dir))
        .expect("a killed store reopens");
    for &i in &acked.puts {
        let v = store.get(&register_key(i)).await.expect("read");
        let v = v.unwrap_or_else(|| panic!("acknowledged put {i} lost"));
        assert_eq!(
            v.value.as_deref(),
            Some(&register_value(i)[..]),
            "put {i} intact"
        );
    }
    for &i in &acked.adds {
        let v = store
            .get(&ELEMENTS.key().u64(i).finish())
            .await
            .expect("read");
        assert!(
            v.and_then(|v| v.value).is_some(),
            "acknowledged add {i} lost"
        );
    }
    let n = store.counter(&counter_key()).await.expect("counter");
    // At most one increment per round may have been applied without its acknowledgement.
    assert!(
        n >= acked.incrs,
        "counter {n} lost acknowledged increments ({})",
        acked.incrs
    );
    assert!(
        n <= acked.incrs + acked.rounds,
        "counter {n} counts increments never made"
    );
    if let Some(i) = acked.last_cas {
        let v = store
            .get(&CAS.key().finish())
            .await
            .expect("read")
            .expect("cas key");
        let stored = u64::from_be_bytes(v.value.expect("value").as_ref().try_into().expect("u64"));
        assert!(stored >= i, "acknowledged cas {i} lost (stored {stored})");
    }
    // Every stored record decodes: scan all registers, tombstones included.
    let mut req = ScanRequest::prefix(REGISTERS.prefix(), 1000);
    req.include_tombstones = true;
    loop {
        let page = store.scan(&req).await.expect("scan decodes every record");
        match page.next {
            Some(n) => req.after = Some(n),
            None => break,
        }
    }
    // The change feed reopens too.
    store.changes(0, 10).await.expect("change feed readable");
}

fn kill9_rounds(fsync: &str, seed: u64, rounds: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut acked = Acked::default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    for _ in 0..rounds {
        round(dir.path(), fsync, &mut acked, &mut rng);
        rt.block_on(verify(dir.path(), &acked));
    }
    assert!(
        acked.puts.len() > rounds,
        "the writer made progress ({} puts)",
        acked.puts.len()
    );
    eprintln!(
        "fsync={fsync}: {rounds} kills, {} puts, {} adds, {} increments verified",
        acked.puts.len(),
        acked.adds.len(),
        acked.incrs
    );
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    kill9_rounds("never", 0x5eed_0001, 20);
}

#[test]
fn acknowledged_writes_survive_kill_9_with_fsync_always() {
    kill9_rounds("always", 0x5eed_0002, 20);
}
