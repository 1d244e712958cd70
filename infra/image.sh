#!/usr/bin/env bash
# The Starling container image (deploy/Containerfile), built with podman and no registry: the
# root file system is staged here from the release binary and the shared libraries `ldd` lists
# (FROM scratch), then the image is run and checked.
#
#   infra/image.sh            build (cargo build --release, then podman build) and test
#   infra/image.sh build      build only; prints the image name
#   infra/image.sh test       run the built image: it starts, /healthz answers, the health check
#                             passes, a post written is read back, SIGTERM stops it cleanly, and
#                             its data outlives the container (the /data volume)
#
# Environment: STARLING_IMAGE (default localhost/starling:dev), STARLING_BIN (a built binary to
# package instead of building one). Podman is installed from Debian's packages if missing, with
# runc (crun fails on some VMs' mixed cgroups); PODMAN_RUN_FLAGS are added to `podman run`
# (default: the runc runtime and open-file/process limits that fit a VM without
# CAP_SYS_RESOURCE).
set -euo pipefail
cd "$(dirname "$0")/.."
# Podman schedules health checks with systemd timers; without systemd (containers, CI) it says
# so on every run: only that line is dropped from its stderr.
exec 2> >(grep -v --line-buffered 'unable to get systemd connection\|healthcheck: unable to get systemd' >&2)
log() { printf '\n==> %s\n' "$*"; }
# shellcheck source=infra/lib.sh
. infra/lib.sh

IMAGE="${STARLING_IMAGE:-localhost/starling:dev}"
RUN_FLAGS=(${PODMAN_RUN_FLAGS:---runtime runc --ulimit nofile=20000:20000 --ulimit nproc=32768:32768})

need_podman() {
  need_deb podman podman
  need_deb runc runc
}

build() {
  need_podman
  local bin="${STARLING_BIN:-}"
  if [ -z "$bin" ]; then
    log "cargo build --release (the starling binary)"
    cargo build --release --locked -p starling-api --bin starling
    bin=target/release/starling
  fi
  local ctx
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' RETURN
  local root="$ctx/rootfs"
  mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$ctx/data"
  chmod 1777 "$root/tmp"
  install -m 0755 "$bin" "$root/usr/local/bin/starling"
  # The release profile keeps line tables for profiling on a developer's machine; the image
  # keeps the symbols (backtraces name functions) and drops the debug sections.
  if command -v strip >/dev/null 2>&1; then strip --strip-debug "$root/usr/local/bin/starling"; fi
  # The binary's shared libraries and the dynamic loader, at the paths it looks them up at.
  ldd "$bin" | grep -oE '/[^ ]+' | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
  # Name lookups (DNS seeds, Redis and ScyllaDB hosts) through glibc's built-in files and dns.
  printf 'hosts: files dns\n' >"$root/etc/nsswitch.conf"
  printf 'root:x:0:0:root:/:/sbin/nologin\nstarling:x:10001:10001:starling:/data:/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nstarling:x:10001:\n' >"$root/etc/group"
  if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
    mkdir -p "$root/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  fi
  log "podman build $IMAGE"
  podman build --quiet --format docker --runtime runc \
    --label "org.opencontainers.image.revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
    -f deploy/Containerfile -t "$IMAGE" "$ctx" >/dev/null
  podman image inspect "$IMAGE" --format '{{.Id}} {{.Size}} bytes' >&2
  echo "$IMAGE"
}

test_image() {
  need_podman
  local name="starling-image-test-$$" vol="starling-image-test-$$" port
  port="$(free_port)"
  # shellcheck disable=SC2064
  trap "podman rm -f -t 0 $name >/dev/null 2>&1 || true; podman volume rm -f $vol >/dev/null 2>&1 || true" EXIT
  local config user stop health
  config="$(podman image inspect "$IMAGE" --format '{{.Config.User}} {{.Config.StopSignal}} {{json .Config.Volumes}}')"
  log "image config: $config"
  case "$config" in
    "10001:10001 SIGTERM "*'"/data"'*) ;;
    *) echo "FAIL: expected user 10001:10001, STOPSIGNAL SIGTERM and a /data volume" >&2; exit 1 ;;
  esac
  run() {
    podman run -d --name "$name" "${RUN_FLAGS[@]}" -p "127.0.0.1:$port:8080" \
      -v "$vol:/data" -e STARLING_LOG_FORMAT=human "$IMAGE" serve >/dev/null
    for _ in $(seq 1 150); do
      curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
      sleep 0.2
    done
    echo "FAIL: /healthz did not answer; the container's log:" >&2
    podman logs "$name" >&2 || true
    exit 1
  }
  log "podman run $IMAGE on 127.0.0.1:$port"
  run
  user="$(podman exec "$name" /usr/local/bin/starling --version 2>/dev/null || true)"
  log "running: $user as uid $(podman inspect "$name" --format '{{.Config.User}}')"
  podman healthcheck run "$name" >/dev/null || { echo "FAIL: the health check failed" >&2; exit 1; }
  health="$(podman inspect "$name" --format '{{.State.Health.Status}}' 2>/dev/null || podman inspect "$name" --format '{{.State.Healthcheck.Status}}')"
  [ "$health" = healthy ] || { echo "FAIL: health status $health" >&2; exit 1; }
  log "health check: $health"
  local u="http://127.0.0.1:$port" token post text
  token="$(curl -fsS -X POST "$u/v1/users" -H 'content-type: application/json' \
    -d '{"handle":"imagetest","password":"correct horse battery"}' | jq -r .token)"
  post="$(curl -fsS -X POST "$u/v1/posts" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -H 'idempotency-key: image-test' \
    -d '{"text":"written in a container"}' | jq -r .id)"
  text="$(curl -fsS "$u/v1/posts/$post" -H "authorization: Bearer $token" | jq -r .text)"
  [ "$text" = "written in a container" ] || { echo "FAIL: read back $text" >&2; exit 1; }
  log "post $post written and read back"
  podman stop -t 20 "$name" >/dev/null
  stop="$(podman inspect "$name" --format '{{.State.ExitCode}}')"
  podman logs "$name" 2>&1 | grep -q "starling stopped" ||
    { echo "FAIL: no clean stop (exit $stop):" >&2; podman logs "$name" 2>&1 | tail -5 >&2; exit 1; }
  log "SIGTERM: stopped cleanly (exit $stop)"
  podman rm "$name" >/dev/null
  run
  text="$(curl -fsS "$u/v1/posts/$post" -H "authorization: Bearer $token" | jq -r .text)"
  [ "$text" = "written in a container" ] || { echo "FAIL: after a restart, read $text" >&2; exit 1; }
  log "a new container on the same volume reads the post: ok"
}

case "${1:-all}" in
  build) build ;;
  test) test_image ;;
  all) build >/dev/null; test_image ;;
  *) echo "usage: $0 [build | test]" >&2; exit 2 ;;
esac
