#!/usr/bin/env python3
"""Samples where a running node's store files are: fjall's journals and each keyspace's tables.

The soak counts the store's files as one number (`disk_kib`); this splits it, so that growth can
be put on a part: the journals (`kv/*.jnl`, shared by every keyspace, removed only once every
keyspace holding data in one has flushed it), and the keyspaces (`kv/keyspaces/N`: 0 is fjall's
own, then the engine's spaces in the order it opens them: 1 data, 2 index, 3 changes, 4 meta,
5 tombs, the tombstone index).

    infra/diag/store-files.py OUT.csv [--exe PATH] [--every SECONDS]

finds every running `starling serve` (only those whose executable is PATH with --exe), reads its
--data-dir and appends one row per node and sample to OUT.csv until no node is left: seconds since
the sampler started, node (the data directory's name), journals_kib, journal_files, then
ks<N>_kib and ks<N>_tables for each keyspace. Allocated blocks, as the soak counts them.
"""

import argparse
import csv
import os
import sys
import time

SPACES = {0: "fjall", 1: "data", 2: "index", 3: "changes", 4: "meta", 5: "tombs"}


def nodes(exe):
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            if exe and os.readlink(f"/proc/{pid}/exe") != exe:
                continue
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in args]
        if len(args) < 2 or args[1] != "serve" or "--data-dir" not in args:
            continue
        i = args.index("--data-dir")
        if i + 1 < len(args):
            d = args[i + 1]
            if not os.path.isabs(d):
                try:
                    d = os.path.join(os.readlink(f"/proc/{pid}/cwd"), d)
                except OSError:
                    continue
            found[d] = os.path.basename(d.rstrip("/"))
    return found


def allocated(path):
    """Allocated bytes and file count under path (files vanishing meanwhile count as 0)."""
    total, files = 0, 0
    for root, _, names in os.walk(path):
        for n in names:
            try:
                total += os.lstat(os.path.join(root, n)).st_blocks * 512
                files += 1
            except OSError:
                pass
    return total, files


def sample(data_dir):
    kv = os.path.join(data_dir, "kv")
    row = {}
    jn, jf = 0, 0
    try:
        for n in os.listdir(kv):
            if n.endswith(".jnl"):
                try:
                    jn += os.lstat(os.path.join(kv, n)).st_blocks * 512
                    jf += 1
                except OSError:
                    pass
    except OSError:
        return None
    row["journals_kib"] = jn // 1024
    row["journal_files"] = jf
    for ks, name in SPACES.items():
        b, _ = allocated(os.path.join(kv, "keyspaces", str(ks)))
        _, t = allocated(os.path.join(kv, "keyspaces", str(ks), "tables"))
        row[f"{name}_kib"] = b // 1024
        row[f"{name}_tables"] = t
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--exe", help="only nodes running this executable")
    ap.add_argument("--every", type=float, default=10.0)
    args = ap.parse_args()
    exe = os.path.realpath(args.exe) if args.exe else None
    fields = ["seconds", "node", "journals_kib", "journal_files"] + [
        f"{n}_{k}" for n in SPACES.values() for k in ("kib", "tables")
    ]
    start = time.monotonic()
    seen = False
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        while True:
            found = nodes(exe)
            if not found:
                if seen:
                    return
                time.sleep(1)
                continue
            seen = True
            at = round(time.monotonic() - start, 1)
            for d, name in sorted(found.items()):
                row = sample(d)
                if row is not None:
                    w.writerow({"seconds": at, "node": name, **row})
            f.flush()
            time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
