# Shell helpers shared by infra scripts (sourced, not run): installing what a script needs from
# Debian's packages, a directory's pinned npm packages and a PyPI package in a venv, free ports, the starling binary, one
# node or a local `starling cluster`, and starting, waiting for and stopping a background service
# whose pid lives in a state directory.
# The caller has `set -euo pipefail` and defines `log`.

# A Debian package by name, installed if missing.
need_deb_pkg() { # need_deb_pkg PACKAGE
  dpkg -s "$1" >/dev/null 2>&1 && return 0
  log "installing $1"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "$1" >/dev/null 2>&1 ||
    { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$1" >/dev/null; } ||
    { echo "could not install $1 (needed by ${0##*/})" >&2; exit 1; }
}

# A command from a Debian package, installed if missing.
need_deb() { # need_deb COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 || need_deb_pkg "$2"
}

# The npm packages DIR/package-lock.json pins, installed with `npm ci` once per lock file into
# ~/.cache/starling/NAME-<hash of the lock file> (a fresh clone reuses them; published whole or not
# at all, and a concurrent run that got there first wins) and linked as DIR/node_modules. WHAT
# names them in the log. --ignore-scripts: no package of ours needs an install script, and some
# (@scarf/scarf, pulled in by Spectral) would only report the install to their vendor; playwright
# downloads no browser of its own (Debian's chromium is used).
npm_ci_cached() { # npm_ci_cached DIR NAME WHAT
  local dir="$1" name="$2" what="$3"
  local root="$HOME/.cache/starling"
  local cache tmp
  cache="$root/$name-$(sha256sum "$dir/package-lock.json" | cut -c1-16)"
  if [ ! -d "$cache/node_modules" ]; then
    log "installing $what (npm ci, once; cached in $cache)"
    mkdir -p "$root"
    tmp="$(mktemp -d "$root/$name-tmp.XXXXXX")"
    cp "$dir/package.json" "$dir/package-lock.json" "$tmp/"
    (cd "$tmp" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund \
      --loglevel=error) || { rm -rf "$tmp"; echo "npm ci failed in $dir" >&2; exit 1; }
    mv -T "$tmp" "$cache" 2>/dev/null || { rm -rf "$tmp"; [ -d "$cache/node_modules" ]; }
  fi
  if [ "$(readlink "$dir/node_modules" 2>/dev/null || true)" != "$cache/node_modules" ]; then
    rm -rf "$dir/node_modules"
    ln -s "$cache/node_modules" "$dir/node_modules"
  fi
}

# A free TCP port on loopback, chosen by the kernel.
# A Python package from PyPI (SPEC: NAME==VERSION) installed once into the venv DIR (a venv's
# scripts name its own path, so it is built in place; DIR/.complete marks a finished one, and an
# unfinished one is built again from scratch). WHAT names it in the log.
pip_venv_cached() { # pip_venv_cached DIR SPEC WHAT
  local venv="$1" spec="$2" what="$3"
  [ -f "$venv/.complete" ] && return 0
  log "installing $what (from PyPI, once; cached in $venv)"
  python3 -c 'import ensurepip, venv' 2>/dev/null || need_deb_pkg python3-venv
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$spec"
  touch "$venv/.complete"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The starling binary: $STARLING_BIN, else target/release or target/debug, built if neither exists.
starling_bin() {
  local b
  if [ -n "${STARLING_BIN:-}" ]; then echo "$STARLING_BIN"; return 0; fi
  for b in target/release/starling target/debug/starling; do
    [ -x "$b" ] && { echo "$b"; return 0; }
  done
  cargo build --locked -p starling-api --bin starling >&2
  echo target/debug/starling
}

# The release binaries a benchmark measures, as STARLING and LOAD: $STARLING_BIN / $LOAD_BIN when
# set, else the work tree's target/release/starling and starling-load, built first.
release_bins() {
  [ -n "${STARLING_BIN:-}" ] || cargo build --release -q -p starling-api --bin starling
  [ -n "${LOAD_BIN:-}" ] || cargo build --release -q -p starling-loadgen --bin starling-load
  STARLING=${STARLING_BIN:-$PWD/target/release/starling}
  LOAD=${LOAD_BIN:-$PWD/target/release/starling-load}
}

# A benchmark's provenance for its page, as COMMIT (the tree's short commit in backquotes, "with
# uncommitted changes" when it has them), COMMAND (COMMAND-LINE as given, behind `nice -n N` when
# this shell runs niced) and STARTED_AT (now, UTC).
bench_provenance() { # bench_provenance COMMAND-LINE
  COMMIT="\`$(git rev-parse --short HEAD)\`"
  [ -z "$(git status --porcelain --untracked-files=no)" ] || COMMIT="$COMMIT with uncommitted changes"
  COMMAND=$1
  [ "$(nice)" = 0 ] || COMMAND="nice -n $(nice) $COMMAND"
  STARTED_AT=$(date -u '+%Y-%m-%d %H:%M UTC')
}

# A detached local `starling cluster` in DIR on a random base port, which it sets as BASE (HTTP at
# BASE+0.., gossip at BASE+1000..); ARGS (regions, nodes, store, ...) go to `starling cluster`.
# Stop it with `"$BIN" cluster down --dir DIR`.
starling_cluster_up() { # starling_cluster_up BIN DIR ARGS...
  local bin="$1" dir="$2"
  shift 2
  BASE=$((20000 + RANDOM % 20000))
  log "starling cluster on 127.0.0.1:$BASE.. ($*)"
  "$bin" cluster --base-port "$BASE" --dir "$dir" --detach "$@" >/dev/null
}

# A single `starling serve` for a script's checks: a scratch directory WORK (removed at exit,
# with the node) and, started by starling_serve_up, the node NODE_PID on 127.0.0.1:PORT. Sets the
# EXIT trap.
serve_scratch() {
  WORK="$(mktemp -d)"
  NODE_PID=""
  trap serve_scratch_end EXIT
}

serve_scratch_end() {
  if [ -n "$NODE_PID" ]; then
    kill "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}

# Starts BIN (built if missing) as `serve` on a free loopback port with ARGS, its output in
# $WORK/node.log (call serve_scratch first); sets PORT and NODE_PID and returns once PATH answers
# (30 s at the most); exits with the log if the node exits first.
starling_serve_up() { # starling_serve_up BIN PATH ARGS...
  local bin="$1" path="$2"
  shift 2
  if [ ! -x "$bin" ]; then
    log "building the starling binary"
    cargo build --locked -p starling-api --bin starling
  fi
  PORT="$(free_port)"
  "$bin" serve --listen "127.0.0.1:$PORT" "$@" >"$WORK/node.log" 2>&1 &
  NODE_PID=$!
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$PORT$path" >/dev/null 2>&1 && return 0
    if ! kill -0 "$NODE_PID" 2>/dev/null; then
      echo "the node exited:" >&2
      cat "$WORK/node.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$PORT$path" >/dev/null
}

# Stop a process: SIGTERM, up to 15 s to exit, then SIGKILL.
stop_pid() { # stop_pid PID
  kill "$1" 2>/dev/null || true
  for _ in $(seq 1 150); do
    kill -0 "$1" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -9 "$1" 2>/dev/null || true
}

# Whether the service whose state directory holds its `pid` file is alive.
svc_running() { # svc_running STATE
  [ -f "$1/pid" ] && kill -0 "$(cat "$1/pid")" 2>/dev/null
}

# Stop the service of a state directory and remove the directory (its data with it).
svc_stop() { # svc_stop STATE
  if [ -f "$1/pid" ]; then
    stop_pid "$(cat "$1/pid")"
    log "stopped"
  fi
  rm -rf "$1"
}

# Wait until the command READY succeeds. Fails (exit 1, with the last lines of the LOG files) if
# the service's process exits first or SECS seconds pass.
svc_wait() { # svc_wait STATE SECS WHAT READY LOG...
  local state="$1" secs="$2" what="$3" ready="$4" pid deadline
  shift 4
  pid="$(cat "$state/pid")"
  deadline=$((SECONDS + secs))
  until "$ready"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "the service exited during start; last lines of its log:"
      tail -40 "$@" >&2 2>/dev/null || true
      exit 1
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "$what did not answer within ${secs}s; last lines of its log:"
      tail -40 "$@" >&2 2>/dev/null || true
      exit 1
    fi
    sleep 1
  done
}
