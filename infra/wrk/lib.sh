# Shared by the wrk benchmarks (infra/bench-api.sh, infra/bench-web.sh, infra/bench-feed.sh);
# sourced from the repository's root after `set -euo pipefail`. Gives wrk and curl (from Debian's
# packages if missing), `$bin` (the release binary, built unless STARLING_BIN names another),
# `$DUR` and `$CONN` (per row), `$work` (a temporary directory, removed on exit), and:
#   serve_bench ARGS…     starts `starling serve ARGS…` on a free loopback port, stopped on exit;
#                         sets $url and $pid once /healthz answers
#   run NAME WRK-ARGS…    one wrk row appended to $work/rows: name, req/s, p50 ms, p99 ms, non-2xx
#   wrk_figures FILE      the figures of one `wrk --latency` output, tab separated: req/s,
#                         p50 ms, p99 ms, non-2xx (or 3xx) responses; fails when one is missing
# Each script writes its page with infra/wrk/page.py (the rows, the "Run … at commit …" line, the
# table against the /healthz ceiling).
log() { printf '==> %s\n' "$*" >&2; }
# shellcheck source=infra/lib.sh
. infra/lib.sh
need_deb wrk wrk
need_deb curl curl
bin="${STARLING_BIN:-target/release/starling}"
[ -n "${STARLING_BIN:-}" ] || cargo build --release -q -p starling-api --bin starling
DUR="${DUR:-8s}"
CONN="${CONN:-32}"
work=$(mktemp -d)
pid=""
trap '[ -z "$pid" ] || stop_pid "$pid"; rm -rf "$work"' EXIT
: >"$work/rows"

serve_bench() {
  local port
  port=$(free_port)
  STARLING_LOG=warn "$bin" serve --listen "127.0.0.1:$port" --data-dir "$work/data" "$@" \
    >"$work/log" 2>&1 &
  pid=$!
  url="http://127.0.0.1:$port"
  for _ in $(seq 100); do
    curl -sf "$url/healthz" >/dev/null && return 0
    sleep 0.1
  done
  cat "$work/log" >&2
  log "the server did not answer /healthz"
  exit 1
}

run() {
  local name=$1 figures
  shift
  wrk -t1 -c"$CONN" -d"$DUR" --latency "$@" >"$work/$name.txt"
  figures=$(wrk_figures "$work/$name.txt")
  printf '%s\t%s\n' "$name" "$figures" >>"$work/rows"
}

wrk_figures() { # wrk_figures FILE
  python3 - "$1" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
def ms(p):
    m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
print(f"{rps}\t{ms(50)}\t{ms(99)}\t{non2xx.group(1) if non2xx else 0}")
PY
}
