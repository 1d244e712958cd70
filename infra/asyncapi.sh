#!/usr/bin/env bash
# Validates docs/asyncapi.json, the AsyncAPI 3 document of the WebSocket chat protocol
# (`GET /v1/ws`), with the AsyncAPI parser: infra/asyncapi/validate.mjs prints the parser's
# diagnostics and fails on one of error severity, on a document that is not AsyncAPI 3.x, and on
# a message example that its own payload schema rejects. infra/test.sh (so CI) runs it.
#   infra/asyncapi.sh [DOCUMENT]      (default: docs/asyncapi.json)
#
# Installs Node.js and npm from Debian's packages if missing. The npm packages pinned in
# infra/asyncapi/package-lock.json are installed with `npm ci` once per lock file into
# ~/.cache/starling/asyncapi-<hash of the lock file> (a fresh clone reuses them) and linked as
# infra/asyncapi/node_modules.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*"; }

# need_deb_pkg, need_deb, npm_ci_cached
# shellcheck source=infra/lib.sh
. infra/lib.sh

need_deb node nodejs
need_deb npm npm
# The parser's dependencies (Spectral) need Node.js 18.18 or later.
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 18) ? 0 : 1)'; then
  echo "Node.js $(node --version) is too old for the AsyncAPI parser (18.18 or later needed)" >&2
  exit 1
fi

dir=infra/asyncapi
npm_ci_cached "$dir" asyncapi "the AsyncAPI parser"

node "$dir/validate.mjs" "$@"
