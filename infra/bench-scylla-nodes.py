#!/usr/bin/env python3
"""A region of Starling nodes on one ScyllaDB keyspace, through the real binary: lease hand-over
when a node dies, and CPU per request with 1, 2 and 3 nodes.

    infra/bench-scylla-nodes.py handover BIN HOST:PORT [TRIALS] [POSTS]
    infra/bench-scylla-nodes.py cpu BIN LOAD HOST:PORT [ROUNDS] [RATE] [SECONDS]

BIN is a `starling` binary and LOAD a `starling-load` binary (copy release builds first),
HOST:PORT a CQL node (`infra/cassandra.sh start` prints one); `redis-server` must be on the PATH:
every region here shares one, as a region of nodes should (`--redis`: timelines in Redis, the
holder's fan-out invalidates the other nodes' copies).

handover: three nodes on one keyspace; each trial first posts POSTS (default 8) posts through a
node with every node alive (the baseline), then `kill -9`s the node holding the most partitions
of the keyspace-wide feed (`starling_keyspace_feed_partitions_held` on `/metrics`), at once posts
POSTS posts through a survivor and reads the follower's home feed every 20 ms through the other
survivor until every post shows: a post whose partition the dead node held waits for its lease
(10 s) to expire and a survivor to claim it. Then the dead node restarts under its id and the
next trial waits until the three nodes split the 32 partitions again. Default 5 trials.

cpu: the same offered load (`starling-load`, open loop, RATE requests/s, default 150, mix
`read=90,post=10`, SECONDS measured, default 30) spread over 1, 2 or 3 nodes of a fresh keyspace,
alternated (1 2 3 1 2 3 …, ROUNDS rounds, default 2). CPU seconds of every Starling process
(`/proc/PID/stat` utime + stime, before and after the measured run) per request served, and
apart, the CQL node's (the pid in `$STARLING_CASSANDRA_STATE/pid`, default
/tmp/starling-cassandra-$UID/pid) and Redis's. The setup (sign-ups, follows, posts) is a separate
`starling-load` run saved with `--sessions`, outside the measured window. Also the idle CPU of
the nodes over 10 s before the load (leases, polls, gossip).

Prints Markdown tables and the load average.
"""

import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

