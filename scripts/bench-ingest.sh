#!/usr/bin/env bash
# Ingest benchmark: gateway + producer as two processes (the spec's :8080 and :8081) on this
# machine, against the embedded broker (inside the producer process) and against Apache Kafka (a
# 3-node KRaft cluster, replication factor 3, min.insync.replicas 2, from scripts/lib/kafka.sh).
# For each, `logpipe loadgen` posts batches of 500 events for DURATION at an unlimited rate (the
# ceiling) and at a fixed rate (latency at a steady load), and prints its report. Figures are
# printed, never asserted. (scripts/bench.sh has the same unlimited-rate step, next to Kafka's own
# ProducerPerformance on the same cluster.)
#
#   scripts/bench-ingest.sh                  # 30 s per run
#   DURATION=10s FIXED_RATE=50000 scripts/bench-ingest.sh
#   BROKERS=kafka scripts/bench-ingest.sh    # only one of "embedded kafka" (the default: both)
#   LOGPIPE=target/debug/logpipe scripts/bench-ingest.sh   # use this binary, build nothing
#   BENCH_KAFKA_DIR=DIR scripts/bench-ingest.sh   # a cluster already running in DIR (from
#                                            # kafka_cluster_start), left running; without it a
#                                            # fresh one in artifacts/bench-ingest/kafka, stopped on exit
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/kafka.sh
source scripts/lib/kafka.sh

DURATION=${DURATION:-30s}
BATCH=${BATCH:-500}
FIXED_RATE=${FIXED_RATE:-50000}
CONCURRENCY=${CONCURRENCY:-16}
BROKERS=${BROKERS:-embedded kafka}
ARTIFACTS="$REPO_ROOT/artifacts/bench-ingest"
mkdir -p "$ARTIFACTS"

if [[ -n "${LOGPIPE:-}" ]]; then
    BIN=$LOGPIPE
else
    echo "==> building release binary"
    cargo build --release -q -p logpipe
    BIN="$REPO_ROOT/target/release/logpipe"
fi
RUN="bench_ingest_$(date +%s)"

PIDS=()
OWN_CLUSTER=""
cleanup() {
    for pid in "${PIDS[@]}"; do stop_pid "$pid" 10 || true; done
    kafka_release_run "$OWN_CLUSTER" "$RUN"
}
trap cleanup EXIT

# run_case NAME BROKERS: start `logpipe producer` and `logpipe gateway`, drive them twice, print
# both reports, stop them.
run_case() {
    local name=$1 brokers=$2 gport pport
    gport=$(free_port 18480)
    pport=$(free_port 18481)
    echo
    echo "==> $name: producer on :$pport (brokers: ${brokers:-embedded}), gateway on :$gport"
    LOGPIPE_KAFKA_BROKERS="$brokers" LOGPIPE_KAFKA_TOPIC="$RUN-$name-logs" LOGPIPE_KAFKA_DLQ_TOPIC="$RUN-$name-dlq" \
        LOGPIPE_KAFKA_PARKED_TOPIC="$RUN-$name-parked" "$BIN" producer --listen "127.0.0.1:$pport" \
        >"$ARTIFACTS/$name-producer.log" 2>&1 &
    local producer_pid=$!
    "$BIN" gateway --listen "127.0.0.1:$gport" --producer-url "http://127.0.0.1:$pport" >"$ARTIFACTS/$name-gateway.log" 2>&1 &
    local gateway_pid=$!
    PIDS+=("$producer_pid" "$gateway_pid")
    local deadline=$((SECONDS + 30))
    until curl -sf "http://127.0.0.1:$gport/health/ready" >/dev/null; do
        ((SECONDS < deadline)) || { echo "not ready; see $ARTIFACTS/$name-*.log"; exit 1; }
        sleep 0.2
    done
    for rate in 0 "$FIXED_RATE"; do
        echo "--- $name, batch $BATCH, rate ${rate/#0/unlimited}, $DURATION"
        "$BIN" loadgen --target "http://127.0.0.1:$gport" --rate "$rate" --duration "$DURATION" \
            --batch "$BATCH" --concurrency "$CONCURRENCY" | tee "$ARTIFACTS/$name-rate-$rate.txt"
        printf 'peak RSS: gateway %s KiB, producer %s KiB\n' \
            "$(awk '/VmHWM/ {print $2}' "/proc/$gateway_pid/status")" "$(awk '/VmHWM/ {print $2}' "/proc/$producer_pid/status")"
    done
    stop_pid "$gateway_pid" 15
    stop_pid "$producer_pid" 15
}

echo "==> machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
for broker in $BROKERS; do
    case $broker in
    embedded) run_case embedded "" ;;
    kafka)
        if [[ -n "${BENCH_KAFKA_DIR:-}" ]]; then
            KAFKA_BOOTSTRAP=$(cat "$BENCH_KAFKA_DIR/bootstrap")
        else
            echo "==> starting a 3-node Apache Kafka cluster (log: $ARTIFACTS/kafka.log)"
            kafka_install 2>>"$ARTIFACTS/kafka.log" || { tail -n 20 "$ARTIFACTS/kafka.log"; exit 1; }
            OWN_CLUSTER="$ARTIFACTS/kafka"
            base=$(kafka_free_base 19392 3) || exit 1
            kafka_cluster_start "$OWN_CLUSTER" 3 "$base" 2>>"$ARTIFACTS/kafka.log" || { tail -n 30 "$ARTIFACTS/kafka.log"; exit 1; }
        fi
        run_case kafka "$KAFKA_BOOTSTRAP"
        ;;
    *) echo "BROKERS may hold embedded and kafka, not $broker"; exit 1 ;;
    esac
done
