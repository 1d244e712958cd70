#!/usr/bin/env bash
# Runs the benchmarks and writes their side-by-side ratios to bench/. Takes a few minutes on
# 2 cores. Usage: infra/bench.sh [kv|gossip|feed|likes|scylla|all]
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-kv}"
case "$what" in
  kv)
    cargo bench -p starling-store --bench kv
    python3 infra/bench-summary.py target/criterion bench/kv.md \
      "Store engines against their baselines (store/benches/kv.rs)" \
      "get:embedded/raw-fjall,hashmap,embedded-inline" "get:memory/hashmap" \
      "put:embedded/raw-fjall,hashmap,embedded-inline" "put:memory/hashmap" \
      "cas:embedded/raw-fjall,hashmap,embedded-inline" "cas:memory/hashmap" \
      "cas-64-clients:embedded/raw-fjall,embedded-inline" "cas-64-clients:memory/raw-fjall" \
      "scan100:embedded/raw-fjall,btreemap,embedded-inline" "scan100:memory/btreemap" \
      "bucket:hashes/records"
    ;;
  gossip)
    # A seeded simulation: writes bench/gossip.md, gossip.json and gossip-rounds.svg itself.
    cargo bench -p starling-gossip --features sim --bench propagation
    ;;
  feed)
    # Fan-out and read figures: writes bench/feed.md itself (FEED_BENCH_USERS=… to shrink).
    cargo bench -p starling-feed --bench feed
    # Reads of users who follow pulled (large) accounts: writes bench/feed-pulled.md.
    cargo bench -p starling-feed --bench pulled
    ;;
  scylla)
    # The ScyllaDB engine beside the embedded one: against STARLING_SCYLLA_NODES, or a local
    # Cassandra started (and stopped) here. Writes bench/scylla.md (and scylla-feed.md) itself.
    if [ -z "${STARLING_SCYLLA_NODES:-}" ]; then
      export STARLING_CASSANDRA_STATE="${TMPDIR:-/tmp}/starling-cassandra-bench-$$"
      trap 'infra/cassandra.sh stop >/dev/null 2>&1 || true' EXIT
      STARLING_SCYLLA_NODES="$(infra/cassandra.sh start)"
      export STARLING_SCYLLA_NODES
    fi
    cargo bench -p starling-store --features scylla --bench scylla
    # The keyspace-wide feed: write cost, end-to-end lag, hand-over. Writes bench/scylla-feed.md.
    cargo bench -p starling-store --features scylla --bench scylla_feed
    ;;
  likes)
    # One hot post against distinct posts (posts/benches/likes.rs): writes bench/likes.md.
    cargo bench -p starling-posts --bench likes
    python3 infra/bench-likes.py target/criterion bench/likes.md
    ;;
  all)
    "$0" kv
    "$0" gossip
    "$0" feed
    "$0" likes
    "$0" scylla
    ;;
  *) echo "unknown benchmark set: $what (kv, gossip, feed, likes, scylla, all)" >&2; exit 2 ;;
esac
