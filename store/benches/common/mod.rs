//! What the ScyllaDB benchmarks share: the CQL nodes they need (`STARLING_SCYLLA_NODES`), their
//! runtime, and what a benchmark page states about its run ([`report`]).
#![allow(dead_code, unreachable_pub)] // each bench uses what it needs

pub mod report;

/// The CQL nodes in `STARLING_SCYLLA_NODES` (`host:port,…`); exits with a hint when unset.
pub fn scylla_nodes() -> Vec<String> {
    let Ok(nodes) = std::env::var("STARLING_SCYLLA_NODES") else {
        eprintln!("STARLING_SCYLLA_NODES is not set: run `infra/bench.sh scylla`");
        std::process::exit(2);
    };
    nodes.split(',').map(|s| s.trim().to_string()).collect()
}

/// The runtime the ScyllaDB benches run on: two workers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
