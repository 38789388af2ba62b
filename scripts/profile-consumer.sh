#!/usr/bin/env bash
# The consumer's CPU cost per event, counted by callgrind: EVENTS events already in a topic (a
# 3-node Apache Kafka cluster, replication factor 3) are stored in PostgreSQL and counted in Redis
# by one consumer running under `valgrind --tool=callgrind`. Instructions are counted only while
# records flow (from the first stored record to the last), so start-up and shutdown stay out.
# Callgrind counts instructions, not time: the figure repeats on a noisy machine, which is what a
# before/after of a change to the hot path needs (compare two binaries with the same EVENTS).
#
#   scripts/profile-consumer.sh                        # 50,000 events, target/release/logpipe
#   LOGPIPE=/tmp/old-logpipe scripts/profile-consumer.sh   # another binary
#   EVENTS=20000 FORMAT=json scripts/profile-consumer.sh  # fewer events; the topic read as `json`
#   BENCH_KAFKA_DIR=DIR scripts/profile-consumer.sh    # a running kafka_cluster_start cluster
#   CONSUMER_ARGS="--set consumer.workers=1" scripts/profile-consumer.sh
#
# Prints instructions per event, in all and by stage (inclusive, from callgrind_annotate), and
# leaves the profile in artifacts/profile-consumer/callgrind.out for `callgrind_annotate` or
# kcachegrind. Takes about a minute at 50,000 events (the consumer runs ~50x slower under
# valgrind). Needs a release binary with debuginfo (the workspace's release profile has it).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/kafka.sh
source scripts/lib/kafka.sh
# shellcheck source=scripts/lib/metrics.sh
source scripts/lib/metrics.sh
# shellcheck source=scripts/lib/backlog.sh
source scripts/lib/backlog.sh

