#!/usr/bin/env python3
"""End-to-end fan-out latency of a region of Starling nodes on one ScyllaDB keyspace.

A post is written through node 0; the follower's home feed is read every 10 ms through each node
until the post shows; the time from the post's 201 to its first appearance is the latency. Two
regions of three nodes run side by side, each on its own keyspace: one without Redis (in-process
timelines expire after 5 s), one sharing a `redis-server` (the holder's fan-out tells the other
nodes to drop their copies: `api/src/cache_bus.rs`). The baseline, alternated with them in the
same run (A B C A B C), is one node on the embedded store (its own change feed drives the
fan-out): post and read through that node.

    infra/bench-scylla-region.py BIN HOST:PORT [ROUNDS] [POSTS]

BIN is a `starling` binary (copy a release build first), HOST:PORT a CQL node
(`infra/cassandra.sh start` prints one); `redis-server` must be on the PATH. Prints a Markdown
table and the load average.
"""

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def call(port, method, path, token=None, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, data=data, timeout=30) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as e:
        return e.code, None


def start(bin_, args, workdir):
    port = free_port()
    p = subprocess.Popen(
        [bin_, "serve", "--listen", f"127.0.0.1:{port}", "--auth-per-minute", "1000000", *args],
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    for line in p.stdout:
        if "starling listening on" in line:
            break
    # Keep draining stdout so the node never blocks.
    subprocess.Popen(["cat"], stdin=p.stdout, stdout=subprocess.DEVNULL)
    return p, port


def sign_up(port, handle):
    s, v = call(port, "POST", "/v1/users", body={"handle": handle, "password": "password1"})
    assert s == 201, s
    return v["id"], v["token"]


def measure(author_port, read_ports, posts):
    """Per reading port, the latencies (ms) of `posts` posts."""
    a_id, a_tok = sign_up(author_port, f"a{time.monotonic_ns()}")
    f_id, f_tok = sign_up(read_ports[0], f"f{time.monotonic_ns()}")
    assert call(read_ports[0], "PUT", f"/v1/following/{a_id}", f_tok)[0] == 204
    for p in read_ports:  # every node builds the follower's timeline first
        call(p, "GET", "/v1/feed", f_tok)
    out = {p: [] for p in read_ports}
    for i in range(posts):
        s, v = call(author_port, "POST", "/v1/posts", a_tok, {"text": f"post {i}"})
        assert s == 201, s
        t0, pid = time.monotonic(), v["id"]
        waiting = set(read_ports)
        while waiting and time.monotonic() - t0 < 30:
            for p in list(waiting):
                s, page = call(p, "GET", "/v1/feed?limit=5", f_tok)
                if s in (200, 206) and any(it["id"] == pid for it in page["items"]):
                    out[p].append((time.monotonic() - t0) * 1000)
                    waiting.discard(p)
            time.sleep(0.01)
        for p in waiting:
            out[p].append(float("inf"))
        time.sleep(0.2)
    return out


def row(name, xs):
    xs = sorted(xs)
    pct = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]
    return f"| {name} | {statistics.mean(xs):.0f} ms | {pct(0.5):.0f} ms | {pct(0.99):.0f} ms | {xs[-1]:.0f} ms |"


def main():
    bin_, cql = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    posts = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    work = tempfile.mkdtemp(prefix="bench-region-")
    rport = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(rport), "--save", "", "--appendonly", "no"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    regions = {}
    for name, extra in (("no Redis", []), ("Redis", ["--redis", f"redis://127.0.0.1:{rport}"])):
        ks = f"bench_region_{os.getpid()}_{len(regions)}"
        regions[name] = [start(bin_, ["--store", f"scylla://{cql}/{ks}", "--node-id", f"n{len(regions)}{i}",
                                      "--data-dir", f"{work}/{ks}{i}", *extra], work) for i in range(3)]
    time.sleep(5)  # leases claimed
    res = {}
    for name in regions:
        res[f"{name}: same node as the post"] = []
        res[f"{name}: another node"] = []
    res["embedded, one node (baseline)"] = []
    try:
        for r in range(rounds):
            for name, region in regions.items():
                ports = [p for _, p in region]
                got = measure(ports[0], ports, posts)
                res[f"{name}: same node as the post"] += got[ports[0]]
                res[f"{name}: another node"] += got[ports[1]] + got[ports[2]]
            one, port = start(bin_, ["--data-dir", f"{work}/e{r}"], work)
            try:
                res["embedded, one node (baseline)"] += measure(port, [port], posts)[port]
            finally:
                one.terminate()
                one.wait()
    finally:
        for region in regions.values():
            for p, _ in region:
                p.terminate()
                p.wait()
        redis.terminate()
        redis.wait()
        shutil.rmtree(work, ignore_errors=True)
    print("| region, read through | mean | p50 | p99 | max |\n|---|---|---|---|---|")
    for k, v in res.items():
        print(row(k, v))
    base = statistics.mean(res["embedded, one node (baseline)"])
    for k in res:
        print(f"- {k}: mean {statistics.mean(res[k]) / base:.1f}x the baseline")
    print("load:", open("/proc/loadavg").read().strip())


if __name__ == "__main__":
    main()
