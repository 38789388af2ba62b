#!/usr/bin/env bash
# Ingest benchmark: gateway + producer as two processes (the spec's :8080 and :8081) on this
# machine, against the embedded broker (inside the producer process) and against an external Tansu
# broker. For each, `logpipe loadgen` posts batches of 500 events
# for DURATION at an unlimited rate (the ceiling) and at a fixed rate (latency at a steady load),
# and prints its report. Figures are printed, never asserted.
#
#   scripts/bench-ingest.sh                  # 30 s per run
#   DURATION=10s FIXED_RATE=50000 scripts/bench-ingest.sh
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh

DURATION=${DURATION:-30s}
BATCH=${BATCH:-500}
FIXED_RATE=${FIXED_RATE:-50000}
CONCURRENCY=${CONCURRENCY:-16}
ARTIFACTS="$REPO_ROOT/artifacts/bench-ingest"
mkdir -p "$ARTIFACTS"

echo "==> building release binary"
cargo build --release -q -p logpipe
BIN="$REPO_ROOT/target/release/logpipe"

PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do stop_pid "$pid" 10 || true; done; }
trap cleanup EXIT

# run_case NAME BROKERS: start `logpipe producer` and `logpipe gateway`, drive them twice, print
# both reports, stop them.
run_case() {
    local name=$1 brokers=$2 gport pport
    gport=$(free_port 18480)
    pport=$(free_port 18481)
    echo
    echo "==> $name: producer on :$pport (brokers: ${brokers:-embedded}), gateway on :$gport"
    LOGPIPE_KAFKA_BROKERS="$brokers" "$BIN" producer --listen "127.0.0.1:$pport" >"$ARTIFACTS/$name-producer.log" 2>&1 &
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
run_case embedded ""

ensure_tansu_binary
TANSU_PORT=$(free_port 19192)
TANSU_PID=$(start_tansu "$TANSU_PORT" "$ARTIFACTS/tansu.log" 30)
PIDS+=("$TANSU_PID")
run_case tansu "127.0.0.1:$TANSU_PORT"
