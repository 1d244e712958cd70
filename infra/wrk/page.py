"""The Markdown pages of the wrk benchmarks (infra/bench-api.sh, infra/bench-web.sh,
infra/bench-feed.sh): the rows `run` (infra/wrk/lib.sh) wrote, the page's "Run … at commit …"
line, and the table of rows against the `/healthz` ceiling measured first in the same run.
Imported by each script's inline Python (`sys.path` gets infra/wrk); only the standard library.
"""

import datetime
import os
import subprocess


def rows(path):
    """The tab-separated rows of `path`, each a list of strings."""
    with open(path) as f:
        return [line.split("\t") for line in f.read().split("\n") if line]


def run_line(setup):
    """The page's first line: when, at which commit, on how many cores, then `setup`."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"Run {now:%Y-%m-%d %H:%M} UTC at commit `{commit}` on {os.cpu_count()} cores: {setup}"


def wrk_setup(dur, conn):
    """How each row of a ceiling table was measured."""
    return (
        f"wrk with 1 thread and {conn} connections for {dur} per row, on the same machine as the "
        "server (shared and noisy: compare the ratios). The ceiling is `/healthz` on the same "
        "server; ratio = row req/s ÷ ceiling req/s."
    )


def ceiling_table(path, column, names):
    """The table of `run`'s rows (name, req/s, p50, p99, non-2xx), the first of them the ceiling
    (`/healthz`), each with its ratio to it; `names` labels the rows."""
    got = rows(path)
    bare = float(got[0][1])
    lines = [
        f"| {column} | req/s | ratio to ceiling | p50 | p99 | non-2xx |",
        "|---|---|---|---|---|---|",
    ]
    for name, rps, p50, p99, bad in got:
        lines.append(
            f"| {names[name]} | {float(rps):,.0f} | {float(rps) / bare:.3f} | "
            f"{float(p50):.2f} ms | {float(p99):.2f} ms | {bad} |"
        )
    return "\n".join(lines)
