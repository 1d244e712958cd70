#!/usr/bin/env bash
# The web client's checks (web/): its JSDoc types with `tsc --noEmit --checkJs`, then its
# browser tests (web/tests/*.test.mjs) with playwright-core driving Debian's chromium against
# real `starling serve` processes and a two-region `starling cluster`. infra/test.sh runs it
# after cargo has built the binary.
#   infra/web-test.sh [--types-only] [TEST-FILE…]
#
# Uses target/debug/starling (STARLING_BIN to choose another; built with cargo when missing).
# Installs chromium, Node.js and npm from Debian's packages if missing. playwright-core needs
# Node.js 20 or later: where the one on the PATH is older (Debian 12 ships 18), Node.js
# $NODE_VERSION is taken from the npm registry's node-linux-<arch> package (the official binary),
# once, into ~/.cache/starling/node-<version>-<arch>. The npm packages pinned in
# web/package-lock.json (typescript, playwright-core, axe-core) are installed with `npm ci` once
# per lock file into ~/.cache/starling/web-<hash of the lock file> and linked as
# web/node_modules; playwright downloads no browser of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

# need_deb_pkg, need_deb, npm_ci_cached
# shellcheck source=infra/lib.sh
. infra/lib.sh

need_deb node nodejs
need_deb npm npm

cache_root="$HOME/.cache/starling"
NODE_VERSION=22.23.5
need_node20() {
  node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' && return 0
  local arch
  case "$(uname -m)" in
    x86_64) arch=x64 ;;
    aarch64) arch=arm64 ;;
    *) echo "Node.js 20 or later is needed (playwright-core); found $(node --version)" >&2; exit 1 ;;
  esac
  local home="$cache_root/node-$NODE_VERSION-$arch"
  if [ ! -x "$home/bin/node" ]; then
    log "Node.js $(node --version) is too old for playwright-core: fetching Node.js $NODE_VERSION (npm package node-linux-$arch, once; cached in $home)"
    mkdir -p "$cache_root"
    local tmp
    tmp="$(mktemp -d "$cache_root/node-tmp.XXXXXX")"
    (cd "$tmp" && npm pack --silent "node-linux-$arch@$NODE_VERSION" >/dev/null &&
      tar xzf "node-linux-$arch-$NODE_VERSION.tgz" package/bin/node &&
      mkdir -p dist/bin && mv package/bin/node dist/bin/node)
    mv -T "$tmp/dist" "$home" 2>/dev/null || [ -x "$home/bin/node" ]
    rm -rf "$tmp"
  fi
  export PATH="$home/bin:$PATH"
}
need_node20

dir=web
npm_ci_cached "$dir" web "typescript, playwright-core and axe-core"

log "web client: tsc --noEmit --checkJs"
node "$dir/node_modules/typescript/bin/tsc" -p "$dir/tsconfig.json"
if [ "${1:-}" = --types-only ]; then
  exit 0
fi

need_deb_pkg chromium
export STARLING_CHROMIUM="${STARLING_CHROMIUM:-/usr/bin/chromium}"
export STARLING_BIN="${STARLING_BIN:-$PWD/target/debug/starling}"
if [ ! -x "$STARLING_BIN" ]; then
  log "building the starling binary"
  cargo build --locked -p starling-api --bin starling
fi
log "web client: browser tests (chromium $("$STARLING_CHROMIUM" --version 2>/dev/null | awk '{print $2}'))"
if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=("$dir"/tests/*.test.mjs)
fi
node --test --test-concurrency=1 "${files[@]}"
