#!/usr/bin/env bash
# Generates src/schema.d.ts, the TypeScript types of Starling's REST API, from the document a
# real node serves at /openapi.json (openapi-typescript), then type-checks the client with
# `tsc --noEmit`. infra/test.sh (so CI) runs it with --check.
#   clients/ts/generate.sh [--check] [STARLING_BINARY]
#     --check: fail if the committed src/schema.d.ts differs from what the document generates
#              (regenerate it with this script, without --check, and commit it).
#   STARLING_BINARY defaults to target/debug/starling (built if missing).
#
# Node.js and npm come from Debian's packages if missing; the npm packages pinned in
# package-lock.json are installed with `npm ci` once per lock file into
# ~/.cache/starling/ts-client-<hash of the lock file> and linked as node_modules.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf '==> %s\n' "$*"; }

# need_deb_pkg, need_deb, serve_scratch, starling_serve_up
# shellcheck source=infra/lib.sh
. infra/lib.sh

check=0
if [ "${1:-}" = --check ]; then
  check=1
  shift
fi
bin="${1:-target/debug/starling}"

need_deb node nodejs
need_deb npm npm

dir=clients/ts
hash="$(sha256sum "$dir/package-lock.json" | cut -c1-16)"
cache_root="$HOME/.cache/starling"
cache="$cache_root/ts-client-$hash"
serve_scratch
work="$WORK"
if [ ! -d "$cache/node_modules" ]; then
  log "installing openapi-typescript, openapi-fetch and TypeScript (npm ci, once; cached in $cache)"
  mkdir -p "$cache_root"
  tmp="$(mktemp -d "$cache_root/ts-client-tmp.XXXXXX")"
  cp "$dir/package.json" "$dir/package-lock.json" "$tmp/"
  (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
  # Published whole or not at all; a concurrent run that got there first wins.
  mv -T "$tmp" "$cache" 2>/dev/null || { rm -rf "$tmp"; [ -d "$cache/node_modules" ]; }
fi
if [ "$(readlink "$dir/node_modules" 2>/dev/null || true)" != "$cache/node_modules" ]; then
  rm -rf "$dir/node_modules"
  ln -s "$cache/node_modules" "$dir/node_modules"
fi

starling_serve_up "$bin" /openapi.json --store memory --data-dir "$work/data"
curl -fsS "http://127.0.0.1:$PORT/openapi.json" -o "$work/openapi.json"
[ -s "$work/openapi.json" ] || { echo "no document from the node" >&2; exit 1; }

"$dir/node_modules/.bin/openapi-typescript" "$work/openapi.json" -o "$work/schema.d.ts" >/dev/null
if [ "$check" = 1 ]; then
  if ! diff -u "$dir/src/schema.d.ts" "$work/schema.d.ts" >"$work/diff"; then
    head -n 60 "$work/diff" >&2
    echo "clients/ts/src/schema.d.ts is not what /openapi.json generates: run clients/ts/generate.sh and commit it" >&2
    exit 1
  fi
  log "clients/ts/src/schema.d.ts matches the document"
else
  cp "$work/schema.d.ts" "$dir/src/schema.d.ts"
  log "wrote clients/ts/src/schema.d.ts"
fi
log "tsc --noEmit (clients/ts)"
(cd "$dir" && node_modules/.bin/tsc --noEmit -p .)
