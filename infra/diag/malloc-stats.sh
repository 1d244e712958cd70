#!/usr/bin/env bash
# malloc-stats.sh PORT OUTDIR [EVERY]: every EVERY seconds (90), makes the glibc-malloc node
# (see glibc-node.sh) print malloc_stats() to its stderr, which the soak copies into
# OUTDIR/soak.log, and appends to OUTDIR/heap.log the time, the node's RSS and its store gauges
# from http://127.0.0.1:PORT/metrics. Each call stops the node for 1-3 s (gdb attaches), so
# the run's latency is not the node's. live-heap.py joins the two into the heap series.
set -uo pipefail
port="$1"
out="$2"
every="${3:-90}"
while true; do
  # The node listening on PORT, whatever its binary is called (glibc-node.sh's GLIBC_BIN).
  for pid in $(pgrep -f -- "--listen 127.0.0.1:$port( |$)"); do
    m=$(curl -s --max-time 5 "http://127.0.0.1:$port/metrics" |
      grep -E "^starling_store_(memtable_bytes|block_cache_bytes|tables) " |
      awk '{printf "%s=%s ", $1, $2}')
    echo "$(date +%s) rss_kib=$(awk '/VmRSS/{print $2}' "/proc/$pid/status") $m" >>"$out/heap.log"
    timeout 30 gdb -p "$pid" -batch -ex 'call (void)malloc_stats()' >/dev/null 2>&1
  done
  sleep "$every"
done
