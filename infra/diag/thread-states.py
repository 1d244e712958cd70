#!/usr/bin/env python3
"""Samples what every thread of the running `starling` nodes is doing, every 100 ms.

    infra/diag/thread-states.py OUT.csv [EVERY_SECS]       # record until killed
    infra/diag/thread-states.py --summary OUT.csv [FROM TO] # stalled windows, from the record

Each row is one node at one instant: the machine's busy CPU since the last sample (% of all
cores, from /proc/stat), and per thread kind (`tokio`: the request workers, where the embedded
store's reads run, `blocking`: tokio's blocking pool and the store's own threads (`store-writer`,
`gossip-store`), where its commits, journal writes and housekeeping run, `fjall`:
flushes and compactions, `other`) the CPU the kind used since the last sample (% of one core) and how many
of its threads were running (state R), in a timed sleep (wchan `hrtimer_nanosleep` /
`do_nanosleep`: fjall's write backpressure sleeps on the committing thread), in disk wait
(state D), or idle (anything else: futex, epoll). A node is found by its command line
(`serve` with `--listen`); the column `node` is its listen port. No code of the node changes,
and reading /proc costs the machine well under 1 % of a core.

`--summary` prints, per node, how many samples found a tokio worker (a blocking-pool thread) in
disk wait, then the instants where a node's tokio workers were in a timed sleep or in disk
wait, or where the machine was saturated, merged into windows; its count per node includes the
windows under 0.3 s, which it does not list.
"""
import csv
import os
import sys
import time


def nodes():
    """{pid: port} of the starling nodes running now."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if b"serve" not in args or b"--listen" not in args:
            continue
        i = args.index(b"--listen")
        if i + 1 < len(args):
            out[int(pid)] = args[i + 1].decode(errors="replace").rsplit(":", 1)[-1]
    return out


KINDS = ("tokio", "blocking", "fjall", "other")


def kind(comm):
    # `serve` names its blocking pool's threads `tokio-blocking` and its workers
    # `tokio-worker-N` (before 2026-12-06 both were `tokio-runtime-worker`, all counted as tokio).
    # The store's own threads (its writer, the gossip core's lane) do the same work off the
    # runtime: counted with the pool.
    if comm.startswith(("tokio-blocking", "store-writer", "gossip-store")):
        return "blocking"
    if comm.startswith("tokio"):
        return "tokio"
    if comm.startswith("fjall"):
        return "fjall"
    return "other"


def threads(pid):
    """[(tid, kind, state, wchan, cpu ticks)] of one process."""
    rows = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return rows
    for tid in tids:
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/stat") as f:
                stat = f.read()
            with open(f"{base}/wchan") as f:
                wchan = f.read().strip()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        rest = stat[stat.rindex(")") + 2 :].split()
        # Fields after the name: state is 3rd overall, utime 14th, stime 15th.
        state, ticks = rest[0], int(rest[11]) + int(rest[12])
        rows.append((int(tid), kind(comm), state, wchan, ticks))
    return rows


def machine_ticks():
    with open("/proc/stat") as f:
        cpu = [int(x) for x in f.readline().split()[1:]]
    idle = cpu[3] + cpu[4]
    return sum(cpu) - idle, sum(cpu)


def record(path, every):
    hz = os.sysconf("SC_CLK_TCK")
    fields = ["t", "node", "machine_busy_pct"]
    for k in KINDS:
        fields += [f"{k}_cpu_pct", f"{k}_running", f"{k}_nanosleep", f"{k}_disk", f"{k}_idle"]
    last_ticks = {}
    last_machine = machine_ticks()
    last_t = time.monotonic()
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        while True:
            time.sleep(every)
            now = time.monotonic()
            dt = now - last_t
            last_t = now
            busy, total = machine_ticks()
            machine = 100.0 * (busy - last_machine[0]) / max(1, total - last_machine[1])
            last_machine = (busy, total)
            for pid, port in nodes().items():
                agg = {k: [0.0, 0, 0, 0, 0] for k in KINDS}
                for tid, k, state, wchan, ticks in threads(pid):
                    prev = last_ticks.get(tid, ticks)
                    last_ticks[tid] = ticks
                    a = agg[k]
                    a[0] += 100.0 * (ticks - prev) / hz / dt
                    if state == "R":
                        a[1] += 1
                    elif "nanosleep" in wchan:
                        a[2] += 1
                    elif state == "D":
                        a[3] += 1
                    else:
                        a[4] += 1
                row = [f"{time.time():.2f}", port, f"{machine:.0f}"]
                for k in KINDS:
                    a = agg[k]
                    row += [f"{a[0]:.0f}"] + a[1:]
                w.writerow(row)
            f.flush()


def summary(path, lo, hi):
    """Windows where a node's tokio workers slept in nanosleep or waited on disk, or the
    machine was 95 % busy or more (of all its cores), merged when under 0.5 s apart."""
    events = {}
    # Per node: samples, and those with a worker / a blocking-pool thread in disk wait.
    totals = {}
    with open(path) as f:
        for r in csv.DictReader(f):
            t = float(r["t"])
            if not lo <= t <= hi:
                continue
            n = totals.setdefault(r["node"], [0, 0, 0])
            n[0] += 1
            n[1] += int(r["tokio_disk"]) > 0
            n[2] += int(r.get("blocking_disk") or 0) > 0
            why = []
            if int(r["tokio_nanosleep"]) > 0:
                why.append(f"tokio nanosleep {r['tokio_nanosleep']}")
            if int(r["tokio_disk"]) > 0:
                why.append(f"tokio disk {r['tokio_disk']}")
            if float(r["machine_busy_pct"]) >= 95:
                why.append("machine saturated")
            if why:
                events.setdefault(r["node"], []).append((t, why))
    for node, (n, worker, pool) in sorted(totals.items()):
        print(
            f"node {node}: {n} samples; a tokio worker in disk wait in {worker} "
            f"({100.0 * worker / n:.2f} %), a blocking-pool thread in {pool} ({100.0 * pool / n:.2f} %)"
        )
    for node, evs in sorted(events.items()):
        windows = []
        for t, why in evs:
            if windows and t - windows[-1][1] < 0.5:
                windows[-1][1] = t
                windows[-1][2].update(why)
                windows[-1][3] += 1
            else:
                windows.append([t, t, set(why), 1])
        print(f"node {node}: {len(windows)} windows")
        for a, b, why, n in windows:
            if b - a >= 0.3:
                print(f"  {a:8.1f}-{b:8.1f} s ({b - a:4.1f} s, {n} samples): {', '.join(sorted(why))}")


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "--summary":
        lo = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
        hi = float(sys.argv[4]) if len(sys.argv) > 4 else float("inf")
        summary(sys.argv[2], lo, hi)
    else:
        record(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 0.1)
