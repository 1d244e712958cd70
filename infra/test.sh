#!/usr/bin/env bash
# The one command that runs every check and test of Starling on a fresh machine:
#   infra/test.sh
# It installs what is missing (nothing outside Rust yet: the embedded engine needs nothing),
# then runs rustfmt, clippy and the whole test suite. CI (.ci/run) calls exactly this.
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

need_rust
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Deterministic proptest runs in CI; locally a developer may set their own.
export PROPTEST_RNG_SEED="${PROPTEST_RNG_SEED:-20261125}"

log "rustfmt"
cargo fmt --all -- --check

log "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "tests"
cargo test --workspace --locked
