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
#
# Ingest by protocol: with PROTOCOLS other than the default `logpipe`, or with INGEST_EVENTS set,
# the script instead starts one producer + gateway on Apache Kafka and, for each protocol in turn
# (logpipe otlp-proto otlp-json loki elasticsearch: `logpipe loadgen --protocol`), posts
# INGEST_EVENTS (default 200000) of the same events in batches of BATCH as fast as CONCURRENCY
# requests in flight allow, after a short warm-up in that protocol. It prints one row per
# protocol: events/s, ratio to the logpipe row, request p50/p99, failed requests, and the records
# the protocol's run added to the topic against the events accepted (fewer is a loss and fails
# the script).
#
#   PROTOCOLS="logpipe otlp-proto otlp-json loki elasticsearch" INGEST_EVENTS=200000 scripts/bench-ingest.sh
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/kafka.sh
source scripts/lib/kafka.sh
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

DURATION=${DURATION:-30s}
BATCH=${BATCH:-500}
FIXED_RATE=${FIXED_RATE:-50000}
CONCURRENCY=${CONCURRENCY:-16}
BROKERS=${BROKERS:-embedded kafka}
PROTOCOLS=${PROTOCOLS:-logpipe}
TABLE=0
if [[ "$PROTOCOLS" != logpipe || -n "${INGEST_EVENTS:-}" ]]; then
    TABLE=1
    INGEST_EVENTS=${INGEST_EVENTS:-200000}
fi
ARTIFACTS="$REPO_ROOT/artifacts/bench-ingest"
mkdir -p "$ARTIFACTS"

bench_binary
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

# topic_records TOPIC: records in TOPIC (sum of its partitions' end offsets: the idempotent
# producer writes no control records, so an offset is a record); 0 before the topic exists.
topic_records() {
    kafka_tool org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$KAFKA_BOOTSTRAP" --topic "$1" --time -1 \
        2>>"$ARTIFACTS/kafka.log" | awk -F: 'NF == 3 {s += $3} END {print s + 0}'
}

# run_protocols BROKERS: one producer + gateway; each protocol of PROTOCOLS in turn; the table.
run_protocols() {
    local brokers=$1 gport pport topic="$RUN-protocols-logs" rows=() base_rate="" failed=0
    gport=$(free_port 18480)
    pport=$(free_port 18481)
    echo
    echo "==> ingest by protocol: producer on :$pport (brokers: $brokers), gateway on :$gport"
    LOGPIPE_KAFKA_BROKERS="$brokers" LOGPIPE_KAFKA_TOPIC="$topic" LOGPIPE_KAFKA_DLQ_TOPIC="$RUN-protocols-dlq" \
        LOGPIPE_KAFKA_PARKED_TOPIC="$RUN-protocols-parked" "$BIN" producer --listen "127.0.0.1:$pport" \
        >"$ARTIFACTS/protocols-producer.log" 2>&1 &
    local producer_pid=$!
    "$BIN" gateway --listen "127.0.0.1:$gport" --producer-url "http://127.0.0.1:$pport" >"$ARTIFACTS/protocols-gateway.log" 2>&1 &
    local gateway_pid=$!
    PIDS+=("$producer_pid" "$gateway_pid")
    local deadline=$((SECONDS + 30))
    until curl -sf "http://127.0.0.1:$gport/health/ready" >/dev/null; do
        ((SECONDS < deadline)) || { echo "not ready; see $ARTIFACTS/protocols-*.log"; exit 1; }
        sleep 0.2
    done
    for protocol in $PROTOCOLS; do
        local out="$ARTIFACTS/protocol-$protocol" before after
        before=$(topic_records "$topic")
        echo "--- $protocol: $INGEST_EVENTS events, batch $BATCH, $CONCURRENCY in flight, no rate limit"
        # Warm-up (connections, metadata, the protocol's code paths), not measured.
        "$BIN" loadgen --target "http://127.0.0.1:$gport" --metrics-url none --protocol "$protocol" --rate 1000 \
            --total 500 --batch 50 --duration 10s --json >"$out-warmup.json" 2>>"$out.err" ||
            { echo "$protocol: warm-up failed; see $out.err"; exit 1; }
        "$BIN" loadgen --target "http://127.0.0.1:$gport" --metrics-url none --protocol "$protocol" --rate 0 \
            --total "$INGEST_EVENTS" --duration 10m --batch "$BATCH" --concurrency "$CONCURRENCY" --json \
            >"$out.json" 2>>"$out.err" || { echo "$protocol: loadgen failed; see $out.err"; exit 1; }
        after=$(topic_records "$topic")
        local acc rate p50 p99 fails warm
        read -r acc rate p50 p99 fails warm < <(python3 - "$out.json" "$out-warmup.json" <<'PY'
import json, sys
r, w = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
l = r["latency_ms"]
print(r["events_accepted"], f"{r['accepted_per_s']:.0f}", f"{l['p50']:.1f}", f"{l['p99']:.1f}",
      r["requests_failed"] + r["requests_refused"], w["events_accepted"])
PY
        )
        [[ -n "$base_rate" ]] || base_rate=$rate
        [[ "$protocol" != logpipe ]] || base_rate=$rate
        local expected=$((acc + warm)) in_topic=$((after - before)) check
        check="$in_topic/$expected"
        if ((in_topic < expected)); then
            check+=" LOSS"
            failed=1
        fi
        ((acc > 0)) || failed=1
        rows+=("$protocol $rate $p50 $p99 $fails $check")
    done
    stop_pid "$gateway_pid" 15
    stop_pid "$producer_pid" 15
    echo
    echo "ingest by protocol: $INGEST_EVENTS events each, batch $BATCH, $CONCURRENCY requests in flight, Apache Kafka (3 nodes, RF 3)"
    printf '| %-13s | %9s | %10s | %8s | %8s | %6s | %-22s |\n' protocol "events/s" "vs logpipe" "p50 ms" "p99 ms" failed "in topic / accepted"
    printf '|%s|%s|%s|%s|%s|%s|%s|\n' --------------- ----------- ------------ ---------- ---------- -------- ------------------------
    local row p r a b f c
    for row in "${rows[@]}"; do
        read -r p r a b f c <<<"$row"
        printf '| %-13s | %9s | %10s | %8s | %8s | %6s | %-22s |\n' "$p" "$r" \
            "$(awk -v r="$r" -v b="$base_rate" 'BEGIN {printf "%.2f", b ? r / b : 0}')" "$a" "$b" "$f" "$c"
    done
    ((failed == 0)) || { echo "a protocol accepted nothing or lost events (see the table and $ARTIFACTS/protocol-*)"; exit 1; }
}

start_kafka() {
    bench_cluster "$ARTIFACTS" 19392
}

echo "==> machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
if ((TABLE)); then
    # The topic is counted with Kafka's tools, so the protocol table runs on Apache Kafka only.
    start_kafka
    run_protocols "$KAFKA_BOOTSTRAP"
    exit 0
fi
for broker in $BROKERS; do
    case $broker in
    embedded) run_case embedded "" ;;
    kafka)
        start_kafka
        run_case kafka "$KAFKA_BOOTSTRAP"
        ;;
    *) echo "BROKERS may hold embedded and kafka, not $broker"; exit 1 ;;
    esac
done
