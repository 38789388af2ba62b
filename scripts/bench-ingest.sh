#!/usr/bin/env bash
# Ingest benchmark: gateway + producer (`logpipe run`) on this machine, against the embedded broker
# and against an external Tansu broker. For each, `logpipe loadgen` posts batches of 500 events
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

# run_case NAME BROKERS: start `logpipe run`, drive it twice, print both reports, stop it.
run_case() {
    local name=$1 brokers=$2 port
    port=$(free_port 18480)
    echo
    echo "==> $name: logpipe run on :$port (brokers: ${brokers:-embedded})"
    LOGPIPE_KAFKA_BROKERS="$brokers" "$BIN" run --listen "127.0.0.1:$port" >"$ARTIFACTS/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    local deadline=$((SECONDS + 30))
    until curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null; do
        ((SECONDS < deadline)) || { echo "logpipe run did not become ready; see $ARTIFACTS/$name.log"; exit 1; }
        sleep 0.2
    done
    for rate in 0 "$FIXED_RATE"; do
        echo "--- $name, batch $BATCH, rate ${rate/#0/unlimited}, $DURATION"
        "$BIN" loadgen --target "http://127.0.0.1:$port" --rate "$rate" --duration "$DURATION" \
            --batch "$BATCH" --concurrency "$CONCURRENCY" | tee "$ARTIFACTS/$name-rate-$rate.txt"
        printf 'peak RSS of logpipe run: %s KiB\n' "$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
    done
    stop_pid "$pid" 15
}

echo "==> machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
run_case embedded ""

ensure_tansu_binary
TANSU_PORT=$(free_port 19192)
TANSU_PID=$(start_tansu "$TANSU_PORT" "$ARTIFACTS/tansu.log" 30)
PIDS+=("$TANSU_PID")
run_case tansu "127.0.0.1:$TANSU_PORT"
