#!/usr/bin/env bash
# The one command that runs every check and test of Starling on a fresh machine:
#   infra/test.sh
# It installs what is missing, then runs rustfmt, clippy and the whole test suite. CI (.ci/run)
# calls exactly this.
#
# The ScyllaDB engine is tested against a real CQL node: the cluster named by
# STARLING_SCYLLA_NODES (host:port[,host:port…]) if set, otherwise a local Apache Cassandra that
# infra/cassandra.sh fetches from Maven Central (once, cached), boots in the background while
# cargo compiles, and stops when this script exits (whatever the outcome). It needs Java 17 and
# Maven; they are installed with apt-get when missing.
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
  trap 'kill "$cassandra_launcher" 2>/dev/null || true; infra/cassandra.sh stop >/dev/null 2>&1 || true' EXIT
fi
# The store's conformance suite and ScyllaDB engine are features: build every step with them so
# clippy also checks the engine's tests.
FEATURES="starling-store/conformance,starling-store/scylla"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Deterministic proptest runs in CI; locally a developer may set their own.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261125}"

log "rustfmt"
cargo fmt --all -- --check

log "clippy"
cargo clippy --workspace --all-targets --locked --features "$FEATURES" -- -D warnings

if [ -n "${cassandra_launcher:-}" ]; then
  log "waiting for the local Cassandra node"
  wait "$cassandra_launcher"
  STARLING_SCYLLA_NODES="$(infra/cassandra.sh wait)"
  export STARLING_SCYLLA_NODES
fi
log "tests (ScyllaDB engine against $STARLING_SCYLLA_NODES)"
cargo test --workspace --locked --features "$FEATURES"
