#!/usr/bin/env bash
# The soak: a mixed load whose deletes balance its creations (feed reads, posts and their
# authors' deletions, follows and unfollows, chat sends, group membership changes, message edits,
# likes and unlikes, reposts and their undoing; FAULT_MIX in api/tests/faults/main.rs, RELIABILITY.md
# "Soak") at half the measured capacity against a
# local cluster of real `starling` processes (2 regions × 1 node, simulated WAN), with the
# change-feed trimming and tombstone collection compressed (below), sampling each node's RSS
# (/proc/PID/status), its store's memtables and block cache, the change-feed consumer backlogs,
# the store's files on disk, the change feed's length, the gossip loop's tick gaps and late
# ticks, each interval's p99 and the load average over time. It fails on any failed request, on
# RSS growth of 5 % or more after the warm-up (which lasts until every node's block cache is
# 98 % full, at most half the run), on a growing queue, and (runs of 10 minutes or more) on the
# store's files growing more than 10 % or the p99 more than 1.2x from the measured part's first
# third to its last, a growing change feed or a gossip tick more than 100 ms late. It is the
# `soak` test of api/tests/faults (CI runs it for 60 s); this script runs it long:
#
#   infra/soak.sh            # 30 minutes (1800 s), warm-up 5 minutes
#   infra/soak.sh 7200       # 2 hours, warm-up 20 minutes
#   STARLING_SOAK_RATE=2500 infra/soak.sh 7200   # at a fixed rate (no capacity measured first)
#
# The capacity it runs at half of is the sustained one (STARLING_SOAK_GROW_SECS=300): a closed
# loop at the maximum rate for 5 minutes, its successes over those 5 minutes plus the time the
# nodes' change-feed consumers then take to drain. A 20 s burst on an empty store leaves work
# for after it (compactions, the peers' merges) and reads more than the nodes sustain (7 428
# against 6 394 req/s in the fifth session's run); the store keeps growing through the run.
# And it paces
# the load as a strict open loop (STARLING_SOAK_PACING=steady): no arrival skipped, latency from
# each request's intended start, a second of arrivals in flight. RELIABILITY.md "Soak" has the
# runs with the other choices (the empty store's capacity, 1-second chunks of 256 in flight).
#
# Knobs (environment): SOAK_PROFILE (cargo profile, default release), STARLING_SOAK_WARMUP_SECS
# (default a sixth of the run, at least 60 s), STARLING_SOAK_SAMPLE_SECS (10),
# STARLING_SOAK_RSS_GROWTH (0.05), STARLING_SOAK_CAPACITY_SECS (20: how long the capacity is
# measured), STARLING_SOAK_RATE (a fixed req/s instead of half the capacity),
# STARLING_SOAK_PACING (steady here; chunks: the test's own default of
# 1-second chunks, at most 256 in flight), STARLING_SOAK_CAPACITY_AFTER=1 (measure the capacity again on
# the grown store once the load is over), STARLING_SOAK_NODE_ARGS (the nodes' extra flags; the
# compressed housekeeping above by default), STARLING_SOAK_GROW_SECS (300 here, 0 for the
# empty store's 20 s burst: measure the sustained capacity over that long), STARLING_FAULT_SEED, SOAK_OUT (default soak-out/): where
# soak-samples.csv (every sample), soak.json (the figures) and soak.log go.
set -euo pipefail
cd "$(dirname "$0")/.."

secs="${1:-1800}"
profile="${SOAK_PROFILE:-release}"
out="${SOAK_OUT:-soak-out}"
mkdir -p "$out"
warmup=$((secs / 6))
[ "$warmup" -ge 60 ] || warmup=60
[ "$warmup" -lt "$secs" ] || warmup=$((secs / 4))

export STARLING_SOAK_SECS="$secs"
export STARLING_SOAK_GROW_SECS="${STARLING_SOAK_GROW_SECS:-300}"
export STARLING_SOAK_PACING="${STARLING_SOAK_PACING:-steady}"
export STARLING_SOAK_WARMUP_SECS="${STARLING_SOAK_WARMUP_SECS:-$warmup}"
export STARLING_SOAK_SAMPLE_SECS="${STARLING_SOAK_SAMPLE_SECS:-10}"
# Housekeeping of months, compressed: the change feed trimmed and the tombstone reaper passing
# every 2 minutes, tombstones collected 5 minutes after they were written (defaults 10 s, 60 s, 1 h),
# so a 2-hour run sees about 60 passes of each and collects from minute 5. Chat history: 200
# entries a conversation (default: all kept): the mix's chat and edit entries (a few hundred a
# second) over its 32 users' 1:1 conversations and groups (a few dozen) reach 200 each within a
# minute or two, well inside the warm-up, so from then on the store holds at most 200 live
# entries a conversation and the tombstones of the last 5 minutes' trims (10 000 would take
# most of the run to fill: the store would grow all along). The mix edits each user's newest
# message, never one past the bound. The CI-sized run (under 10 minutes) keeps its own flags
# (SMALL_BOUNDS in api/tests/faults/soak.rs: a bound of 100); a run whose nodes bound the
# history fails if none of them trimmed any.
if [ "$secs" -ge 600 ]; then
  export STARLING_SOAK_NODE_ARGS="${STARLING_SOAK_NODE_ARGS:---feed-trim-interval 2m --gc-interval 2m --gc-grace 5m --chat-history-max 200}"
fi
STARLING_SOAK_OUT="$(cd "$out" && pwd)"
export STARLING_SOAK_OUT

echo "soak: ${secs} s (warm-up ${STARLING_SOAK_WARMUP_SECS} s, grow ${STARLING_SOAK_GROW_SECS} s, pacing ${STARLING_SOAK_PACING}), cargo profile ${profile}, output in ${out}/" >&2
cargo test --profile "$profile" -p starling-api --test faults -- --exact soak --nocapture 2>&1 |
  tee "$out/soak.log"
