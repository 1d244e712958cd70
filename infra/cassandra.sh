#!/usr/bin/env bash
# A single-node Apache Cassandra on loopback, so the ScyllaDB engine is tested against a real CQL
# node without installing ScyllaDB or docker. Cassandra comes from Maven Central (the
# `cassandra-all` artifact and its dependencies) into a cache reused across runs.
#
#   infra/cassandra.sh start    fetch (once), boot, wait until CQL answers; prints HOST:PORT
#   infra/cassandra.sh stop     kill the node and remove its data
#   infra/cassandra.sh status   prints HOST:PORT if the node answers, exits 1 otherwise
#
# Environment: CASSANDRA_VERSION (default 5.0.6), STARLING_CASSANDRA_STATE (where the pid, port
# and data live; default /tmp/starling-cassandra-$UID), CASSANDRA_WAIT_SECS (default 180),
# CASSANDRA_HEAP (default 2g). `start` sub-commands: `start --background` returns at once after
# launching (use `wait` later), `wait` blocks until CQL answers.
set -euo pipefail

VERSION="${CASSANDRA_VERSION:-5.0.6}"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/starling/cassandra-$VERSION"
STATE="${STARLING_CASSANDRA_STATE:-/tmp/starling-cassandra-$(id -u)}"
WAIT_SECS="${CASSANDRA_WAIT_SECS:-180}"
HEAP="${CASSANDRA_HEAP:-2g}"

log() { printf '[cassandra] %s\n' "$*" >&2; }
# shellcheck source=infra/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

fetch() {
  if [ -f "$CACHE/lib/.complete" ]; then
    return
  fi
  command -v mvn >/dev/null || { log "mvn is not installed (apt-get install maven)"; exit 1; }
  command -v java >/dev/null || { log "java is not installed (apt-get install openjdk-17-jre-headless)"; exit 1; }
  log "fetching Apache Cassandra $VERSION from Maven Central into $CACHE (once)"
  mkdir -p "$CACHE"
  cat >"$CACHE/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>starling</groupId><artifactId>cassandra-fetch</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId>
      <version>$VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
  rm -rf "$CACHE/lib"
  (cd "$CACHE" && mvn -q -B dependency:copy-dependencies \
      -DoutputDirectory="$CACHE/lib" -DincludeScope=runtime) >"$CACHE/mvn.log" 2>&1 || {
    tail -30 "$CACHE/mvn.log" >&2
    log "maven could not fetch cassandra-all $VERSION"
    exit 1
  }
  touch "$CACHE/lib/.complete"
}

# Whether the native transport accepts connections (a CQL OPTIONS frame gets a SUPPORTED frame).
cql_answers() {
  python3 - "$1" <<'EOF'
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    # v4 OPTIONS request: version, flags, stream 0, opcode 5, empty body.
    s.sendall(bytes([0x04, 0, 0, 0, 0x05, 0, 0, 0, 0]))
    head = s.recv(9)
    sys.exit(0 if len(head) == 9 and head[4] == 0x06 else 1)
except OSError:
    sys.exit(1)
EOF
}

write_config() {
  local dir="$1" native="$2" storage="$3"
  cat >"$dir/cassandra.yaml" <<EOF
cluster_name: starling-test
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$storage"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $storage
native_transport_port: $native
start_native_transport: true
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
data_file_directories: [$dir/data]
commitlog_directory: $dir/commitlog
saved_caches_directory: $dir/saved_caches
hints_directory: $dir/hints
cdc_raw_directory: $dir/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
commitlog_segment_size: 8MiB
memtable_heap_space: 128MiB
memtable_offheap_space: 64MiB
key_cache_size: 8MiB
counter_cache_size: 0MiB
prepared_statements_cache_size: 8MiB
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 4
concurrent_compactors: 1
compaction_throughput: 0MiB/s
paxos_variant: v2
disk_access_mode: mmap_index_only
auto_snapshot: false
snapshot_on_duplicate_row_detection: false
materialized_views_enabled: false
read_request_timeout: 10000ms
write_request_timeout: 10000ms
cas_contention_timeout: 5000ms
dynamic_snitch: false
EOF
  cat >"$dir/logback.xml" <<EOF
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>$dir/system.log</file>
    <encoder><pattern>%-5level [%thread] %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE" /></root>
</configuration>
EOF
}