_spec = importlib.util.spec_from_file_location(
    "region", os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench-scylla-region.py"))
region = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(region)
call, free_port, sign_up = region.call, region.free_port, region.sign_up

PARTITIONS = 32
TICKS = os.sysconf("SC_CLK_TCK")


def metric(port, name):
    """A metric's value on the node at `port` (None when absent or the node does not answer)."""
    try:
        with region.urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def held(ports):
    return [metric(p, "starling_keyspace_feed_partitions_held") or 0 for p in ports]


def wait_split(ports, limit=120):
    """Waits until the nodes at `ports` hold every partition, each some; seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        h = held(ports)
        if sum(h) == PARTITIONS and all(x > 0 for x in h):
            return time.monotonic() - t0
        time.sleep(0.2)
    raise SystemExit(f"the nodes did not split the partitions in {limit} s: {held(ports)}")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def start_redis(work):
    port = free_port()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no",
                          "--bind", "127.0.0.1"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, cwd=work)
    while True:
        try:
            region.socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return p, f"redis://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)


def node(bin_, cql, ks, name, redis, reg, work):
    return region.start(bin_, ["--store", f"scylla://{cql}/{ks}", "--node-id", name,
                               "--data-dir", f"{work}/{name}", "--redis", redis,
                               "--region", reg], work)


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def feed_ids(port, tok):
    s, page = call(port, "GET", "/v1/feed?limit=50", tok)
    return {it["id"] for it in page["items"]} if s in (200, 206) and page else set()


def post_and_watch(post_port, read_port, a_tok, f_tok, n, t_ref):
    """Posts `n` posts through `post_port`, then reads the follower's feed through `read_port`
    every 20 ms until all show (60 s at most): per post, (ms from its 201, ms from `t_ref`)."""
    posted = {}
    for i in range(n):
        s, v = call(post_port, "POST", "/v1/posts", a_tok, {"text": f"hand-over {i}"})
        assert s == 201, s
        posted[v["id"]] = time.monotonic()
    out = {}
    while len(out) < len(posted) and time.monotonic() - t_ref < 60:
        now_ids = feed_ids(read_port, f_tok)
        now = time.monotonic()
        for pid, t in posted.items():
            if pid not in out and pid in now_ids:
                out[pid] = ((now - t) * 1000, (now - t_ref) * 1000)
        time.sleep(0.02)
    return [out.get(pid, (float("inf"), float("inf"))) for pid in posted]


def handover(bin_, cql, trials, posts):
    work = tempfile.mkdtemp(prefix="bench-handover-")
    redis, rurl = start_redis(work)
    ks = f"bench_handover_{os.getpid()}"
    reg = f"ho{os.getpid()}"
    names = ["n0", "n1", "n2"]
    nodes = {n: node(bin_, cql, ks, n, rurl, reg, work) for n in names}
    rows, base = [], []
    print("load at the start:", open("/proc/loadavg").read().strip())
    try:
        wait_split([nodes[n][1] for n in names])
        a_id, a_tok = sign_up(nodes["n0"][1], f"ho_a{os.getpid()}")
        _, f_tok = sign_up(nodes["n1"][1], f"ho_f{os.getpid()}")
        assert call(nodes["n1"][1], "PUT", f"/v1/following/{a_id}", f_tok)[0] == 204
        for t in range(trials):
            ports = {n: nodes[n][1] for n in names}
            h = dict(zip(names, held(list(ports.values()))))
            victim = max(h, key=h.get)
            alive = [n for n in names if n != victim]
            # Baseline: every node alive, the same posting and reading nodes.
            for p in ports.values():
                feed_ids(p, f_tok)
            got = post_and_watch(ports[alive[0]], ports[alive[1]], a_tok, f_tok, posts,
                                 time.monotonic())
            base += [g[0] for g in got]
            # The kill.
            proc = nodes[victim][0]
            t_kill = time.monotonic()
            proc.kill()
            proc.wait()
            got = post_and_watch(ports[alive[0]], ports[alive[1]], a_tok, f_tok, posts, t_kill)
            # When the survivors hold every partition (as /metrics shows it).
            while sum(held([ports[n] for n in alive])) < PARTITIONS and time.monotonic() - t_kill < 60:
                time.sleep(0.1)
            all_held = (time.monotonic() - t_kill) * 1000
            slow = max(got, key=lambda g: g[0])
            delayed = sum(1 for g in got if g[0] > 1000)
            rows.append((t + 1, victim, h[victim], delayed, slow[0], slow[1], all_held))
            print(f"trial {t + 1}: killed {victim} ({h[victim]:.0f} partitions), {delayed} of "
                  f"{posts} posts held back, slowest {slow[0]:.0f} ms from its 201, all held "
                  f"after {all_held:.0f} ms; load {open('/proc/loadavg').read().strip()}",
                  file=sys.stderr)
            nodes[victim] = node(bin_, cql, ks, victim, rurl, reg, work)
            wait_split([nodes[n][1] for n in names])
    finally:
        stop([p for p, _ in nodes.values()] + [redis])
    print("| trial | killed | its partitions | posts held back | slowest post, from its 201 "
          "| from the kill | survivors hold all 32, from the kill |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]} of {posts} | {r[4]:.0f} ms | {r[5]:.0f} ms "
              f"| {r[6]:.0f} ms |")
    slow = [r[4] for r in rows]
    kill = [r[5] for r in rows]
    claim = [r[6] for r in rows]
    print(f"\n- slowest post per trial (fan-out latency across a hand-over): median "
          f"{statistics.median(slow):.0f} ms, max {max(slow):.0f} ms; from the kill: median "
          f"{statistics.median(kill):.0f} ms, max {max(kill):.0f} ms")
    print(f"- survivors hold all {PARTITIONS} partitions: median {statistics.median(claim):.0f} ms,"
          f" max {max(claim):.0f} ms after the kill")
    print(f"- baseline (all nodes alive, same trials): {len(base)} posts, median "
          f"{statistics.median(base):.0f} ms, max {max(base):.0f} ms")
    print("- lease expiry configured: 10 s (LeaseConfig::default: lease 10 s, member TTL 10 s)")
    print("load at the end:", open("/proc/loadavg").read().strip())


def cassandra_pid():
    state = os.environ.get("STARLING_CASSANDRA_STATE", f"/tmp/starling-cassandra-{os.getuid()}")
    with open(f"{state}/pid") as f:
        return int(f.read().strip())


def load(load_bin, targets, args):
    subprocess.run([load_bin, "run", "--target", ",".join(targets), "--quiet", *args],
                   check=True, stdout=subprocess.DEVNULL)


def cpu(bin_, load_bin, cql, rounds, rate, seconds):
    work = tempfile.mkdtemp(prefix="bench-cpu-")
    cass = cassandra_pid()
    res = {n: [] for n in (1, 2, 3)}
    print("load at the start:", open("/proc/loadavg").read().strip())
    for r in range(rounds):
        for n in (1, 2, 3):
            redis, rurl = start_redis(work)
            ks = f"bench_cpu_{os.getpid()}_{r}_{n}"
            reg = f"cpu{os.getpid()}{r}{n}"
            procs = [node(bin_, cql, ks, f"c{r}{n}{i}", rurl, reg, work) for i in range(n)]
            ports = [p for _, p in procs]
            targets = [f"http://127.0.0.1:{p}" for p in ports]
            try:
                wait_split(ports)
                sessions = f"{work}/{ks}.sessions"
                load(load_bin, targets, ["--sessions", sessions, "--users", "100", "--follows",
                                         "10", "--posts", "2", "--mix", "read=1", "--rate", "10",
                                         "--duration", "1s", "--warmup", "0s"])
                time.sleep(3)  # the set-up's fan-out settles
                pids = [p.pid for p, _ in procs]
                i0 = sum(cpu_seconds(p) for p in pids)
                time.sleep(10)
                idle = (sum(cpu_seconds(p) for p in pids) - i0) / 10
                s0 = sum(cpu_seconds(p) for p in pids)
                c0, r0 = cpu_seconds(cass), cpu_seconds(redis.pid)
                report = f"{work}/{ks}.json"
                load(load_bin, targets, ["--sessions", sessions, "--users", "100",
                                         "--mix", "read=90,post=10",
                                         "--rate", str(rate), "--duration", f"{seconds}s",
                                         "--warmup", "0s", "--report", report])
                s1 = sum(cpu_seconds(p) for p in pids)
                c1, r1 = cpu_seconds(cass), cpu_seconds(redis.pid)
                rep = json.load(open(report))
                ok = sum(o["ok"] for o in rep["ops"].values())
                err = sum(o["errors"] for o in rep["ops"].values())
                p99 = max(o["latency_us"]["p99"] for o in rep["ops"].values() if o["ok"])
                res[n].append(((s1 - s0) / ok * 1000, (c1 - c0) / ok * 1000,
                               (r1 - r0) / ok * 1000, ok, err, idle, p99))
                print(f"round {r + 1}, {n} node(s): {ok} ok, {err} errors, Starling "
                      f"{(s1 - s0) / ok * 1000:.2f} ms CPU/request, Cassandra "
                      f"{(c1 - c0) / ok * 1000:.2f}, idle {idle:.3f} CPU s/s; load "
                      f"{open('/proc/loadavg').read().strip()}", file=sys.stderr)
            finally:
                stop([p for p, _ in procs] + [redis])
    print(f"| nodes on the keyspace | requests ok (errors) | Starling CPU per request (all nodes) "
          f"| ratio to 1 node | Cassandra CPU per request | Redis CPU per request | Starling idle "
          f"CPU (all nodes) | p99 latency |\n|---|---|---|---|---|---|---|---|")
    one = statistics.mean(x[0] for x in res[1])
    for n, xs in res.items():
        m = lambda i: statistics.mean(x[i] for x in xs)
        print(f"| {n} | {sum(x[3] for x in xs)} ({sum(x[4] for x in xs)}) | {m(0):.2f} ms "
              f"| {m(0) / one:.2f}x | {m(1):.2f} ms | {m(2):.3f} ms | {m(5) * 1000:.0f} ms/s "
              f"| {max(x[6] for x in xs) / 1000:.0f} ms |")
    print("load at the end:", open("/proc/loadavg").read().strip())


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "handover" and len(sys.argv) >= 4:
        handover(sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 5,
                 int(sys.argv[5]) if len(sys.argv) > 5 else 8)
    elif mode == "cpu" and len(sys.argv) >= 5:
        cpu(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]) if len(sys.argv) > 5 else 2,
            int(sys.argv[6]) if len(sys.argv) > 6 else 150,
            int(sys.argv[7]) if len(sys.argv) > 7 else 30)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
