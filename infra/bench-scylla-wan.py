#!/usr/bin/env python3
"""Cross-region delivery latency: a post through region us, read through region eu.

Two pairs of regions, one node each, gossiping under their own secret: on ScyllaDB (each region
its own keyspace: the post reaches eu by the push of its keyspace-wide feed partition's holder,
`api/src/keyspace_feed.rs`) and, the baseline alternated with it in the same run (A B A B), on
the embedded store (the accepting node's own-feed push, 5 ms linger). Per post: the time from its
201 through us to the first 200 of `GET /v1/posts/{id}` through eu, polled every 10 ms (one
warm-up post per round is not counted).

    infra/bench-scylla-wan.py BIN HOST:PORT [ROUNDS] [POSTS]

BIN is a `starling` binary (copy a build first), HOST:PORT a CQL node (`infra/cassandra.sh start`
prints one). Prints a Markdown table, the ratio and the load average.
"""

import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time

_spec = importlib.util.spec_from_file_location(
    "bench_region", os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench-scylla-region.py"))
region = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(region)


def pair(bin_, work, name, store):
    """Nodes `us` and `eu` gossiping (us the seed); `store(region)` gives each one's store flags."""
    secret = f"bench-wan-{name}-{os.getpid()}"
    nodes, seed = [], None
    for r in ("us", "eu"):
        gossip = f"127.0.0.1:{region.free_port()}"
        args = ["--region", r, "--node-id", f"{name}{r}", "--gossip-listen", gossip,
                "--cluster-secret", secret, "--data-dir", f"{work}/{name}{r}", *store(r)]
        if seed:
            args += ["--seeds", seed]
        seed = seed or gossip
        nodes.append(region.start(bin_, args, work))
    return nodes


def arrival(us, eu, tok_us, tok_eu, text):
    s, v = region.call(us, "POST", "/v1/posts", tok_us, {"text": text})
    assert s == 201, s
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        if region.call(eu, "GET", f"/v1/posts/{v['id']}", tok_eu)[0] == 200:
            return (time.monotonic() - t0) * 1000
        time.sleep(0.01)
    return float("inf")


def measure(us, eu, posts):
    _, tok_us = region.sign_up(us, f"a{time.monotonic_ns()}")
    _, tok_eu = region.sign_up(eu, f"r{time.monotonic_ns()}")
    assert arrival(us, eu, tok_us, tok_eu, "warm-up") < float("inf"), "eu never got the warm-up post"
    out = []
    for i in range(posts):
        out.append(arrival(us, eu, tok_us, tok_eu, f"post {i}"))
        time.sleep(0.2)
    return out


def main():
    bin_, cql = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    posts = int(sys.argv[4]) if len(sys.argv) > 4 else 20
    work = tempfile.mkdtemp(prefix="bench-wan-")
    ks = f"bench_wan_{os.getpid()}"
    print("load at the start:", open("/proc/loadavg").read().strip())
    pairs = {
        "ScyllaDB keyspaces, the holder's push": pair(
            bin_, work, "s", lambda r: ["--store", f"scylla://{cql}/{ks}_{r}"]),
        "embedded, the own feed's push (baseline)": pair(bin_, work, "e", lambda r: []),
    }
    time.sleep(8)  # leases claimed, members joined
    res = {k: [] for k in pairs}
    try:
        for _ in range(rounds):
            for k, nodes in pairs.items():
                res[k] += measure(nodes[0][1], nodes[1][1], posts)
    finally:
        for nodes in pairs.values():
            for p, _ in nodes:
                p.terminate()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)
    print("| a post through us, read through eu | mean | p50 | p99 | max |\n|---|---|---|---|---|")
    for k, v in res.items():
        print(region.row(k, v))
    base = res["embedded, the own feed's push (baseline)"]
    held = res["ScyllaDB keyspaces, the holder's push"]
    print(f"- holder's push: mean {statistics.mean(held) / statistics.mean(base):.1f}x, "
          f"p50 {statistics.median(held) / statistics.median(base):.1f}x the baseline's")
    print("load at the end:", open("/proc/loadavg").read().strip())


if __name__ == "__main__":
    main()
