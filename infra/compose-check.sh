#!/usr/bin/env bash
# Brings deploy/compose.yaml up with podman-compose (three regions × two nodes, a Redis per
# region, the simulated WAN), checks that the nodes form one cluster through their DNS-name seeds
# and that a post written in us is read in eu and ap through the containers, then takes it down.
#
#   infra/compose-check.sh          (images from infra/image.sh build if missing; ~2 minutes)
#   KEEP=1 infra/compose-check.sh   leave it running (podman-compose -f deploy/compose.yaml down)
#
# Not part of CI (infra/test.sh): it needs podman and builds the release binary. podman-compose
# is installed from PyPI into a venv under ~/.cache/starling; the Redis image is built like the
# node's, FROM scratch with Debian's redis-server and its libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
# Podman schedules health checks with systemd timers; without systemd it says so on every
# container start: only that line is dropped from its stderr.
exec 2> >(grep -v --line-buffered 'unable to get systemd connection\|healthcheck: unable to get systemd' >&2)
log() { printf '\n==> %s\n' "$*"; }
# shellcheck source=infra/lib.sh
. infra/lib.sh

PC_VERSION=1.5.0
VENV="${STARLING_CACHE:-$HOME/.cache/starling}/podman-compose-$PC_VERSION"
export STARLING_IMAGE="${STARLING_IMAGE:-localhost/starling:dev}"
export STARLING_REDIS_IMAGE="${STARLING_REDIS_IMAGE:-localhost/starling-redis:dev}"
export STARLING_ADMIN_TOKEN="${STARLING_ADMIN_TOKEN:-compose-check-admin}"
PROJECT=starling-compose-check

need_deb podman podman
need_deb runc runc
pip_venv_cached "$VENV" "podman-compose==$PC_VERSION" "podman-compose $PC_VERSION"
# crun fails on VMs with mixed cgroups: run every container with runc (the compose file sets
# open-file and process limits that a VM without CAP_SYS_RESOURCE can grant).
CONF="$(mktemp -d)"
printf '[engine]\nruntime = "runc"\n' >"$CONF/containers.conf"
export CONTAINERS_CONF="$CONF/containers.conf"
compose() { timeout 600 "$VENV/bin/podman-compose" -p "$PROJECT" -f deploy/compose.yaml "$@"; }

podman image exists "$STARLING_IMAGE" || infra/image.sh build
if ! podman image exists "$STARLING_REDIS_IMAGE"; then
  need_deb redis-server redis-server
  log "building $STARLING_REDIS_IMAGE from $(command -v redis-server)"
  ctx="$(mktemp -d)"
  mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp"
  cp -L "$(command -v redis-server)" "$ctx/rootfs/usr/bin/redis-server"
  ldd "$(command -v redis-server)" | grep -oE '/[^ ]+' | sort -u | while read -r lib; do
    mkdir -p "$ctx/rootfs$(dirname "$lib")"; cp -L "$lib" "$ctx/rootfs$lib"
  done
  printf 'redis:x:10002:10002::/tmp:/sbin/nologin\n' >"$ctx/rootfs/etc/passwd"
  chmod 1777 "$ctx/rootfs/tmp"
  printf 'FROM scratch\nCOPY rootfs/ /\nUSER 10002:10002\nWORKDIR /tmp\nSTOPSIGNAL SIGTERM\nENTRYPOINT ["/usr/bin/redis-server"]\n' >"$ctx/Containerfile"
  podman build --quiet --runtime runc -f "$ctx/Containerfile" -t "$STARLING_REDIS_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
fi

down() {
  if [ "${KEEP:-0}" != 1 ]; then
    compose down -v >/dev/null 2>&1 || true
  fi
  rm -rf "$CONF"
}
trap down EXIT
compose down -v >/dev/null 2>&1 || true
log "podman-compose up (3 regions × 2 nodes, 3 Redis)"
compose up -d >/dev/null 2>&1 || { compose up -d; exit 1; }

PORTS=(18080 18081 18082 18083 18084 18085)
log "waiting for every node to answer and see the 5 others"
for port in "${PORTS[@]}"; do
  for i in $(seq 1 240); do
    n="$(curl -fsS -H "authorization: Bearer $STARLING_ADMIN_TOKEN" "http://127.0.0.1:$port/v1/cluster" 2>/dev/null |
      jq '[.members[]? | select(.state == "alive")] | length' 2>/dev/null || echo 0)"
    [ "${n:-0}" -ge 5 ] && break
    if [ "$i" = 240 ]; then
      echo "FAIL: the node on $port sees ${n:-0} alive members; logs:" >&2
      compose logs 2>&1 | tail -40 >&2
      exit 1
    fi
    sleep 0.5
  done
  echo "127.0.0.1:$port sees $n alive members"
done

log "a post written in us is read in eu and ap"
u=http://127.0.0.1:18080
token="$(curl -fsS -X POST "$u/v1/users" -H 'content-type: application/json' \
  -d '{"handle":"composecheck","password":"correct horse battery"}' | jq -r .token)"
post="$(curl -fsS -X POST "$u/v1/posts" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' -H 'idempotency-key: compose-check' \
  -d '{"text":"from us, through the containers"}' | jq -r .id)"
for port in 18083 18085; do
  for i in $(seq 1 120); do
    text="$(curl -fsS "http://127.0.0.1:$port/v1/posts/$post" -H "authorization: Bearer $token" 2>/dev/null | jq -r .text 2>/dev/null || true)"
    [ "$text" = "from us, through the containers" ] && break
    [ "$i" = 120 ] && { echo "FAIL: the node on $port never read the post" >&2; exit 1; }
    sleep 0.5
  done
  echo "read on 127.0.0.1:$port: $text"
done
log "compose: ok"
