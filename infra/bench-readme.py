#!/usr/bin/env python3
"""Regenerates bench/README.md: one page with the headline table of every result file in bench/,
the machine it was generated on, and the command that regenerates each file. Run by
infra/bench-all.sh after the suite, or alone to refresh the index."""
import datetime, os, platform, re, subprocess, sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
BENCH = os.path.join(ROOT, "bench")
# file, what it measures, the command that regenerates it
SUITE = [
    ("kv.md", "store engines against raw fjall and a HashMap", "infra/bench.sh kv"),
    ("gossip.md", "gossip rounds to converge, cross-region latency", "infra/bench.sh gossip"),
    ("reaper.md", "one tombstone-reaper pass from the tombstone index against the sweep of every record (100 k live, 100 due), memory and embedded", "cargo bench -p starling-gossip --bench reaper"),
    ("feed.md", "fan-out to 1 k–100 k followers, timeline inserts, feed reads 10 k vs 1 M users", "infra/bench.sh feed"),
    ("feed-pulled.md", "a feed page whose reader follows 0 / 10 / 50 pulled (large) accounts: the read-time merge's cost", "infra/bench.sh feed"),
    ("feed-api.md", "GET /v1/feed beside /healthz on the same server", "infra/bench-feed.sh"),
    ("api.md", "REST endpoints against the /healthz ceiling", "infra/bench-api.sh"),
    ("http-metrics.md", "the per-route HTTP metrics layer against the same router without it", "cargo bench -p starling-api --bench http_metrics -- --requests 200000 --rounds 6"),
    ("tracing.md", "OpenTelemetry traces on (OTLP/HTTP exporter to a local sink) against off, per request", "cargo bench -p starling-api --bench tracing -- --requests 200000 --rounds 6"),
    ("contract.md", "what the API contract (strict JSON, Link headers) adds per request beside its baseline", "cargo bench -p starling-api --bench contract"),
    ("likes.md", "likes on one hot post against likes spread over distinct posts, in process and from three regions", "infra/bench.sh likes; infra/bench-likes-regions.sh"),
    ("hydrate.md", "a feed page hydrated (author summaries, counters, viewer state, reposts) against the bare page, in process; the HTTP feed read's ratio to /healthz", "cargo bench -p starling-api --bench hydrate -- --pages 20000 --rounds 6; infra/bench-feed.sh"),
    ("notifications.md", "notification delivery latency (like, reply, follow) beside a chat message's, at a fixed rate", "infra/bench-notify.sh"),
    ("web.md", "the web client's page and modules, and their 304 revalidation, against the /healthz ceiling", "infra/bench-web.sh"),
    ("alloc.md", "the binary with mimalloc 2.x beside mimalloc 3.x and glibc malloc: REST req/s, p99, RSS", "infra/bench-alloc.sh"),
    ("chat.md", "chat beside Centrifugo v6.9.1: delivery and ack latency, CPU per delivery, idle memory per socket", "infra/bench-chat.sh"),
    ("chat-members.md", "a membership change's delivery to a connected 1 000-member group, beside a text message", "cargo bench -p starling-api --bench chat -- members"),
    ("chat-regions.md", "chat delivery across two regions (one way 0 / 50 / 100 / 125 ms), 1:1 and groups of 100, against the one-way latency", "infra/bench-chat-wan.sh"),
    ("load.md", "the load generator's scenarios, open and closed loop", "infra/bench-load.sh"),
    ("seed.md", "seeding 1 M users / 100 M follows, start, read-heavy mix at 1 M vs 10 k users", "infra/bench-seed.sh"),
    ("seed-profile.md", "where a feed read's time goes at 1 M users, before and after the read-time merge (perf)", "perf record on starling serve under infra/bench-seed.sh's load (commands inside)"),
    ("scylla.md", "the ScyllaDB engine against raw CQL and the embedded engine", "infra/bench.sh scylla"),
]


def first_table(text):
    lines, out = text.splitlines(), []
    for i, l in enumerate(lines):
        if l.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-| :]+\|$", lines[i + 1]):
            for m in lines[i:]:
                if not m.startswith("|"):
                    break
                out.append(m)
            break
    return out


def stamp(text):
    for l in text.splitlines()[1:8]:
        if re.search(r"(commit|Generated|Run|Command)", l):
            return l.strip()
    return ""


def main():
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    mem = next((int(l.split()[1]) // 1024 // 1024 for l in open("/proc/meminfo")
                if l.startswith("MemTotal")), 0)
    out = ["# Benchmarks", "",
           f"Index regenerated {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC at "
           f"commit `{commit}` on {os.cpu_count()} cores ({cpu}), {mem} GiB, "
           f"{platform.system()} {platform.release()}. Each result file below was written by its own "
           "command (its header says when and at which commit); every figure sits beside a baseline "
           "measured in the same run, so read the ratios: the machine is shared and noisy.", "",
           "Run everything: `infra/bench-all.sh` (about an hour on 2 cores; `SKIP=seed,scylla` to leave "
           "some out), then this page is rebuilt by `infra/bench-readme.py`.", "",
           "| file | measures | command |", "|---|---|---|"]
    for f, what, cmd in SUITE:
        if os.path.exists(os.path.join(BENCH, f)):
            out.append(f"| [{f}]({f}) | {what} | `{cmd}` |")
    for f, what, cmd in SUITE:
        p = os.path.join(BENCH, f)
        if not os.path.exists(p):
            continue
        text = open(p).read()
        title = text.splitlines()[0].lstrip("# ").strip() if text else f
        out += ["", f"## {title}", "", f"From [{f}]({f}) (`{cmd}`). {stamp(text)}", ""]
        out += first_table(text) or ["(no table)"]
    extra = [p for p in sorted(os.listdir(BENCH)) if p.endswith(".md") and p != "README.md"
             and p not in {f for f, _, _ in SUITE}]
    if extra:
        out += ["", "Other result files: " + ", ".join(f"[{p}]({p})" for p in extra)]
    out += ["", "Soak samples (infra/soak.sh) are in [soak/](soak/); the reliability figures in "
            "[../RELIABILITY.md](../RELIABILITY.md).", ""]
    open(os.path.join(BENCH, "README.md"), "w").write("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
