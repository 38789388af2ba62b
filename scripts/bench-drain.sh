#!/usr/bin/env bash
# Drain benchmark: EVENTS events already in the topic (on Apache Kafka: a 3-node KRaft cluster,
# replication factor 3, min.insync.replicas 2, from scripts/lib/kafka.sh) are stored in PostgreSQL
# and aggregated in Redis by ONE consumer instance; then the same rows are copied with a raw binary
# COPY into an identical table (same columns, indexes and unique key) in the same PostgreSQL, and
# the two rates are printed side by side. Figures are printed, never asserted. The three broker
# JVMs share the machine with everything else: their CPU time during the drain is printed beside
# the consumer's, PostgreSQL's and Redis's.
#
#   scripts/bench-drain.sh                 # 1,000,000 events
#   EVENTS=50000 scripts/bench-drain.sh    # smoke size
#   CONSUMER_ARGS="--set consumer.batch_size=5000" scripts/bench-drain.sh
#   RESULT_FILE=out.env scripts/bench-drain.sh   # also write the results as key=value lines
#   LOGPIPE=target/debug/logpipe scripts/bench-drain.sh   # use this binary, build nothing
#   PERF=1 [PERF_CALLGRAPH=dwarf] scripts/bench-drain.sh   # also profile the consumer 10 s mid-drain (perf,
#                                          # Debian linux-perf): artifacts/bench-drain/perf-*.txt
#   BENCH_KAFKA_DIR=DIR scripts/bench-drain.sh   # use the cluster already running in DIR (a
#                                          # kafka_cluster_start folder; scripts/bench.sh passes its
#                                          # own); its topics are deleted afterwards, the cluster
#                                          # left running. Without it: a fresh 3-node cluster in
#                                          # artifacts/bench-drain/kafka, stopped on exit.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/kafka.sh
source scripts/lib/kafka.sh
# shellcheck source=scripts/lib/metrics.sh
source scripts/lib/metrics.sh
# shellcheck source=scripts/lib/backlog.sh
source scripts/lib/backlog.sh
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

