#!/usr/bin/env bash
# The benchmark suite: every bench script in turn, then bench/README.md rebuilt from the results.
#   infra/bench-all.sh                 # everything (about an hour on 2 cores)
#   SKIP=seed,scylla infra/bench-all.sh
set -euo pipefail
cd "$(dirname "$0")/.."
skip=",${SKIP:-},"
step() { # name, command...
  local name=$1; shift
  if [[ $skip == *",$name,"* ]]; then echo "== $name: skipped"; return; fi
  echo "== $name: $*"; "$@"
}
step kv infra/bench.sh kv
step gossip infra/bench.sh gossip
step feed infra/bench.sh feed
step feed-api infra/bench-feed.sh
step api infra/bench-api.sh
step web infra/bench-web.sh
step alloc infra/bench-alloc.sh
step chat infra/bench-chat.sh
step chat-wan infra/bench-chat-wan.sh
step load infra/bench-load.sh
step seed infra/bench-seed.sh
step scylla infra/bench.sh scylla
python3 infra/bench-readme.py
echo "wrote bench/README.md"