launch() {
  if svc_running "$STATE"; then
    log "already running (pid $(cat "$STATE/pid"))"
    return
  fi
  fetch
  rm -rf "$STATE"
  mkdir -p "$STATE"/{data,commitlog,saved_caches,hints,cdc_raw}
  local native storage
  native="$(free_port)"
  storage="$(free_port)"
  while [ "$storage" = "$native" ]; do storage="$(free_port)"; done
  write_config "$STATE" "$native" "$storage"
  echo "$native" >"$STATE/port"
  # The flags of Cassandra's conf/jvm17-server.options (module access it needs on Java 17).
  local jvm=(
    -Xms512m "-Xmx$HEAP" -Xss512k -XX:+UseG1GC -XX:ActiveProcessorCount=2
    -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$STATE"
    -Djdk.attach.allowAttachSelf=true
    --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
    --add-exports java.base/jdk.internal.ref=ALL-UNNAMED
    --add-exports java.base/sun.nio.ch=ALL-UNNAMED
    --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
    --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
    --add-exports java.sql/java.sql=ALL-UNNAMED
    --add-exports java.base/java.lang.ref=ALL-UNNAMED
    --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
    --add-opens java.base/java.lang.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
    --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
    --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
    --add-opens java.base/jdk.internal.math=ALL-UNNAMED
    --add-opens java.base/jdk.internal.module=ALL-UNNAMED
    --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
    --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
    --add-opens java.base/sun.nio.ch=ALL-UNNAMED
    --add-opens java.base/java.io=ALL-UNNAMED
    --add-opens java.base/java.nio=ALL-UNNAMED
    --add-opens java.base/java.util.concurrent=ALL-UNNAMED
    --add-opens java.base/java.util=ALL-UNNAMED
    --add-opens java.base/java.util.concurrent.atomic=ALL-UNNAMED
    --add-opens java.base/java.lang=ALL-UNNAMED
    --add-opens java.base/java.math=ALL-UNNAMED
    --add-opens java.base/java.lang.reflect=ALL-UNNAMED
    --add-opens java.base/java.net=ALL-UNNAMED
    "-Dcassandra.config=file://$STATE/cassandra.yaml"
    "-Dlogback.configurationFile=$STATE/logback.xml"
    "-Dcassandra.storagedir=$STATE"
    "-Dcassandra.logdir=$STATE"
    -Dcassandra-foreground=yes
    -Dcassandra.skip_wait_for_gossip_to_settle=0
    -Dcassandra.ring_delay_ms=0
    -Dcassandra.superuser_setup_delay_ms=0
    -Dcassandra.auto_bootstrap=false
    -Djava.net.preferIPv4Stack=true
  )
  log "starting Cassandra $VERSION on 127.0.0.1:$native (data in $STATE)"
  nohup java "${jvm[@]}" -cp "$CACHE/lib/*" org.apache.cassandra.service.CassandraDaemon \
    >"$STATE/stdout.log" 2>&1 </dev/null &
  echo $! >"$STATE/pid"
}

wait_ready() {
  [ -f "$STATE/port" ] || { log "not started"; exit 1; }
  local port
  port="$(cat "$STATE/port")"
  ready() { cql_answers "$port"; }
  svc_wait "$STATE" "$WAIT_SECS" "CQL on 127.0.0.1:$port" ready "$STATE/stdout.log" "$STATE/system.log"
  log "CQL answers on 127.0.0.1:$port"
  echo "127.0.0.1:$port"
}

case "${1:-}" in
  start)
    launch
    if [ "${2:-}" != "--background" ]; then wait_ready; fi
    ;;
  wait) wait_ready ;;
  fetch) fetch ;;
  stop) svc_stop "$STATE" ;;
  status)
    if [ -f "$STATE/port" ] && cql_answers "$(cat "$STATE/port")"; then
      echo "127.0.0.1:$(cat "$STATE/port")"
    else
      exit 1
    fi
    ;;
  *) echo "usage: $0 start [--background] | wait | stop | status | fetch" >&2; exit 2 ;;
esac
