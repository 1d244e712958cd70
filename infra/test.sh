#!/usr/bin/env bash
# The one command that runs every check and test of Starling on a fresh machine:
#   infra/test.sh
# It installs what is missing (Redis from Debian's packages; the embedded engine needs nothing),
# starts a Redis server on a free loopback port for the run (stopped on exit), then runs
# rustfmt, clippy and the whole test suite. CI (.ci/run) calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n==> %s\n' "$*"; }

need_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
      export PATH="$HOME/.cargo/bin:$PATH"
    else
      echo "cargo is not installed: install Rust (rustup) first" >&2
      exit 1
    fi
  fi
  for component in rustfmt clippy; do
    if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
      log "installing the $component component"
      rustup component add "$component"
    fi
  done
}

# A Debian package, installed if missing (as root, or through sudo).
need_deb() { # need_deb COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  log "installing $2"
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -q "$2" >/dev/null 2>&1 ||
    { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$2" >/dev/null; } ||
    { echo "could not install $2 (needed by the tests)" >&2; exit 1; }
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Services of this run, stopped however the run ends.
SERVICES_DIR="$(mktemp -d)"
cleanup() {
  if [ -f "$SERVICES_DIR/redis.pid" ]; then kill "$(cat "$SERVICES_DIR/redis.pid")" 2>/dev/null || true; fi
  rm -rf "$SERVICES_DIR"
}
trap cleanup EXIT

start_redis() {
  need_deb redis-server redis-server
  if [ -n "${STARLING_TEST_REDIS_URL:-}" ]; then
    log "using the Redis at $STARLING_TEST_REDIS_URL"
    return
  fi
  local port
  port="$(free_port)"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
    --daemonize yes --pidfile "$SERVICES_DIR/redis.pid" --logfile "$SERVICES_DIR/redis.log" \
    --dir "$SERVICES_DIR"
  for _ in $(seq 1 100); do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then
      export STARLING_TEST_REDIS_URL="redis://127.0.0.1:$port"
      log "redis-server on port $port"
      return
    fi
    sleep 0.1
  done
  echo "redis-server did not start:" >&2
  cat "$SERVICES_DIR/redis.log" >&2 || true
  exit 1
}

need_rust
start_redis
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Deterministic proptest runs in CI; locally a developer may set their own.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261125}"

log "rustfmt"
cargo fmt --all -- --check

log "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "tests"
cargo test --workspace --locked