EVENTS=${EVENTS:-1000000}
ARTIFACTS="$REPO_ROOT/artifacts/bench-drain"
mkdir -p "$ARTIFACTS"
PG_URL=${LOGPIPE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${LOGPIPE_TEST_REDIS_URL:-redis://127.0.0.1:6379}
RUN="bench_$(date +%s)"

bench_binary
ensure_postgres
ensure_redis
command -v bc >/dev/null || apt_install bc
if [[ "${PERF:-0}" == 1 ]]; then command -v perf >/dev/null || apt_install linux-perf; fi

PIDS=()
OWN_CLUSTER=""
cleanup() {
    for pid in "${PIDS[@]}"; do stop_pid "$pid" 10 || true; done
    psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $RUN CASCADE" >/dev/null 2>&1 || true
    redis-cli --scan --pattern "$RUN:*" | xargs -r redis-cli del >/dev/null 2>&1 || true
    kafka_release_run "$OWN_CLUSTER" "$RUN"
}
trap cleanup EXIT

bench_cluster "$ARTIFACTS" 19392
# The broker JVMs, for their CPU time.
NODE_PIDS=()
for ((n = 1; n <= $(cat "$KAFKA_DIR/nodes"); n++)); do
    pid=$(kafka_node_pid "$KAFKA_DIR" "$n")
    [[ -n "$pid" ]] || { echo "Kafka node $n of $KAFKA_DIR is not running"; exit 1; }
    NODE_PIDS+=("$pid")
done
export LOGPIPE_KAFKA_BROKERS="$KAFKA_BOOTSTRAP"
COMMON=(--set "kafka.topic=$RUN-logs" --set "kafka.dlq_topic=$RUN-dlq" --set "kafka.parked_topic=$RUN-parked")

ACCEPTED=$(load_backlog "$BIN" "$ARTIFACTS" "$EVENTS" "${COMMON[@]}")
echo "backlog: $ACCEPTED events"

# A checkpoint before each measured phase (drain, raw COPY): otherwise the WAL of the previous
# phase or run forces one at a random moment of the next (max_wal_size), which made the same
# binary's drain vary from 83k to 110k events/s.
pg_checkpoint "$PG_URL"
echo "==> draining with one consumer instance (PostgreSQL schema $RUN, Redis prefix $RUN)"
CP=$(free_port 18582)
"$BIN" consumer "${COMMON[@]}" --listen "127.0.0.1:$CP" --postgres-url "$PG_URL" --redis-url "$REDIS_URL" \
    --set "postgres.schema=$RUN" --set "redis.key_prefix=$RUN" --set "consumer.group_id=$RUN" ${CONSUMER_ARGS:-} \
    >"$ARTIFACTS/consumer.log" 2>&1 &
CONSUMER_PID=$!; PIDS+=("$CONSUMER_PID")
# CPU time (user+system) used so far, in clock ticks (/proc/PID/stat, 10 ms each; `ps` gives
# whole seconds, too coarse for a drain of a few seconds): by one process, or by every process
# with that name. `secs` turns ticks into seconds.
HZ=$(getconf CLK_TCK)
cpu_pid() { local t; t=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $12 + $13}'); echo "${t:-0}"; }
cpu_of() { local p s=0; for p in $(pgrep -x "$1"); do s=$((s + $(cpu_pid "$p"))); done; echo "$s"; }
secs() { awk -v t="$1" -v hz="$HZ" 'BEGIN {printf "%.2f", t / hz}'; }
# CPU ticks of the broker JVMs, one figure per node.
cpu_nodes() { local p; for p in "${NODE_PIDS[@]}"; do cpu_pid "$p"; done; }
# "stored skipped" from one scrape of the consumer's metrics: records stored and counted, and
# offsets the consumer saw skipped by the broker (never stored; none expected on Apache Kafka).
progress() {
    local text n s
    text=$(curl -s "http://127.0.0.1:$CP/metrics" || true)
    n=$(prom_sum log_consumer_success_total <<<"$text")
    s=$(prom_sum log_consumer_skipped_offsets_total <<<"$text")
    echo "${n:-0} ${s:-0}"
}
start_t=""; done_n=0
deadline=$((SECONDS + 900))
while ((SECONDS < deadline)); do
    read -r n s < <(progress)
    if [[ -z "$start_t" && "$n" -gt 0 ]]; then
        start_t=$(date +%s.%N); start_n=$n
        cpu0_consumer=$(cpu_pid "$CONSUMER_PID"); cpu0_pg=$(cpu_of postgres); mapfile -t cpu0_kafka < <(cpu_nodes); cpu0_redis=$(cpu_of redis-server)
    fi
    if ((n >= ACCEPTED)); then done_n=$n; break; fi
    if ((s > 0 && n + s >= ACCEPTED)); then
        done_n=$n
        echo; echo "WARNING: the broker skipped $s offsets (see the consumer log); they cannot be stored"
        break
    fi
    if [[ "${PERF:-0}" == 1 && -z "${PERF_PID:-}" && -n "$start_t" ]] && ((n > ACCEPTED / 5)); then
        perf record -F 499 --call-graph "${PERF_CALLGRAPH:-fp}" -o "$ARTIFACTS/perf.data" -p "$CONSUMER_PID" -- sleep 10 >/dev/null 2>&1 &
        PERF_PID=$!
        perf record -F 199 -a -o "$ARTIFACTS/perf-all.data" -- sleep 10 >/dev/null 2>&1 &
        PERF_ALL_PID=$!
    fi
    printf '\r  stored and counted: %9d / %d' "$n" "$ACCEPTED"
    sleep 0.2
done
end_t=$(date +%s.%N)
cpu_consumer=$(secs $(( $(cpu_pid "$CONSUMER_PID") - cpu0_consumer )))
cpu_pg=$(secs $(( $(cpu_of postgres) - cpu0_pg )))
mapfile -t cpu1_kafka < <(cpu_nodes)
cpu_kafka=0; cpu_kafka_nodes=""
for i in "${!NODE_PIDS[@]}"; do
    d=$(( ${cpu1_kafka[i]:-0} - ${cpu0_kafka[i]:-0} ))
    cpu_kafka=$((cpu_kafka + d)); cpu_kafka_nodes+="${cpu_kafka_nodes:++}$(secs "$d")s"
done
cpu_kafka=$(secs "$cpu_kafka")
cpu_redis=$(secs $(( $(cpu_of redis-server) - cpu0_redis )))
echo
if [[ -n "${PERF_PID:-}" ]]; then
    wait "$PERF_PID" "$PERF_ALL_PID" || true
    perf report -i "$ARTIFACTS/perf-all.data" --sort comm --stdio 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12 >"$ARTIFACTS/perf-by-process.txt" || true
    perf report -i "$ARTIFACTS/perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' | head -40 >"$ARTIFACTS/perf-consumer.txt" || true
    echo "==> CPU by process during 10 s of the drain (perf, whole machine)"; cat "$ARTIFACTS/perf-by-process.txt"
    echo "==> the consumer's hottest functions"; head -25 "$ARTIFACTS/perf-consumer.txt"
fi
RSS=$(awk '/VmHWM/ {print $2}' "/proc/$CONSUMER_PID/status")
# Where the write stage's time went: rounds, records per batch, and the time per round spent in
# the store (COPY) and in the aggregates (Redis), from the consumer's own histograms.
curl -s "http://127.0.0.1:$CP/metrics" >"$ARTIFACTS/consumer-metrics.txt" || true
# "sum count" of each histogram, then the arithmetic.
hist() { echo "$(prom_sum "$1_sum" <"$ARTIFACTS/consumer-metrics.txt") $(prom_sum "$1_count" <"$ARTIFACTS/consumer-metrics.txt")"; }
WRITER=$(echo "$(hist log_consumer_store_write_seconds) $(hist log_consumer_aggregate_write_seconds) $(hist log_consumer_batch_size)" | awk '
    NF == 6 {ss = $1; sc = $2; as = $3; ac = $4; bs = $5; bc = $6}
    END {
        if (sc > 0 && ac > 0 && bc > 0)
            printf "%d store rounds, mean %.1f ms (%.1f s in all); %d aggregate updates, mean %.1f ms (%.1f s); %d batches of %.0f records on average", sc, 1000 * ss / sc, ss, ac, 1000 * as / ac, as, bc, bs / bc
        else
            print "(no write-stage histograms read)"
    }')
stop_pid "$CONSUMER_PID" 20
DRAIN_S=$(echo "$end_t - $start_t" | bc -l)
DRAIN_RATE=$(echo "($done_n - $start_n) / $DRAIN_S" | bc -l)

echo "==> raw binary COPY of the same rows into an identical table"
ROWS=$(psql "$PG_URL" -Atc "SELECT count(*) FROM $RUN.logs")
psql "$PG_URL" -qc "COPY (SELECT * FROM $RUN.logs) TO '/tmp/$RUN.bin' (FORMAT binary)"
psql "$PG_URL" -qc "CREATE TABLE $RUN.copy_target (LIKE $RUN.logs INCLUDING ALL)"
pg_checkpoint "$PG_URL"
COPY_MS=$(psql "$PG_URL" -qAt -c '\timing on' -c "COPY $RUN.copy_target FROM '/tmp/$RUN.bin' (FORMAT binary)" | awk '/^Time:/ {print $2}')
rm -f "/tmp/$RUN.bin"
COPY_RATE=$(echo "$ROWS / ($COPY_MS / 1000)" | bc -l)
DUPES=$(psql "$PG_URL" -Atc "SELECT count(*) - count(DISTINCT (kafka_topic, kafka_partition, kafka_offset, kafka_index)) FROM $RUN.logs")
COUNTED=$(redis-cli hget "$RUN:totals" all)

echo
printf '%-44s %s\n' "machine" "$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
printf '%-44s %s\n' "events in the backlog (accepted)" "$ACCEPTED"
printf '%-44s %s\n' "rows stored / duplicate rows" "$ROWS / $DUPES"
printf '%-44s %s\n' "offsets the broker skipped" "$(prom_sum log_consumer_skipped_offsets_total <"$ARTIFACTS/consumer-metrics.txt")"
printf '%-44s %s\n' "events counted in Redis" "${COUNTED:-0}"
printf '%-44s %.1f s\n' "drain time (first to last record)" "$DRAIN_S"
printf '%-44s %.0f events/s\n' "drain rate, one consumer instance" "$DRAIN_RATE"
printf '%-44s %.0f rows/s (%s ms)\n' "raw binary COPY, identical table" "$COPY_RATE" "$COPY_MS"
printf '%-44s %.2f\n' "drain / raw COPY" "$(echo "$DRAIN_RATE / $COPY_RATE" | bc -l)"
printf '%-44s %s MiB\n' "consumer peak RSS" "$((RSS / 1024))"
printf '%-44s %s\n' "write stage (whole run, from /metrics)" "$WRITER"
printf '%-44s consumer %ss, postgres %ss, kafka %ss (%s, %s nodes), redis %ss (of %.0f core-seconds available)\n' \
    "CPU time during the drain" "$cpu_consumer" "$cpu_pg" "$cpu_kafka" "$cpu_kafka_nodes" "${#NODE_PIDS[@]}" "$cpu_redis" \
    "$(echo "$DRAIN_S * $(nproc)" | bc -l)"

if [[ -n "${RESULT_FILE:-}" ]]; then
    {
        echo "events=$ACCEPTED"
        echo "stored=$ROWS"
        echo "duplicates=$DUPES"
        echo "counted=${COUNTED:-0}"
        printf 'drain_s=%.3f\n' "$DRAIN_S"
        printf 'drain_rate=%.0f\n' "$DRAIN_RATE"
        printf 'copy_rate=%.0f\n' "$COPY_RATE"
        printf 'ratio=%.2f\n' "$(echo "$DRAIN_RATE / $COPY_RATE" | bc -l)"
        echo "consumer_rss_mib=$((RSS / 1024))"
        echo "cpu_consumer=$cpu_consumer"
        echo "cpu_postgres=$cpu_pg"
        echo "cpu_kafka=$cpu_kafka"
        echo "cpu_redis=$cpu_redis"
    } >"$RESULT_FILE"
fi
