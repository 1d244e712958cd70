#!/usr/bin/env bash
# Centrifugo v6.9.1, the chat benchmark's reference server (infra/bench-chat.sh), built once from
# its Go module into ~/.cache/starling/centrifugo-v6.9.1.
#
#   infra/centrifugo.sh                 install (once); print the binary's path
#   infra/centrifugo.sh start PORT DIR  write DIR/config.json, start it on 127.0.0.1:PORT (logs in
#                                       DIR/centrifugo.log), wait until it answers, print its pid
#   infra/centrifugo.sh stop DIR        stop the server started in DIR
#
# The configuration (see bench/chat.md, "Configurations"): the memory engine; a namespace `chat`
# with history (1000 publications, 300 s), forced recovery and client-side publish for
# subscribers; connections authenticated by HS256 JWTs signed with DIR/secret (a random key,
# or $CENTRIFUGO_SECRET); everything bound to 127.0.0.1 (WebSocket, server API, health);
# anonymous usage statistics off. Defaults kept: a write to a socket that blocks > 1 s
# (websocket.write_timeout) or a per-client queue over 1 MiB (client.queue_max_size) drops
# the client; commands of one connection run one at a time (client.concurrency 0); ping every
# 25 s, pong within 8 s.
#
# Needs Go ≥ 1.26 (the module's go directive). Without Go, Debian's golang-go is installed if its
# version suffices (Debian 12 ships 1.19: it does not; then install Go from go.dev).
set -euo pipefail
VERSION=v6.9.1
DEST="${STARLING_CACHE:-$HOME/.cache/starling}/centrifugo-$VERSION"
BIN="$DEST/centrifugo"

go_ok() { # Go ≥ 1.26 on the PATH?
  command -v go >/dev/null || return 1
  local v; v=$(go env GOVERSION 2>/dev/null | sed -E 's/^go([0-9]+)\.([0-9]+).*/\1 \2/') || return 1
  read -r major minor <<<"$v"
  [ "${major:-0}" -gt 1 ] || { [ "${major:-0}" -eq 1 ] && [ "${minor:-0}" -ge 26 ]; }
}

install() {
  [ -x "$BIN" ] && return 0
  if ! go_ok && ! command -v go >/dev/null && command -v apt-get >/dev/null; then
    local cand
    cand=$(apt-cache policy golang-go 2>/dev/null | awk '/Candidate:/ {print $2}')
    echo "no Go on the PATH; Debian's golang-go candidate is ${cand:-none}" >&2
    if [[ "$cand" =~ ^([0-9]+:)?1\.(2[6-9]|[3-9][0-9]) ]]; then
      sudo -n apt-get install -y golang-go >&2 || apt-get install -y golang-go >&2
    fi
  fi
  if ! go_ok; then
    echo "Centrifugo $VERSION needs Go >= 1.26 to build (have: $(go version 2>/dev/null || echo none)); install it from https://go.dev/dl/" >&2
    exit 1
  fi
  mkdir -p "$DEST"
  echo "building Centrifugo $VERSION into $DEST (once; a few minutes)…" >&2
  # The version a release build carries (its log warns of a "development build" otherwise).
  GOBIN="$DEST" go install -trimpath \
    -ldflags "-X github.com/centrifugal/centrifugo/v6/internal/build.Version=${VERSION#v}" \
    "github.com/centrifugal/centrifugo/v6@$VERSION" >&2
  [ -x "$BIN" ]
}

start() {
  local port=$1 dir=$2
  install
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
    echo "a server started in $dir is running (pid $(cat "$dir/pid")): infra/centrifugo.sh stop $dir" >&2
    exit 1
  fi
  local secret="${CENTRIFUGO_SECRET:-}"
  if [ -z "$secret" ]; then
    secret=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
  fi
  umask 077
  printf '%s' "$secret" >"$dir/secret"
  cat >"$dir/config.json" <<EOF
{
  "http_server": { "address": "127.0.0.1", "port": $port },
  "log": { "level": "warn" },
  "engine": { "type": "memory" },
  "client": {
    "token": { "hmac_secret_key": "$secret" },
    "allowed_origins": ["http://127.0.0.1:$port"]
  },
  "channel": {
    "namespaces": [
      {
        "name": "chat",
        "history_size": 1000,
        "history_ttl": "300s",
        "force_recovery": true,
        "allow_subscribe_for_client": true,
        "allow_publish_for_subscriber": true
      }
    ]
  },
  "http_api": { "key": "$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')" },
  "health": { "enabled": true },
  "usage_stats": { "disabled": true }
}
EOF
  "$BIN" checkconfig --config "$dir/config.json" >/dev/null
  # Every socket is an open file; keep the soft limit at the hard one.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  nohup "$BIN" --config "$dir/config.json" >"$dir/centrifugo.log" 2>&1 &
  local pid=$!
  echo "$pid" >"$dir/pid"
  for _ in $(seq 1 100); do
    if curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
      echo "$pid"
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "Centrifugo did not start on 127.0.0.1:$port; its log:" >&2
  tail -20 "$dir/centrifugo.log" >&2
  kill "$pid" 2>/dev/null || true
  exit 1
}

stop() {
  local dir=$1
  [ -f "$dir/pid" ] || return 0
  local pid; pid=$(cat "$dir/pid")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid"
}

case "${1:-install}" in
  install) install; echo "$BIN" ;;
  start) [ $# -eq 3 ] || { echo "usage: $0 start PORT DIR" >&2; exit 2; }; start "$2" "$3" ;;
  stop) [ $# -eq 2 ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
  *) echo "usage: $0 [install | start PORT DIR | stop DIR]" >&2; exit 2 ;;
esac