EVENTS=${EVENTS:-50000}
ARTIFACTS="$REPO_ROOT/artifacts/profile-consumer"
mkdir -p "$ARTIFACTS"
PG_URL=${LOGPIPE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${LOGPIPE_TEST_REDIS_URL:-redis://127.0.0.1:6379}
RUN="prof_$(date +%s)"

if [[ -n "${LOGPIPE:-}" ]]; then
    BIN=$LOGPIPE
else
    echo "==> building release binary"
    cargo build --release -q -p logpipe
    BIN="$REPO_ROOT/target/release/logpipe"
fi
command -v valgrind >/dev/null || apt_install valgrind
ensure_postgres
ensure_redis

PIDS=()
OWN_CLUSTER=""
cleanup() {
    for pid in "${PIDS[@]}"; do stop_pid "$pid" 30 || true; done
    psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $RUN CASCADE" >/dev/null 2>&1 || true
    redis-cli --scan --pattern "$RUN:*" | xargs -r redis-cli del >/dev/null 2>&1 || true
    kafka_release_run "$OWN_CLUSTER" "$RUN"
}
trap cleanup EXIT

if [[ -n "${BENCH_KAFKA_DIR:-}" ]]; then
    KAFKA_DIR=$BENCH_KAFKA_DIR
    [[ -f "$KAFKA_DIR/bootstrap" ]] || { echo "BENCH_KAFKA_DIR=$KAFKA_DIR holds no cluster (no bootstrap file)"; exit 1; }
else
    echo "==> starting a 3-node Apache Kafka cluster (log: $ARTIFACTS/kafka.log)"
    kafka_install 2>>"$ARTIFACTS/kafka.log" || { tail -n 20 "$ARTIFACTS/kafka.log"; exit 1; }
    KAFKA_DIR="$ARTIFACTS/kafka"
    OWN_CLUSTER=$KAFKA_DIR
    base=$(kafka_free_base 19392 3) || exit 1
    kafka_cluster_start "$KAFKA_DIR" 3 "$base" 2>>"$ARTIFACTS/kafka.log" || { tail -n 30 "$ARTIFACTS/kafka.log"; exit 1; }
fi
export LOGPIPE_KAFKA_BROKERS
LOGPIPE_KAFKA_BROKERS=$(cat "$KAFKA_DIR/bootstrap")
COMMON=(--set "kafka.topic=$RUN-logs" --set "kafka.dlq_topic=$RUN-dlq" --set "kafka.parked_topic=$RUN-parked")

ACCEPTED=$(load_backlog "$BIN" "$ARTIFACTS" "$EVENTS" "${COMMON[@]}")
echo "backlog: $ACCEPTED events"

FORMAT_ARGS=()
[[ -n "${FORMAT:-}" ]] && FORMAT_ARGS=(--set "consumer.format=$FORMAT")
# librdkafka's statistics run on a wall-clock timer (every 5 s), and valgrind stretches the run
# fifty-fold and by however loaded the machine is: off, so the count is the records' work only.
cat >"$ARTIFACTS/profile.toml" <<'TOML'
[consumer.properties]
"statistics.interval.ms" = "0"
TOML
echo "==> consuming under callgrind (PostgreSQL schema $RUN, Redis prefix $RUN)"
CP=$(free_port 18583)
rm -f "$ARTIFACTS"/callgrind.out*
# --instr-atstart=no: nothing is counted until callgrind_control turns it on below.
# shellcheck disable=SC2086 # CONSUMER_ARGS is a list of flags
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$ARTIFACTS/callgrind.out.%p" \
    "$BIN" --config "$ARTIFACTS/profile.toml" consumer "${COMMON[@]}" --listen "127.0.0.1:$CP" --postgres-url "$PG_URL" --redis-url "$REDIS_URL" \
    --set "postgres.schema=$RUN" --set "redis.key_prefix=$RUN" --set "consumer.group_id=$RUN" \
    "${FORMAT_ARGS[@]}" ${CONSUMER_ARGS:-} >"$ARTIFACTS/consumer.log" 2>&1 &
CONSUMER_PID=$!; PIDS+=("$CONSUMER_PID")
stored() { prom_sum log_consumer_success_total < <(curl -s "http://127.0.0.1:$CP/metrics" || true); }
deadline=$((SECONDS + 300))
until curl -sf "http://127.0.0.1:$CP/metrics" >/dev/null; do
    kill -0 "$CONSUMER_PID" 2>/dev/null || { echo "the consumer died; see $ARTIFACTS/consumer.log"; tail -n 20 "$ARTIFACTS/consumer.log"; exit 1; }
    ((SECONDS < deadline)) || { echo "the consumer did not serve /metrics within 300 s"; exit 1; }
    sleep 0.5
done
callgrind_control -i on "$CONSUMER_PID" >/dev/null
n0=$(stored); n0=${n0:-0}
echo "    counting from $n0 stored"
deadline=$((SECONDS + 1200))
while :; do
    n=$(stored); n=${n:-0}
    ((n >= ACCEPTED)) && break
    ((SECONDS < deadline)) || { echo; echo "only $n of $ACCEPTED stored within 1200 s"; exit 1; }
    printf '\r  stored and counted: %9d / %d' "$n" "$ACCEPTED"
    sleep 1
done
callgrind_control -i off "$CONSUMER_PID" >/dev/null
n1=$(stored)
echo
callgrind_control -d "$CONSUMER_PID" >/dev/null
stop_pid "$CONSUMER_PID" 60 || true
OUT=$(find "$ARTIFACTS" -name 'callgrind.out.*' -size +1k -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2)
[[ -n "$OUT" ]] || { echo "no callgrind profile written"; exit 1; }
mv "$OUT" "$ARTIFACTS/callgrind.out"
callgrind_annotate --inclusive=yes "$ARTIFACTS/callgrind.out" >"$ARTIFACTS/inclusive.txt" 2>/dev/null
callgrind_annotate --threshold=100 "$ARTIFACTS/callgrind.out" >"$ARTIFACTS/self.txt" 2>/dev/null
EVENTS_COUNTED=$((n1 - n0))
TOTAL=$(awk '/PROGRAM TOTALS/ {gsub(/,/, "", $1); print $1; exit}' "$ARTIFACTS/self.txt")
# Instructions of a stage: the inclusive count of its entry function (the first match).
stage() { awk -v f="$1" 'index($0, f) {gsub(/,/, "", $1); print $1; exit}' "$ARTIFACTS/inclusive.txt"; }
echo
printf '%-52s %s\n' "binary" "$BIN"
printf '%-52s %s (of %s in the backlog)\n' "events stored while counting" "$EVENTS_COUNTED" "$ACCEPTED"
printf '%-52s %s\n' "instructions while counting" "$TOTAL"
printf '%-52s %.0f\n' "instructions per event" "$(echo "$TOTAL / $EVENTS_COUNTED" | bc -l)"
for s in "poll_loop" "decode::decode_lane" "formats::Formats::decode" "logpipe_model::enrich::enrich" \
    "batch::assemble_stage" "writer::write_stage" "store::" "tally::Tally::count" "copy::encode"; do
    v=$(stage "$s"); [[ -n "$v" ]] || continue
    printf '  %-50s %10.0f per event (%4.1f %%)\n' "$s" "$(echo "$v / $EVENTS_COUNTED" | bc -l)" "$(echo "100 * $v / $TOTAL" | bc -l)"
done
# The allocators' own instructions (self cost): glibc's malloc (librdkafka's C code, and Rust's
# allocations when the binary has no allocator of its own) and mimalloc. Summed by source file,
# not matched by function name: "malloc" and "free" both match glibc's malloc.c lines.
for a in "glibc malloc:/malloc/malloc.c:|/malloc/arena.c:" "mimalloc:libmimalloc-sys"; do
    v=$(awk -v re="${a#*:}" '$0 ~ re && /^ *[0-9,]+ \(/ {c = $1; gsub(/,/, "", c); s += c} END {print s + 0}' "$ARTIFACTS/self.txt")
    printf '  %-50s %10.0f per event (%4.1f %%)\n' "allocator: ${a%%:*}" "$(echo "$v / $EVENTS_COUNTED" | bc -l)" "$(echo "100 * $v / $TOTAL" | bc -l)"
done
echo "profile: $ARTIFACTS/callgrind.out (callgrind_annotate --inclusive=yes, or kcachegrind)"
