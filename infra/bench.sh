#!/usr/bin/env bash
# Runs the benchmarks and writes their side-by-side ratios to bench/. Takes a few minutes on
# 2 cores. Usage: infra/bench.sh [kv]
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-kv}"
case "$what" in
  kv)
    cargo bench -p starling-store --bench kv
    python3 infra/bench-summary.py target/criterion bench/kv.md \
      "Store engines against their baselines (store/benches/kv.rs)" \
      "get:embedded/raw-fjall,hashmap" "get:memory/hashmap" \
      "put:embedded/raw-fjall,hashmap" "put:memory/hashmap" \
      "cas:embedded/raw-fjall,hashmap" "cas:memory/hashmap" \
      "cas-64-clients:embedded/raw-fjall" "cas-64-clients:memory/raw-fjall" \
      "scan100:embedded/raw-fjall,btreemap" "scan100:memory/btreemap"
    ;;
  *) echo "unknown benchmark set: $what" >&2; exit 2 ;;
esac
