#!/usr/bin/env python3
"""live-heap.py OUTDIR: the glibc node's live heap over a soak (see malloc-stats.sh).

Joins each malloc_stats() total in OUTDIR/soak.log with the line malloc-stats.sh wrote just
before it in OUTDIR/heap.log. in_use is glibc's bytes in use (mmap included), heap_rest what is
left of it without the store's block cache and memtables (so it includes the memtables' skiplist
overhead beyond their counted bytes). MiB."""
import re
import sys

out = sys.argv[1]
totals = []
lines = open(f"{out}/soak.log", errors="replace").read().splitlines()
for i, l in enumerate(lines):
    if l.startswith("Total (incl. mmap)"):
        system = int(re.findall(r"\d+", lines[i + 1])[0])
        in_use = int(re.findall(r"\d+", lines[i + 2])[0])
        totals.append((system, in_use))
samples = [l.split() for l in open(f"{out}/heap.log")]
t0 = int(samples[0][0])
mib = 1 << 20
for (system, in_use), s in zip(totals, samples):
    g = dict(x.split("=") for x in s[1:])
    rss = int(g["rss_kib"]) / 1024
    row = f"t+{int(s[0]) - t0:5d} rss={rss:6.1f} system={system / mib:6.1f} in_use={in_use / mib:6.1f}"
    if "starling_store_block_cache_bytes" in g:
        cache = float(g["starling_store_block_cache_bytes"]) / mib
        mem = float(g["starling_store_memtable_bytes"]) / mib
        row += f" cache={cache:6.1f} mem={mem:5.1f} heap_rest={in_use / mib - cache - mem:6.1f} tables={g['starling_store_tables']}"
    print(row)
