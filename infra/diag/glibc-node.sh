#!/usr/bin/env bash
# A STARLING_TEST_WRAP for the soak: runs the node whose --node-id is $GLIBC_NODE (default eu0)
# with a starling binary built on glibc's malloc ($GLIBC_BIN, default /tmp/starling-glibc), the
# others as they are. glibc's malloc_stats() then gives that node's live heap (malloc-stats.sh),
# which mimalloc's release build does not expose.
#
#   cargo build --release -p starling-api --no-default-features --features heap-count --bin starling
#   cp target/release/starling /tmp/starling-glibc
#   STARLING_TEST_WRAP=$PWD/infra/diag/glibc-node.sh STARLING_FAULT_SEED=23 \
#     STARLING_SOAK_RATE=3197 STARLING_SOAK_GROW_SECS=0 SOAK_OUT=/tmp/run infra/soak.sh 1500
#   infra/diag/malloc-stats.sh PORT /tmp/run &   # PORT: the glibc node's HTTP port (ps, --listen)
set -euo pipefail
bin="$1"
shift
for a in "$@"; do
  if [ "$a" = "${GLIBC_NODE:-eu0}" ]; then bin="${GLIBC_BIN:-/tmp/starling-glibc}"; fi
done
exec "$bin" "$@"
