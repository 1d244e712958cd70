#!/usr/bin/env bash
# Notification delivery latency (api/benches/notify.rs): likes, replies and follows to the
# `notification` frame at the recipient's WebSocket, beside chat messages to the same
# recipients in the same run, at a fixed rate, on a release `starling serve`. Writes
# bench/notifications.md.
#
#   infra/bench-notify.sh                      # RATE=100 SECS=20 PAIRS=50
#   STARLING_BIN=/tmp/starling infra/bench-notify.sh   # a prebuilt binary
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${RATE:-100}"; SECS="${SECS:-20}"; PAIRS="${PAIRS:-50}"
bin="${STARLING_BIN:-target/release/starling}"
[ -n "${STARLING_BIN:-}" ] || cargo build --release -q -p starling-api --bin starling
out=$(mktemp)
trap 'rm -f "$out"' EXIT
cargo bench -q -p starling-api --bench notify -- --starling "$bin" --rate "$RATE" \
  --secs "$SECS" --pairs "$PAIRS" >"$out"
commit=$(git rev-parse --short HEAD)
{
  echo "# Notification delivery latency"
  echo
  echo "Run $(date -u '+%Y-%m-%d %H:%M') UTC at commit \`$commit\` on $(nproc) cores:" \
    "\`infra/bench-notify.sh\` (RATE=$RATE SECS=$SECS PAIRS=$PAIRS; \`api/benches/notify.rs\`)."
  echo
  echo "One release \`starling serve\` (memory store). $PAIRS actor/recipient pairs, each recipient"
  echo "connected over WebSocket; at $RATE events/s in all, round robin over the pairs and the four"
  echo "kinds, an actor likes a new post of its recipient, replies to one, follows it (unfollowed right"
  echo "after, unmeasured) or sends it a chat message over REST — the chat message is the peer figure,"
  echo "the messenger's own live delivery measured the same way in the same run. Latency is from the"
  echo "request's send, and from its answer, to the frame at the recipient (one process, one clock)."
  echo "A notification is written before the answer and sent by the node's change-feed tail, so a"
  echo "frame can come before the answer is read: it then counts 0 from the answer (last column)."
  echo
  cat "$out"
} >bench/notifications.md
cat bench/notifications.md
