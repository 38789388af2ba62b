#!/usr/bin/env bash
# The whole-pipeline benchmark, on one machine, against Apache Kafka (the reference broker: a
# 3-node KRaft cluster, replication factor 3, min.insync.replicas 2, from scripts/lib/kafka.sh)
# and real PostgreSQL and Redis. Prints one summary (also written to artifacts/bench/summary.txt).
# Figures are printed, never asserted.
#
# One Kafka cluster serves the whole run (started at the beginning in artifacts/bench/<run>/kafka,
# stopped and its data deleted at the end); every step uses its own topics and consumer group, and
# a step's topics are deleted after it. The three broker JVMs share the machine's cores with
# everything else.
#
# 1. drain: DRAIN_EVENTS events already in a topic, stored and aggregated by one consumer
#    instance, next to a raw binary COPY of the same rows into an identical table in the same run
#    (scripts/bench-drain.sh, on this run's cluster).
# 2. ingest: `logpipe producer` + `logpipe gateway` (no consumer); `logpipe loadgen` posts
#    INGEST_EVENTS events in batches of 500 over the JSON API as fast as INGEST_CONCURRENCY
#    requests in flight allow (acks=all, the producer's only mode). Every accepted event must be
#    in the topic afterwards (sum of its end offsets).
# 3. reference: Apache Kafka's own clients on the same cluster, in the same run:
#    ProducerPerformance (acks=all, the compression of logpipe's producer default, records of the
#    average value size measured in the ingest step's topic, --throughput -1, INGEST_EVENTS
#    records, into a topic with as many partitions as logpipe's) and ConsumerPerformance (the same
#    records, a fresh group). The summary gives logpipe's ingest and drain rates as ratios of
#    these, beside the drain's ratio to the raw COPY.
# 4. end to end, on Kafka: three logpipe processes (`producer`, `gateway`, `consumer`) per step;
#    `logpipe loadgen` posts at each rate in RATES for DURATION, then (SEARCH=1) probes higher rates
#    to find the highest sustainable one and confirms it for DURATION.
# 5. the same against the embedded broker: one `logpipe run` process per step (mock cluster
#    inside it, PostgreSQL and Redis still real).
#
# Each logpipe step starts its own processes, with its own topic, group, PostgreSQL schema and
# Redis prefix, so the peak RSS reported is that step's own. Columns:
#   achieved      events accepted by the gateway (2xx) per second of sending;
#   e2e           gateway receipt -> committed in PostgreSQL, p50/p95/p99 estimated from the
#                 buckets of log_consumer_end_to_end_latency_seconds (bounds 10, 12.5, 15, 20, 25,
#                 30, 40, 50, 75, 100, 150, 200, 300, 500 ms: 2.5-10 ms wide below 50 ms, 25-50 ms
#                 up to 200 ms, 100-200 ms above);
#   gw p99        request latency at the client (loadgen), from each request's scheduled start;
#   max lag       max over the step of (gateway_events_accepted_total - log_consumer_success_total),
#                 both read from /metrics every second: accepted by Kafka, not yet stored;
#   peak RSS      VmHWM of each logpipe process at the end of the step (gateway/producer/consumer,
#                 or the one `run` process);
#   stored/acc.   rows in the step's PostgreSQL table / events the gateway accepted.
# A rate is sustained when achieved >= 97% of offered, no request failed, the lag never exceeds
# 1 s of traffic (a consumer that falls behind shows a growing lag), and every accepted event is
# stored within SETTLE. The search confirms the highest passing probe for DURATION, stepping down
# through the passing probes until one is confirmed.
#
#   scripts/bench.sh                                  # the full run (about 15 minutes)
#   SMOKE=1 scripts/bench.sh                          # CI size: a few minutes after the build, debug binary
#   RATES="5000" SEARCH=0 DURATION=10s DRAIN_EVENTS=0 INGEST_EVENTS=0 scripts/bench.sh   # e2e at 5k only
#
# Knobs: DURATION (30s), RATES ("5000 20000"), SEARCH (1), SEARCH_RATES ("30000 40000 ...
# 120000"), SEARCH_DURATION (15s), DRAIN_EVENTS (1000000; 0 skips the drain), INGEST_EVENTS
# (2000000, also the records of Kafka's tools; 0 skips the ingest step and the reference),
# INGEST_CONCURRENCY (16), BROKERS ("kafka embedded"), SETTLE (30s), CONCURRENCY (32), BATCH
# (default 100 up to 5,000 events/s, else 500), PROFILE (release; SMOKE=1 uses the debug binary
# the tests built), LOGPIPE (a logpipe binary to use as it is, building nothing), CONSUMER_ARGS
# (extra flags for `logpipe consumer` and `logpipe run`, e.g. "--set consumer.batch_linger=20ms"),
# KAFKA_BASE_PORT (preferred first port of the cluster, 19392; 6 ports), SMOKE (0).
# Optional steps for issue 16's target table (printed last, "not run (KNOB=...)" when skipped):
#   DRAIN_LARGE (0): events of a second, large drain (10000000 for the issue's row, ~5 minutes),
#     compared with the DRAIN_EVENTS drain of the same run;
#   QUERY_ROWS (0; SMOKE: 200000): scripts/bench-query.sh on a store of that many rows (20000000 for
#     the issue's rows: about 15 minutes of fill), with QUERY_STEADY_RATE (5000; SMOKE: 0) events/s
#     ingested through this run's cluster meanwhile, QUERY_N (200; SMOKE: 40) requests per kind;
#     several sizes ("1000000 5000000 10000000 20000000") give the scaling table, the store growing
#     to each in turn (the target rows use the last); QUERY_DRAIN (0) events drained by one
#     consumer into the store at each size adds the drain rate to that table;
#   E2E_REF (1): after each Kafka end-to-end step at a rate of RATES, Kafka's ProducerPerformance
#     throttled to that rate for the same duration (acks=all, logpipe's compression, linger and
#     record size: the ingest step's, else REF_RECORD_SIZE, 240): the latency floor the brokers
#     set;
#   WARMUP (20s; SMOKE: 0): a Kafka end-to-end step at the first rate before the measured ones,
#     not in the table (a cold cluster's JIT gave a 418 ms p99);
#   STEP_ENV: VAR=VALUE words given to every logpipe process of the end-to-end steps
#     (LOGPIPE_PRODUCER_LINGER=5ms, LOGPIPE_KAFKA_PROPERTY_FETCH_WAIT_MAX_MS=10, ...);
#   AB ("name: VAR=V ...; name2: ..."), AB_ROUNDS (2): on Kafka, instead of one step per rate,
#     AB_ROUNDS rounds of one step per variant (each with its own STEP_ENV; an empty list is
#     the defaults), alternating, each followed by its ProducerPerformance reference (E2E_REF=1).
# SMOKE=1: 50,000-event drain, 50,000-event ingest and reference, 10 s at 2,000 events/s on each
# broker, still on a 3-node cluster.
# Rows marked * were measured while a build or CI run was active on the machine. A full run waits
# for another full run on the same machine to finish (flock /tmp/logpipe-bench.lock).
# Exits non-zero when a process (a broker node, a logpipe process, one of Kafka's tools) does not
# start or dies, a step accepts nothing, or the rows stored (or records in the topic) differ from
# the events accepted once the consumer has stopped catching up (a loss). Never on a figure.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/kafka.sh
source scripts/lib/kafka.sh
# shellcheck source=scripts/lib/metrics.sh
source scripts/lib/metrics.sh

SMOKE=${SMOKE:-0}
if [[ "$SMOKE" == 1 ]]; then
    : "${DURATION:=10s}" "${RATES:=2000}" "${SEARCH:=0}" "${DRAIN_EVENTS:=50000}" "${PROFILE:=debug}"
    : "${INGEST_EVENTS:=50000}"
    : "${SETTLE:=20s}"
    : "${QUERY_ROWS:=200000}" "${QUERY_STEADY_RATE:=0}" "${QUERY_N:=40}" "${WARMUP:=0}"
fi
DRAIN_LARGE=${DRAIN_LARGE:-0}
QUERY_ROWS=${QUERY_ROWS:-0}
QUERY_STEADY_RATE=${QUERY_STEADY_RATE:-5000}
QUERY_N=${QUERY_N:-200}
QUERY_DRAIN=${QUERY_DRAIN:-0}
E2E_REF=${E2E_REF:-1}
WARMUP=${WARMUP:-20s}
AB=${AB:-}
AB_ROUNDS=${AB_ROUNDS:-2}
STEP_ENV=${STEP_ENV:-}
DURATION=${DURATION:-30s}
RATES=${RATES:-5000 20000}
SEARCH=${SEARCH:-1}
SEARCH_RATES=${SEARCH_RATES:-30000 40000 50000 60000 70000 80000 90000 100000 120000}
SEARCH_DURATION=${SEARCH_DURATION:-15s}
DRAIN_EVENTS=${DRAIN_EVENTS:-1000000}
INGEST_EVENTS=${INGEST_EVENTS:-2000000}
INGEST_CONCURRENCY=${INGEST_CONCURRENCY:-16}
BROKERS=${BROKERS:-kafka embedded}
for broker in $BROKERS; do
    [[ $broker == kafka || $broker == embedded ]] || {
        echo "[bench] ERROR: BROKERS may hold kafka and embedded, not $broker" >&2
        exit 1
    }
done
SETTLE=${SETTLE:-30s}
CONCURRENCY=${CONCURRENCY:-32}
PROFILE=${PROFILE:-release}
PG_URL=${LOGPIPE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${LOGPIPE_TEST_REDIS_URL:-redis://127.0.0.1:6379}
RUN="bench_$(date +%s)_$$"
# Logs and reports of this run in a directory of its own; the summary also in artifacts/bench/.
ARTIFACTS="$REPO_ROOT/artifacts/bench/$RUN"
mkdir -p "$ARTIFACTS"
START=$SECONDS

say() { printf '[bench %4ds] %s\n' $((SECONDS - START)) "$*"; }
die() {
    printf '[bench] ERROR: %s\n' "$*" >&2
    exit 1
}
# seconds DURATION: 30s, 2m, 30 -> whole seconds.
seconds() {
    case $1 in
    *ms) echo 0 ;;
    *s) echo "${1%s}" ;;
    *m) echo $((${1%m} * 60)) ;;
    *) echo "$1" ;;
    esac
}

command -v python3 >/dev/null || die "python3 is needed to read loadgen's JSON report"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
command -v bc >/dev/null || apt_install bc
ensure_postgres
ensure_redis
NEED_KAFKA=0
if [[ " $BROKERS " == *" kafka "* || "$DRAIN_EVENTS" != 0 || "$INGEST_EVENTS" != 0 || "$DRAIN_LARGE" != 0 ]] ||
    [[ "$QUERY_ROWS" != 0 && ("$QUERY_STEADY_RATE" != 0 || "$QUERY_DRAIN" != 0) ]]; then
    NEED_KAFKA=1
    kafka_install 2>>"$ARTIFACTS/kafka.log" || {
        tail -n 20 "$ARTIFACTS/kafka.log" >&2
        die "Apache Kafka could not be installed (see $ARTIFACTS/kafka.log)"
    }
fi

if [[ -n "${LOGPIPE:-}" ]]; then
    BIN=$LOGPIPE
    [[ -x "$BIN" ]] || die "LOGPIPE=$BIN is not an executable"
    PROFILE="$PROFILE (LOGPIPE=$BIN)"
else
    case $PROFILE in
    release)
        say "building the release binary"
        cargo build --release -q -p logpipe
        BIN="$REPO_ROOT/target/release/logpipe"
        ;;
    debug | dev)
        say "building the debug binary"
        cargo build -q -p logpipe
        BIN="$REPO_ROOT/target/debug/logpipe"
        ;;
    *) die "PROFILE must be release or debug, not $PROFILE" ;;
    esac
fi

# Processes this script started, stopped on exit; schemas and Redis prefixes to drop.
PIDS=()
NAMES=()
SAMPLER_PID=""
KAFKA_DIR=""
drop_name() {
    psql "$PG_URL" -qc "DROP SCHEMA IF EXISTS $1 CASCADE" >/dev/null 2>&1 || true
    redis-cli -u "$REDIS_URL" --scan --pattern "$1:*" | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
}
cleanup() {
    local rc=$?
    [[ -n "$SAMPLER_PID" ]] && kill "$SAMPLER_PID" 2>/dev/null
    for pid in "${PIDS[@]}"; do stop_pid "$pid" 10 || true; done
    for name in "${NAMES[@]}"; do drop_name "$name"; done
    if [[ -n "$KAFKA_DIR" ]]; then
        kafka_cluster_stop "$KAFKA_DIR" 2>>"$ARTIFACTS/kafka.log" || true
        rm -rf "$KAFKA_DIR"/data-*
    fi
    return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

MACHINE="$(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo), $(uname -sr)"
say "machine: $MACHINE; load average before the build: $LOAD_BEFORE; binary: $BIN"
# Builds and CI runs on the machine skew every figure: steps that saw one are marked.
others() { pgrep -fc '\.ci/run|rustc|cargo-nextest|cargo (build|test|nextest|clippy)' || true; }
BUSY_STEPS=0
# The target table's figures, as key=value lines (scripts/lib/bench_targets.py prints the table).
TARGETS="$ARTIFACTS/targets.env"
: >"$TARGETS"
target() { echo "$1=$2" >>"$TARGETS"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# state_of LOAD_BEFORE BUSY: "1.20->3.40", with "*" when a build or CI run was seen.
state_of() { printf '%s->%s%s' "$1" "$(load1)" "$( (($2 > 0)) && echo '*')"; }
target rates "$RATES"
# The code measured: the commit, and whether the working tree differs from it.
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [[ -n "$(git status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null)" ]]; then
    COMMIT+=" + uncommitted changes"
fi

# Two full runs at once would measure each other: wait for the other one (not in SMOKE mode,
# which CI runs on a machine that is busy anyway).
if [[ "$SMOKE" != 1 ]]; then
    exec 9>/tmp/logpipe-bench.lock
    if ! flock -n 9; then
        say "another scripts/bench.sh is running on this machine; waiting for it (up to 30 minutes)"
        flock -w 1800 9 || say "still running after 30 minutes; going ahead (figures will be skewed)"
    fi
fi

# -------------------------------------------------------------------------------------------------
# The Apache Kafka cluster of this run: 3 nodes, replication factor 3, min.insync.replicas 2.
KAFKA_NODES=3
KAFKA_PIDS=()
# kafka_alive WHEN: dies if a node of the cluster is not running any more.
kafka_alive() {
    local n pid
    ((NEED_KAFKA)) || return 0
    for ((n = 1; n <= KAFKA_NODES; n++)); do
        pid=${KAFKA_PIDS[n - 1]}
        pid_alive "$pid" || {
            tail -n 20 "$KAFKA_DIR/node-$n.log" >&2
            die "Kafka node $n (pid $pid) is not running $1 (log: $KAFKA_DIR/node-$n.log)"
        }
    done
}
topic_tool() { kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" "$@"; }
# delete_topics PREFIX: a step's topics, so the run's disk use stays bounded.
delete_topics() {
    ((NEED_KAFKA)) || return 0
    topic_tool --delete --topic "$1.*" >>"$ARTIFACTS/kafka.log" 2>&1 || say "could not delete the topics $1* (see $ARTIFACTS/kafka.log)"
}
# topic_records TOPIC: records in TOPIC (sum of its partitions' end offsets: the idempotent
# producer writes no control records, so an offset is a record).
topic_records() {
    kafka_tool org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$KAFKA_BOOTSTRAP" --topic "$1" --time -1 \
        2>>"$ARTIFACTS/kafka.log" | awk -F: 'NF == 3 {s += $3; n++} END {if (n) print s; else exit 1}'
}
if ((NEED_KAFKA)); then
    KAFKA_DIR="$ARTIFACTS/kafka"
    kafka_base=$(kafka_free_base "${KAFKA_BASE_PORT:-19392}" "$KAFKA_NODES" 2>>"$ARTIFACTS/kafka.log") ||
        die "no free ports for the Kafka cluster (see $ARTIFACTS/kafka.log)"
    say "starting Apache Kafka $KAFKA_VERSION: $KAFKA_NODES nodes from port $kafka_base (dir $KAFKA_DIR)"
    kafka_cluster_start "$KAFKA_DIR" "$KAFKA_NODES" "$kafka_base" 2>>"$ARTIFACTS/kafka.log" || {
        tail -n 30 "$ARTIFACTS/kafka.log" >&2
        die "the Kafka cluster did not start (see $ARTIFACTS/kafka.log and $KAFKA_DIR/node-*.log)"
    }
    for ((n = 1; n <= KAFKA_NODES; n++)); do KAFKA_PIDS+=("$(kafka_node_pid "$KAFKA_DIR" "$n")"); done
    kafka_alive "after the start"
    say "Kafka ready at $KAFKA_BOOTSTRAP (node pids ${KAFKA_PIDS[*]})"
fi

# -------------------------------------------------------------------------------------------------
# 1. Drain
DRAIN_LINE=""
declare -A D=()
if [[ "$DRAIN_EVENTS" != 0 ]]; then
    say "drain: $DRAIN_EVENTS events (scripts/bench-drain.sh, log: $ARTIFACTS/drain.txt)"
    drain_busy=$(others)
    drain_load=$(load1)
    EVENTS=$DRAIN_EVENTS LOGPIPE=$BIN RESULT_FILE="$ARTIFACTS/drain.env" BENCH_KAFKA_DIR=$KAFKA_DIR scripts/bench-drain.sh \
        >"$ARTIFACTS/drain.txt" 2>&1 || {
        tail -n 30 "$ARTIFACTS/drain.txt" >&2
        die "bench-drain.sh failed"
    }
    while IFS='=' read -r k v; do D[$k]=$v; done <"$ARTIFACTS/drain.env"
    say "drain: ${D[drain_rate]} events/s, raw COPY ${D[copy_rate]} rows/s, ratio ${D[ratio]}, stored ${D[stored]}/${D[events]};" \
        "CPU s: consumer ${D[cpu_consumer]}, postgres ${D[cpu_postgres]}, kafka ${D[cpu_kafka]}, redis ${D[cpu_redis]}"
    kafka_alive "after the drain"
    if [[ "${D[stored]}" != "${D[events]}" || "${D[counted]}" != "${D[events]}" || "${D[duplicates]}" != 0 ]]; then
        die "drain: ${D[events]} events accepted but ${D[stored]} rows stored, ${D[duplicates]} duplicates, ${D[counted]} counted in Redis"
    fi
    drain_label=drain
    if ((drain_busy + $(others) > 0)); then
        drain_label="drain*"
        BUSY_STEPS=$((BUSY_STEPS + 1))
    fi
    target drain_events "${D[events]}"
    target drain_rate "${D[drain_rate]}"
    target copy_rate "${D[copy_rate]}"
    target drain_ratio "${D[ratio]}"
    target drain_state "$(state_of "$drain_load" "$((drain_busy + $(others)))")"
    DRAIN_LINE=$(printf '%-10s %-9s %9s %12s %12s %6s %26s %10s %s' "$drain_label" "kafka" "${D[events]}" \
        "${D[drain_rate]}" "${D[copy_rate]}" "${D[ratio]}" "${D[stored]}/${D[duplicates]}/${D[counted]}" "${D[consumer_rss_mib]}" \
        "${D[cpu_consumer]}/${D[cpu_postgres]}/${D[cpu_kafka]}/${D[cpu_redis]} of $(printf '%.0f' "$(echo "${D[drain_s]} * $(nproc)" | bc -l)")")
fi

# 1b. The large drain (DRAIN_LARGE events), compared with the drain above in the table.
LARGE_NOTE=""
if [[ "$DRAIN_LARGE" != 0 ]]; then
    say "large drain: $DRAIN_LARGE events (scripts/bench-drain.sh, log: $ARTIFACTS/drain-large.txt)"
    large_busy=$(others)
    large_load=$(load1)
    EVENTS=$DRAIN_LARGE LOGPIPE=$BIN RESULT_FILE="$ARTIFACTS/drain-large.env" BENCH_KAFKA_DIR=$KAFKA_DIR \
        scripts/bench-drain.sh >"$ARTIFACTS/drain-large.txt" 2>&1 || {
        tail -n 30 "$ARTIFACTS/drain-large.txt" >&2
        die "bench-drain.sh (DRAIN_LARGE=$DRAIN_LARGE) failed"
    }
    declare -A DL=()
    while IFS='=' read -r k v; do DL[$k]=$v; done <"$ARTIFACTS/drain-large.env"
    kafka_alive "after the large drain"
    if [[ "${DL[stored]}" != "${DL[events]}" || "${DL[duplicates]}" != 0 ]]; then
        die "large drain: ${DL[events]} events accepted but ${DL[stored]} rows stored, ${DL[duplicates]} duplicates"
    fi
    target large_events "${DL[events]}"
    target large_rate "${DL[drain_rate]}"
    target large_state "$(state_of "$large_load" "$((large_busy + $(others)))")"
    LARGE_NOTE="large drain: ${DL[events]} events at ${DL[drain_rate]} events/s (raw COPY ${DL[copy_rate]} rows/s, ratio ${DL[ratio]}), consumer peak RSS ${DL[consumer_rss_mib]} MiB; stored ${DL[stored]}, ${DL[duplicates]} duplicates, ${DL[counted]} counted"
    say "$LARGE_NOTE"
fi

# -------------------------------------------------------------------------------------------------
# 2. End to end

# ready_or_die URL PID WHAT LOG: wait_ready (60 s), or die showing the end of LOG.
ready_or_die() {
    wait_ready "$1" "$2" "$3" 60 && return 0
    tail -n 20 "$4" >&2
    die "$3 did not start (log: $4)"
}

# wait_assigned METRICS_URL: until the consumer group has its partitions.
wait_assigned() {
    local url=$1 deadline=$((SECONDS + 60)) n
    while :; do
        n=$({ curl -sf "$url" || true; } | prom_sum log_consumer_assigned_partitions)
        n=${n:-0}
        ((n > 0)) && return 0
        ((SECONDS < deadline)) || die "the consumer got no partitions within 60 s ($url)"
        sleep 0.5
    done
}

# sampler ACCEPTED_URL STORED_URL OUT: every second, "unix_time accepted stored" (only complete
# samples).
sampler() {
    local acc_url=$1 stored_url=$2 out=$3 a s
    while :; do
        a=$({ curl -s --max-time 1 "$acc_url" || true; } | prom_sum gateway_events_accepted_total)
        s=$({ curl -s --max-time 1 "$stored_url" || true; } | prom_sum log_consumer_success_total)
        [[ -n "$a" && -n "$s" ]] && echo "$(date +%s.%N) $a $s" >>"$out"
        sleep 1
    done
}

# Running processes of the current step: "role pid" pairs; the consumer's metrics URL.
STEP_PROCS=()
STEP_METRICS=()
batch_for() {
    if [[ -n "${BATCH:-}" ]]; then echo "$BATCH"; elif (($1 <= 5000)); then echo 100; else echo 500; fi
}

# start_stack BROKER NAME: fresh processes for one step. Sets GATEWAY, ACC_METRICS, STORED_METRICS.
start_stack() {
    local broker=$1 name=$2 log="$ARTIFACTS/$2"
    STEP_PROCS=()
    local names=(
        "LOGPIPE_KAFKA_TOPIC=${name}_logs" "LOGPIPE_KAFKA_DLQ_TOPIC=${name}_dlq"
        "LOGPIPE_KAFKA_PARKED_TOPIC=${name}_parked" "LOGPIPE_CONSUMER_GROUP_ID=${name}_group"
    )
    local stores=(
        "LOGPIPE_POSTGRES_URL=$PG_URL" "LOGPIPE_POSTGRES_SCHEMA=$name"
        "LOGPIPE_REDIS_URL=$REDIS_URL" "LOGPIPE_REDIS_KEY_PREFIX=$name"
    )
    NAMES+=("$name")
    if [[ $broker == kafka ]]; then
        local pport gport cport pid
        # The run's cluster; this step's topics and group are its own.
        local kafka="LOGPIPE_KAFKA_BROKERS=$KAFKA_BOOTSTRAP"
        pport=$(free_port 18681)
        # shellcheck disable=SC2086 # STEP_ENV is a list of VAR=VALUE words
        env "$kafka" "${names[@]}" $STEP_ENV "$BIN" producer --listen "127.0.0.1:$pport" >"$log-producer.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        STEP_PROCS+=("producer $pid")
        ready_or_die "http://127.0.0.1:$pport" "$pid" "logpipe producer" "$log-producer.log"
        gport=$(free_port 18680)
        cport=$(free_port 18682)
        # shellcheck disable=SC2086 # STEP_ENV is a list of VAR=VALUE words
        env "$kafka" "${names[@]}" $STEP_ENV "$BIN" gateway --listen "127.0.0.1:$gport" --producer-url "http://127.0.0.1:$pport" \
            >"$log-gateway.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        STEP_PROCS+=("gateway $pid")
        # shellcheck disable=SC2086 # CONSUMER_ARGS is a list of flags
        env "$kafka" "${names[@]}" "${stores[@]}" $STEP_ENV "$BIN" consumer --listen "127.0.0.1:$cport" ${CONSUMER_ARGS:-} \
            >"$log-consumer.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        STEP_PROCS+=("consumer $pid")
        ready_or_die "http://127.0.0.1:$gport" "${STEP_PROCS[2]#* }" "logpipe gateway" "$log-gateway.log"
        ready_or_die "http://127.0.0.1:$cport" "$pid" "logpipe consumer" "$log-consumer.log"
        GATEWAY="http://127.0.0.1:$gport"
        ACC_METRICS="$GATEWAY/metrics"
        STORED_METRICS="http://127.0.0.1:$cport/metrics"
        STEP_METRICS=("gateway $ACC_METRICS" "producer http://127.0.0.1:$pport/metrics" "consumer $STORED_METRICS")
    else
        local gport pport cport pid
        gport=$(free_port 18780)
        pport=$(free_port 18781)
        cport=$(free_port 18782)
        # shellcheck disable=SC2086 # CONSUMER_ARGS is a list of flags
        env LOGPIPE_KAFKA_BROKERS= "${names[@]}" "${stores[@]}" $STEP_ENV "$BIN" run \
            --set "gateway.listen=127.0.0.1:$gport" --set "producer.listen=127.0.0.1:$pport" \
            --set "consumer.listen=127.0.0.1:$cport" ${CONSUMER_ARGS:-} >"$log-run.log" 2>&1 &
        pid=$!
        PIDS+=("$pid")
        STEP_PROCS+=("run $pid")
        GATEWAY="http://127.0.0.1:$gport"
        ready_or_die "$GATEWAY" "$pid" "logpipe run" "$log-run.log"
        ACC_METRICS="$GATEWAY/metrics"
        STORED_METRICS="$GATEWAY/metrics"
        STEP_METRICS=("run $GATEWAY/metrics")
    fi
    wait_assigned "$STORED_METRICS"
}

stop_stack() {
    local i
    # Consumer first (it commits).
    for ((i = ${#STEP_PROCS[@]} - 1; i >= 0; i--)); do stop_pid "${STEP_PROCS[i]#* }" 20; done
    STEP_PROCS=()
}

rows_of() { psql "$PG_URL" -Atc "SELECT count(*) FROM $1.logs"; }

ROWS_FILE="$ARTIFACTS/rows.txt"
: >"$ROWS_FILE"
STEP_N=0

# e2e_step BROKER LABEL RATE DURATION: one measured step in fresh processes. Sets LAST_ROW (the
# table row), STEP_LOSS (non-empty if PostgreSQL ends up with fewer or more rows than accepted)
# and returns 0 if the rate was sustained.
e2e_step() {
    local broker=$1 label=$2 rate=$3 duration=$4
    local batch name
    batch=$(batch_for "$rate")
    STEP_N=$((STEP_N + 1))
    name="${RUN}_${STEP_N}"
    say "$broker $rate events/s for $duration ($label, batch $batch): starting processes"
    # Each step starts from a flushed PostgreSQL: the previous step's (or the drain's) dirty
    # pages are not written out during this one.
    pg_checkpoint "$PG_URL"
    local busy load0
    busy=$(others)
    load0=$(load1)
    start_stack "$broker" "$name"

    # Warm-up: connections, metadata, partitions' first fetches. Not measured.
    "$BIN" loadgen --target "$GATEWAY" --metrics-url "$STORED_METRICS" --rate 1000 --total 500 --batch 50 \
        --duration 10s --settle 20s --json >"$ARTIFACTS/$name-warmup.json" 2>>"$ARTIFACTS/$name-loadgen.err" ||
        die "warm-up load failed on $broker; see $ARTIFACTS/$name-*"
    local base
    base=$(rows_of "$name") || die "cannot count rows in $name.logs"

    local samples="$ARTIFACTS/$name-lag.txt" t0
    : >"$samples"
    sampler "$ACC_METRICS" "$STORED_METRICS" "$samples" &
    SAMPLER_PID=$!
    t0=$(date +%s.%N)
    say "$broker $rate events/s: sending"
    "$BIN" loadgen --target "$GATEWAY" --metrics-url "$STORED_METRICS" --rate "$rate" --duration "$duration" \
        --batch "$batch" --concurrency "$CONCURRENCY" --settle "$SETTLE" --json \
        >"$ARTIFACTS/$name-report.json" 2>>"$ARTIFACTS/$name-loadgen.err" ||
        die "loadgen failed on $broker at $rate events/s; see $ARTIFACTS/$name-loadgen.err"
    sleep 1
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    SAMPLER_PID=""

    # The report and the lag samples: the figures and the verdict.
    local verdict
    verdict=$(python3 - "$ARTIFACTS/$name-report.json" "$samples" "$t0" "$(seconds "$duration")" "$rate" <<'PY'
import json, sys
report, samples, t0, dur, rate = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
r = json.load(open(report))
lags = []
for line in open(samples):
    t, a, s = line.split()
    lags.append((float(t), int(a) - int(s)))
max_lag = max((l for _, l in lags), default=-1)
c = r.get("consumer") or {}
e = c.get("e2e_latency_ms") or {}
f = lambda v: f"{v:.1f}" if v is not None else "-"
reasons = []
if r["accepted_per_s"] < 0.97 * rate:
    reasons.append(f"achieved {100 * r['accepted_per_s'] / rate:.0f}% of offered")
if r["requests_failed"] or r["requests_refused"]:
    reasons.append(f"{r['requests_failed']} requests failed, {r['requests_refused']} refused")
if max_lag > rate:
    reasons.append(f"lag reached {max_lag} events, {max_lag / rate:.1f} s of traffic")
if c.get("stored", 0) < r["events_accepted"]:
    reasons.append(f"{c.get('stored', 0)} of {r['events_accepted']} stored within the settle time")
print(r["events_accepted"], f"{r['accepted_per_s']:.0f}", f(e.get("p50")), f(e.get("p95")), f(e.get("p99")),
      f(r["latency_ms"]["p99"]), max_lag, r["requests_failed"], "; ".join(reasons) or "sustained")
PY
    ) || die "cannot read $ARTIFACTS/$name-report.json"
    local accepted achieved p50 p95 p99 gw99 maxlag failed reasons
    read -r accepted achieved p50 p95 p99 gw99 maxlag failed reasons <<<"$verdict"
    ((accepted > 0)) || die "$broker at $rate events/s: the gateway accepted nothing; see $ARTIFACTS/$name-*"

    # Every accepted event must end up as a row: if the consumer is still behind, wait while the
    # count grows (a rate it could not sustain), so a difference left afterwards is a real loss.
    local rows stored last_rows=-1 still=0 deadline=$((SECONDS + 300))
    while :; do
        rows=$(rows_of "$name") || die "cannot count rows in $name.logs"
        stored=$((rows - base))
        ((stored >= accepted || SECONDS >= deadline)) && break
        if ((rows == last_rows)); then
            still=$((still + 1))
            ((still >= 10)) && break
        else
            still=0
        fi
        ((last_rows < 0)) && say "$broker $rate events/s: $stored of $accepted stored; waiting while the consumer catches up"
        last_rows=$rows
        sleep 1
    done
    local counted role pid rss_text=""
    local -A rss=()
    counted=$(redis-cli -u "$REDIS_URL" hget "$name:totals" all)
    for entry in "${STEP_PROCS[@]}"; do
        role=${entry% *}
        pid=${entry#* }
        kill -0 "$pid" 2>/dev/null || die "$broker: logpipe $role (pid $pid) died during the step; see $ARTIFACTS/$name-$role.log"
        rss[$role]=$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status")
    done
    for role in gateway producer consumer run; do
        if [[ -n "${rss[$role]:-}" ]]; then rss_text+="${rss_text:+/}${rss[$role]}"; fi
    done
    # Each process's metrics at the end of the step, for a closer look at where latency goes.
    for entry in "${STEP_METRICS[@]}"; do
        curl -s "${entry#* }" >"$ARTIFACTS/$name-${entry% *}-metrics.txt" || true
    done
    stop_stack
    drop_name "$name"
    if [[ $broker == kafka ]]; then
        kafka_alive "after the step at $rate events/s"
        delete_topics "${name}_"
    fi

    busy=$((busy + $(others)))
    STEP_BUSY=""
    if ((busy > 0)); then
        STEP_BUSY="*"
        BUSY_STEPS=$((BUSY_STEPS + 1))
        label+="*"
        say "$broker $rate events/s: a build or CI run was active during this step (figures skewed)"
    fi
    local check="$stored/$accepted"
    STEP_LOSS=""
    if ((stored != accepted)); then
        check="$check MISMATCH"
        STEP_LOSS="$broker $rate events/s: $stored rows stored of $accepted accepted"
        local logf
        for logf in "$ARTIFACTS/$name-consumer.log" "$ARTIFACTS/$name-run.log"; do
            if [[ -f $logf ]] && grep -q "Offset out of range" "$logf"; then
                STEP_LOSS+=" (offset resets in $logf: the broker had deleted records the consumer had not read yet"
                [[ $broker == embedded ]] && STEP_LOSS+="; librdkafka's mock cluster keeps at most 5 MiB per partition"
                STEP_LOSS+=")"
            fi
        done
    fi
    say "$broker $rate events/s: achieved $achieved, e2e p50/p95/p99 $p50/$p95/$p99 ms, gateway p99 $gw99 ms," \
        "max lag $maxlag, peak RSS $rss_text MiB, stored/accepted $check, counted in Redis ${counted:-0}" \
        "(with the warm-up's $base), failed requests $failed: $reasons"
    LAST_ROW=$(printf '%-10s %-9s %8s %9s %8s %8s %8s %8s %9s %-13s %s' "$label" "$broker" "$rate" "$achieved" \
        "$p50" "$p95" "$p99" "$gw99" "$maxlag" "$rss_text" "$check")
    # For the target table (load average over the step, 1 min, before -> after).
    LAST_P50=$p50 LAST_P99=$p99 LAST_GW99=$gw99 LAST_RSS=$rss_text
    STEP_STATE=$(state_of "$load0" "$busy")
    STEP_REASONS=$reasons
    [[ $reasons == sustained && -z "$STEP_LOSS" ]]
}

# -------------------------------------------------------------------------------------------------
# 2. Ingest over the HTTP API, and 3. Apache Kafka's own clients on the same cluster (reference)


INGEST_ROW=""
INGEST_NOTES=()
REF_ROWS=()
if [[ "$INGEST_EVENTS" != 0 ]]; then
    STEP_N=$((STEP_N + 1))
    name="${RUN}_${STEP_N}"
    log="$ARTIFACTS/$name"
    ingest_busy=$(others)
    ingest_load=$(load1)
    pg_checkpoint "$PG_URL"
    say "ingest: $INGEST_EVENTS events in batches of 500 over the HTTP API, $INGEST_CONCURRENCY requests in flight, no rate limit (producer + gateway on Kafka)"
    topics=("LOGPIPE_KAFKA_TOPIC=${name}_logs" "LOGPIPE_KAFKA_DLQ_TOPIC=${name}_dlq" "LOGPIPE_KAFKA_PARKED_TOPIC=${name}_parked")
    pport=$(free_port 18681)
    env "LOGPIPE_KAFKA_BROKERS=$KAFKA_BOOTSTRAP" "${topics[@]}" "$BIN" producer --listen "127.0.0.1:$pport" \
        >"$log-producer.log" 2>&1 &
    ingest_ppid=$!
    PIDS+=("$ingest_ppid")
    ready_or_die "http://127.0.0.1:$pport" "$ingest_ppid" "logpipe producer" "$log-producer.log"
    gport=$(free_port 18680)
    env "LOGPIPE_KAFKA_BROKERS=$KAFKA_BOOTSTRAP" "${topics[@]}" "$BIN" gateway --listen "127.0.0.1:$gport" \
        --producer-url "http://127.0.0.1:$pport" >"$log-gateway.log" 2>&1 &
    ingest_gpid=$!
    PIDS+=("$ingest_gpid")
    ready_or_die "http://127.0.0.1:$gport" "$ingest_gpid" "logpipe gateway" "$log-gateway.log"
    # Warm-up (connections, metadata), not measured; then as fast as the requests in flight allow.
    "$BIN" loadgen --target "http://127.0.0.1:$gport" --metrics-url none --rate 1000 --total 500 --batch 50 \
        --duration 10s --json >"$log-warmup.json" 2>>"$log-loadgen.err" || die "ingest: warm-up load failed; see $log-*"
    "$BIN" loadgen --target "http://127.0.0.1:$gport" --metrics-url none --rate 0 --total "$INGEST_EVENTS" \
        --duration 10m --batch 500 --concurrency "$INGEST_CONCURRENCY" --json \
        >"$log-report.json" 2>>"$log-loadgen.err" || die "ingest: loadgen failed; see $log-loadgen.err"
    read -r ingest_acc ingest_rate ingest_s ingest_p50 ingest_p99 ingest_failed warm_acc < <(python3 - "$log-report.json" "$log-warmup.json" <<'PY'
import json, sys
r, w = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
l = r["latency_ms"]
print(r["events_accepted"], f"{r['accepted_per_s']:.0f}", f"{r['elapsed_s']:.1f}", f"{l['p50']:.1f}", f"{l['p99']:.1f}",
      r["requests_failed"] + r["requests_refused"], w["events_accepted"])
PY
    ) || die "cannot read $log-report.json"
    ((ingest_acc > 0)) || die "ingest: the gateway accepted nothing; see $log-*"
    for p in "$ingest_gpid" "$ingest_ppid"; do
        pid_alive "$p" || die "ingest: a logpipe process (pid $p) died during the step; see $log-*.log"
    done
    ingest_rss="$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$ingest_gpid/status")/$(awk '/VmHWM/ {printf "%.0f", $2 / 1024}' "/proc/$ingest_ppid/status")"
    stop_pid "$ingest_gpid" 20
    stop_pid "$ingest_ppid" 20
    kafka_alive "after the ingest step"
    # Every accepted event must be in the topic (acks=all: accepted means written to 2+ replicas).
    in_topic=$(topic_records "${name}_logs") || die "cannot read the end offsets of ${name}_logs (see $ARTIFACTS/kafka.log)"
    expected=$((ingest_acc + warm_acc))
    ingest_check="$in_topic/$expected"
    if ((in_topic < expected)); then
        die "ingest: $expected events accepted (with the warm-up's $warm_acc) but $in_topic records in ${name}_logs (a loss)"
    elif ((in_topic > expected)); then
        ingest_check+=" (+ records of failed requests)"
    fi
    # The records logpipe's producer wrote: average value size over a sample, and the topic's
    # partitions, so Kafka's tools write the same sizes into the same layout.
    kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$KAFKA_BOOTSTRAP" \
        --topic "${name}_logs" --from-beginning --max-messages 5000 --timeout-ms 60000 \
        >"$log-sample.txt" 2>>"$ARTIFACTS/kafka.log" || true
    # Bytes per value (LC_ALL=C: length() counts bytes), the newline the console consumer adds not
    # counted.
    read -r sample_n record_size < <(LC_ALL=C awk '{n++; b += length($0)} END {printf "%d %.0f\n", n, n ? b / n : 0}' "$log-sample.txt")
    ((sample_n > 0)) || die "could not read a sample of ${name}_logs with Kafka's console consumer (see $ARTIFACTS/kafka.log)"
    partitions=$(topic_tool --describe --topic "${name}_logs" 2>>"$ARTIFACTS/kafka.log" |
        sed -n 's/.*PartitionCount: *\([0-9]*\).*/\1/p' | head -n 1)
    [[ -n "$partitions" ]] || die "cannot describe ${name}_logs (see $ARTIFACTS/kafka.log)"
    compression=$("$BIN" config check --json 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["producer"]["compression"])') ||
        die "cannot read producer.compression from \`logpipe config check --json\`"
    label=ingest
    if ((ingest_busy + $(others) > 0)); then
        label="ingest*"
        BUSY_STEPS=$((BUSY_STEPS + 1))
    fi
    say "ingest: $ingest_acc events accepted in $ingest_s s = $ingest_rate events/s, request p50/p99 $ingest_p50/$ingest_p99 ms," \
        "failed requests $ingest_failed, peak RSS g/p $ingest_rss MiB, in the topic $ingest_check;" \
        "average record value $record_size bytes ($sample_n sampled), $partitions partitions, compression $compression"
    INGEST_NOTES+=("ingest: $ingest_acc events accepted in $ingest_s s, request p50/p99 $ingest_p50/$ingest_p99 ms, failed requests $ingest_failed, peak RSS gateway/producer $ingest_rss MiB, records in the topic / accepted (with a 500-event warm-up) $ingest_check.")

    # The reference: the same cluster, record size, partitions, compression and acks.
    ref="${name}_kafka_ref"
    topic_tool --create --topic "$ref" --partitions "$partitions" --replication-factor "$KAFKA_NODES" \
        >>"$ARTIFACTS/kafka.log" 2>&1 || die "cannot create the topic $ref (see $ARTIFACTS/kafka.log)"
    ref_busy=$(others)
    say "reference: Kafka's ProducerPerformance, $INGEST_EVENTS records of $record_size bytes, acks=all, compression $compression, no throttle"
    kafka_perf org.apache.kafka.tools.ProducerPerformance --bootstrap-server "$KAFKA_BOOTSTRAP" --topic "$ref" \
        --num-records "$INGEST_EVENTS" --record-size "$record_size" --throughput -1 \
        --command-property acks=all "compression.type=$compression" >"$log-producer-perf.txt" 2>&1 || {
        tail -n 20 "$log-producer-perf.txt" >&2
        die "Kafka's ProducerPerformance failed (see $log-producer-perf.txt)"
    }
    read -r pp_rate pp_mb pp_avg pp_p99 < <(python3 - "$log-producer-perf.txt" <<'PY'
import re, sys
last = [l for l in open(sys.argv[1]) if "records sent" in l][-1]
m = re.search(r"([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency.* ([\d.]+) ms 99th", last)
print(f"{float(m[1]):.0f}", f"{float(m[2]):.1f}", f"{float(m[3]):.1f}", m[4])
PY
    ) || die "cannot read ProducerPerformance's result in $log-producer-perf.txt"
    ref_written=$(topic_records "$ref") || die "cannot read the end offsets of $ref"
    ((ref_written >= INGEST_EVENTS)) || die "Kafka's ProducerPerformance wrote $ref_written of $INGEST_EVENTS records (see $log-producer-perf.txt)"
    say "reference: Kafka's ConsumerPerformance, the same $INGEST_EVENTS records, a fresh group"
    kafka_perf org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$KAFKA_BOOTSTRAP" --topic "$ref" \
        --num-records "$INGEST_EVENTS" --group "${name}_kafka_ref_group" --timeout 60000 >"$log-consumer-perf.txt" 2>&1 || {
        tail -n 20 "$log-consumer-perf.txt" >&2
        die "Kafka's ConsumerPerformance failed (see $log-consumer-perf.txt)"
    }
    read -r cp_n cp_rate cp_mb cp_rebalance < <(python3 - "$log-consumer-perf.txt" <<'PY'
import sys
lines = [l.strip() for l in open(sys.argv[1]) if l.strip()]
head = next(i for i, l in enumerate(lines) if l.startswith("start.time"))
keys = [k.strip() for k in lines[head].split(",")]
vals = dict(zip(keys, (v.strip() for v in lines[head + 1].split(","))))
print(vals["data.consumed.in.nMsg"], f"{float(vals['fetch.nMsg.sec']):.0f}", f"{float(vals['fetch.MB.sec']):.1f}", vals["rebalance.time.ms"])
PY
    ) || die "cannot read ConsumerPerformance's result in $log-consumer-perf.txt"
    ((cp_n >= INGEST_EVENTS)) || die "Kafka's ConsumerPerformance read $cp_n of $INGEST_EVENTS records (see $log-consumer-perf.txt)"
    kafka_alive "after Kafka's performance tools"
    delete_topics "${name}_"
    ref_mark=""
    if ((ref_busy + $(others) > 0)); then
        ref_mark="*"
        BUSY_STEPS=$((BUSY_STEPS + 1))
    fi
    say "reference: producer $pp_rate records/s ($pp_mb MB/s, latency avg $pp_avg ms, p99 $pp_p99 ms);" \
        "consumer $cp_rate records/s ($cp_mb MB/s, group join $cp_rebalance ms not counted)"
    target ingest_rate "$ingest_rate"
    target pp_rate "$pp_rate"
    target ingest_state "$(state_of "$ingest_load" "$((ingest_busy + ref_busy + $(others)))")"
    ratio() { if [[ -n "$1" && -n "$2" && "$2" != 0 ]]; then printf '%.2f' "$(echo "$1 / $2" | bc -l)"; else echo -; fi; }
    REF_ROWS+=("$(printf '%-10s %-38s %10s   %-44s %10s %6s' "$label" "HTTP API, 500 events/request" "$ingest_rate" \
        "ProducerPerformance$ref_mark (records)" "$pp_rate" "$(ratio "$ingest_rate" "$pp_rate")")")
    drain_lbl=${drain_label:-drain}
    REF_ROWS+=("$(printf '%-10s %-38s %10s   %-44s %10s %6s' "$drain_lbl" "topic -> PostgreSQL + Redis" "${D[drain_rate]:--}" \
        "ConsumerPerformance$ref_mark (records)" "$cp_rate" "$(ratio "${D[drain_rate]:-}" "$cp_rate")")")
    if [[ -n "${D[copy_rate]:-}" ]]; then
        REF_ROWS+=("$(printf '%-10s %-38s %10s   %-44s %10s %6s' "$drain_lbl" "topic -> PostgreSQL + Redis" "${D[drain_rate]}" \
            "raw COPY into an identical table (rows)" "${D[copy_rate]}" "${D[ratio]}")")
    fi
    REF_HEAD="logpipe against Apache Kafka's own clients on the same cluster in the same run: acks=all, compression $compression, $INGEST_EVENTS records of $record_size bytes (the average value size of $sample_n records logpipe's producer wrote), $partitions partitions"
    INGEST_NOTES+=("ProducerPerformance: $pp_mb MB/s, latency avg $pp_avg ms, p99 $pp_p99 ms (Kafka's producer defaults otherwise: batch.size 16 KiB, linger.ms 5, no keys; its payload is random letters, which compress less than logpipe's JSON). ConsumerPerformance: $cp_mb MB/s, over the fetch time (the group join, $cp_rebalance ms, not counted, as the drain's rate runs from its first record).")
fi

# e2e_ref RATE DURATION: Kafka's ProducerPerformance throttled to RATE records/s for DURATION on
# this run's cluster (acks=all, logpipe's compression, its record size and partitions): the
# latency the brokers alone give at that rate, beside logpipe's end-to-end step. Sets REF_LINE
# and REF_P50/REF_P99 (ms, from the tool's own percentiles).
REF_N=0
e2e_ref() {
    local rate=$1 duration=$2 topic load0 busy out
    REF_N=$((REF_N + 1))
    topic="${RUN}_e2e_ref_$REF_N"
    out="$ARTIFACTS/e2e-ref-$REF_N.txt"
    # Without the ingest step: logpipe's defaults, and REF_RECORD_SIZE for the record size.
    : "${compression:=$("$BIN" config check --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["producer"]["compression"])')}"
    : "${partitions:=$("$BIN" config check --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["kafka"]["partitions"])')}"
    : "${record_size:=${REF_RECORD_SIZE:-240}}"
    # logpipe's producer.linger (1 ms by default; the Java producer's own default is 5 ms), so the
    # reference waits for batch-mates no longer than logpipe does. Read for each step: an A/B
    # variant may set it.
    local ref_linger
    # shellcheck disable=SC2086 # STEP_ENV is a list of VAR=VALUE words
    ref_linger=$(env $STEP_ENV "$BIN" config check --json | python3 -c '
import json, re, sys
v = json.load(sys.stdin)["producer"]["linger"]
m = re.fullmatch(r"(\d+)(ms|s|us|ns)?", v.replace(" ", ""))
print(int(int(m[1]) * {"ms": 1, "s": 1000, "us": 0.001, "ns": 1e-6}[m[2] or "ms"]))')
    load0=$(load1)
    busy=$(others)
    topic_tool --create --topic "$topic" --partitions "$partitions" --replication-factor "$KAFKA_NODES" \
        >>"$ARTIFACTS/kafka.log" 2>&1 || die "cannot create the topic $topic (see $ARTIFACTS/kafka.log)"
    say "reference at $rate records/s for $duration: ProducerPerformance, $record_size bytes, acks=all, $compression"
    kafka_perf org.apache.kafka.tools.ProducerPerformance --bootstrap-server "$KAFKA_BOOTSTRAP" --topic "$topic" \
        --num-records "$((rate * $(seconds "$duration")))" --record-size "$record_size" --throughput "$rate" \
        --command-property acks=all "compression.type=$compression" "linger.ms=$ref_linger" >"$out" 2>&1 || {
        tail -n 20 "$out" >&2
        die "Kafka's ProducerPerformance at $rate records/s failed (see $out)"
    }
    delete_topics "$topic"
    read -r REF_RATE REF_AVG REF_P50 REF_P99 REF_MAX < <(python3 - "$out" <<'PY2'
import re, sys
last = [l for l in open(sys.argv[1]) if "records sent" in l][-1]
m = re.search(r"([\d.]+) records/sec .*, ([\d.]+) ms avg latency, ([\d.]+) ms max latency, (\d+) ms 50th, \d+ ms 95th, (\d+) ms 99th", last)
print(f"{float(m[1]):.0f}", m[2], m[4], m[5], m[3])
PY2
    ) || die "cannot read ProducerPerformance's result in $out"
    REF_STATE=$(state_of "$load0" "$((busy + $(others)))")
    REF_LINE="ProducerPerformance (linger.ms $ref_linger) at $rate/s for $duration: achieved $REF_RATE, latency p50/p99/max $REF_P50/$REF_P99/$REF_MAX ms (avg $REF_AVG), load $REF_STATE"
    say "reference: $REF_LINE"
}

# The target table's end-to-end figures: the Kafka cluster's, or the embedded broker's without it.
TABLE_BROKER=embedded
[[ " $BROKERS " == *" kafka "* ]] && TABLE_BROKER=kafka
if [[ "$E2E_REF" == 1 && $TABLE_BROKER != kafka ]]; then target ref_skip "BROKERS=$BROKERS"; fi
if [[ "$E2E_REF" != 1 ]]; then target ref_skip "E2E_REF=0"; fi
# record_e2e RATE: the last step's figures as the table's row at RATE (and its reference).
record_e2e() {
    target "e2e_$1_p50" "$LAST_P50"
    target "e2e_$1_p99" "$LAST_P99"
    target "e2e_$1_gw99" "$LAST_GW99"
    target "e2e_$1_duration" "$DURATION$([[ $TABLE_BROKER == kafka ]] || echo ", $TABLE_BROKER")"
    target "e2e_$1_state" "$STEP_STATE"
    declare -g "RSS_$1=$LAST_RSS" "STATE_$1=$STEP_STATE"
}
record_ref() {
    target "ref_$1_p50" "$REF_P50"
    target "ref_$1_p99" "$REF_P99"
}
E2E_NOTES=()
AB_ROWS=()
SEARCH_NOTES=()
LOSSES=()
# Steps that failed after the ones before them had printed figures: reported after the summary.
STEP_FAILURES=()
for broker in $BROKERS; do
    best_fixed=""
    best_row=""
    if [[ $broker == kafka && "$(seconds "$WARMUP")" != 0 ]]; then
        # The brokers' JIT: a cold cluster's first steps are slower (see the header).
        first_rate=${RATES%% *}
        e2e_step kafka warm-up "$first_rate" "$WARMUP" || true
        if [[ -n "$STEP_LOSS" ]]; then LOSSES+=("$STEP_LOSS"); fi
        E2E_NOTES+=("warm-up (not in the tables): kafka $first_rate events/s for $WARMUP, e2e p50/p99 $LAST_P50/$LAST_P99 ms, gw p99 $LAST_GW99 ms, load $STEP_STATE")
    fi
    if [[ $broker == kafka && -n "$AB" ]]; then
        # A/B: AB_ROUNDS rounds of every variant at each rate, alternating so that the machine's
        # other load falls on each variant alike; each step followed by its reference.
        IFS=';' read -ra variants <<<"$AB"
        saved_env=$STEP_ENV
        for rate in $RATES; do
            for ((round = 1; round <= AB_ROUNDS; round++)); do
                for ((vi = 0; vi < ${#variants[@]}; vi++)); do
                    v=${variants[vi]}
                    vname=$(echo "${v%%:*}" | tr -d ' ')
                    STEP_ENV="$saved_env ${v#*:}"
                    [[ "$v" == *:* ]] || STEP_ENV=$saved_env
                    e2e_step kafka "$vname" "$rate" "$DURATION" || true
                    echo "$LAST_ROW" >>"$ROWS_FILE"
                    if [[ -n "$STEP_LOSS" ]]; then LOSSES+=("$STEP_LOSS"); fi
                    ((vi == 0 && round == 1)) && record_e2e "$rate"
                    row=$(printf '%-12s %5s %7s %8s %8s %8s %-16s' "$vname" "$round" "$rate" "$LAST_P50" "$LAST_P99" \
                        "$LAST_GW99" "$STEP_STATE")
                    if [[ "$E2E_REF" == 1 ]]; then
                        e2e_ref "$rate" "$DURATION"
                        ((vi == 0 && round == 1)) && record_ref "$rate"
                        row+=$(printf ' %8s %8s %-16s' "$REF_P50" "$REF_P99" "$REF_STATE")
                    fi
                    AB_ROWS+=("$row   ${STEP_ENV# }")
                done
            done
        done
        STEP_ENV=$saved_env
    else
        for rate in $RATES; do
            sustained=0
            e2e_step "$broker" "$((rate / 1000))k/s" "$rate" "$DURATION" && sustained=1
            if ((rate < 1000)); then LAST_ROW=$(printf '%-10s%s' "$rate/s" "${LAST_ROW:10}"); fi
            echo "$LAST_ROW" >>"$ROWS_FILE"
            if [[ -n "$STEP_LOSS" ]]; then LOSSES+=("$STEP_LOSS"); fi
            if ((sustained)); then
                best_fixed=$rate
                best_row=$LAST_ROW
            fi
            [[ $broker == "$TABLE_BROKER" ]] && record_e2e "$rate"
            if [[ $broker == kafka && "$E2E_REF" == 1 ]]; then
                e2e_ref "$rate" "$DURATION"
                record_ref "$rate"
                E2E_NOTES+=("reference for the kafka $rate events/s step: $REF_LINE")
            fi
        done
    fi
    if [[ "$SEARCH" != 1 ]]; then
        [[ $broker == "$TABLE_BROKER" ]] && target max_skip "SEARCH=0"
        continue
    fi
    if [[ $broker == kafka && -n "$AB" ]]; then
        target max_skip "AB set: no search"
        continue
    fi
    top=0
    for rate in $RATES; do if ((rate > top)); then top=$rate; fi; done
    passed=()
    note="$broker, search with $SEARCH_DURATION probes:"
    exhausted=1
    for rate in $SEARCH_RATES; do
        ((rate > top)) || continue
        if e2e_step "$broker" probe "$rate" "$SEARCH_DURATION"; then
            passed+=("$rate")
            note+=" $rate$STEP_BUSY ok;"
        else
            note+=" $rate$STEP_BUSY not sustained ($STEP_REASONS)."
            if [[ -n "$STEP_LOSS" ]]; then LOSSES+=("$STEP_LOSS"); fi
            exhausted=0
            break
        fi
    done
    if ((exhausted)); then note+=" (no higher rate in SEARCH_RATES)."; fi
    confirmed=""
    # Confirm the highest passing probe for DURATION; if it fails, the ones below it (three tries).
    for ((i = ${#passed[@]} - 1; i >= 0 && i >= ${#passed[@]} - 3; i--)); do
        if e2e_step "$broker" max "${passed[i]}" "$DURATION"; then
            confirmed=${passed[i]}
            echo "$LAST_ROW" >>"$ROWS_FILE"
            if [[ $broker == "$TABLE_BROKER" ]]; then
                target max_rate "$confirmed"
                target max_rss "$LAST_RSS"
                target max_state "$STEP_STATE"
                target max_duration "$DURATION"
            fi
            note+=" Confirmed ${passed[i]} for $DURATION (row max)."
            break
        fi
        if [[ -n "$STEP_LOSS" ]]; then LOSSES+=("$STEP_LOSS"); fi
        note+=" ${passed[i]} not sustained for $DURATION ($STEP_REASONS)."
    done
    if [[ -z "$confirmed" && -n "$best_fixed" ]]; then
        note+=" Highest sustained: $best_fixed (row max repeats that step)."
        fallback_label=max
        if [[ "${best_row:0:10}" == *"*"* ]]; then fallback_label="max*"; fi
        printf '%-10s%s\n' "$fallback_label" "${best_row:10}" >>"$ROWS_FILE"
        if [[ $broker == "$TABLE_BROKER" ]]; then
            rss_var="RSS_$best_fixed" state_var="STATE_$best_fixed"
            target max_rate "$best_fixed"
            target max_rss "${!rss_var:-}"
            target max_state "${!state_var:-}"
            target max_duration "$DURATION"
            target max_how " (no probe confirmed: a step of RATES)"
        fi
    elif [[ -z "$confirmed" && $broker == "$TABLE_BROKER" ]]; then
        target max_skip "no rate sustained"
    fi
    SEARCH_NOTES+=("$note")
done

# -------------------------------------------------------------------------------------------------
# 6. The query API and search on a big store (scripts/bench-query.sh), ingest through this run's
# cluster meanwhile.
QUERY_NOTE=""
if [[ "$QUERY_ROWS" != 0 ]]; then
    say "query: scripts/bench-query.sh, $QUERY_ROWS rows, steady ingest $QUERY_STEADY_RATE/s, N=$QUERY_N (log: $ARTIFACTS/query.txt)"
    query_busy=$(others)
    query_load=$(load1)
    # Its SMOKE size without Kafka; otherwise this run's cluster carries the steady ingest.
    query_env=(ROWS_LIST="$QUERY_ROWS" N="$QUERY_N" STEADY_RATE="$QUERY_STEADY_RATE" INDEX_STUDY=0
        DRAIN_EVENTS="$QUERY_DRAIN" LOGPIPE="$BIN" RESULT_FILE="$ARTIFACTS/query.env")
    if [[ "$QUERY_STEADY_RATE" != 0 || "$QUERY_DRAIN" != 0 ]]; then query_env+=(BENCH_KAFKA_DIR="$KAFKA_DIR"); fi
    # A failed query step (a size too big for the disk, a search that times out) still leaves
    # every earlier step's figures worth printing: the summary comes first, the failure after it.
    if env "${query_env[@]}" scripts/bench-query.sh >"$ARTIFACTS/query.txt" 2>&1; then
        QUERY_NOTE="query: $QUERY_ROWS rows, steady ingest $QUERY_STEADY_RATE/s, $QUERY_N requests per kind (the full tables: $ARTIFACTS/query.txt)"
    else
        tail -n 30 "$ARTIFACTS/query.txt" >&2
        QUERY_NOTE="query: FAILED (bench-query.sh exited non-zero; its figures below are those of the sizes it finished; see $ARTIFACTS/query.txt)"
        STEP_FAILURES+=("bench-query.sh failed (see $ARTIFACTS/query.txt)")
    fi
    if [[ -s "$ARTIFACTS/query.env" ]]; then
        while IFS='=' read -r k v; do target "q_$k" "$v"; done <"$ARTIFACTS/query.env"
    fi
    target q_state "$(state_of "$query_load" "$((query_busy + $(others)))")"
    kafka_alive "after the query step"
    say "query: done in its log's tables; $(grep -c . "$ARTIFACTS/query.env" 2>/dev/null || echo 0) figures"
fi

# -------------------------------------------------------------------------------------------------
# Summary
{
    echo "logpipe benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $COMMIT"
    echo "machine: $MACHINE; load average before the build: $LOAD_BEFORE; binary: $PROFILE"
    echo "everything on this one machine: logpipe processes, load generator, broker, PostgreSQL, Redis"
    if ((NEED_KAFKA)); then
        echo "broker 'kafka': Apache Kafka $KAFKA_VERSION, one $KAFKA_NODES-node KRaft cluster for the whole run (replication factor 3,"
        echo "  min.insync.replicas 2, all nodes on this machine); each step has its own topics and consumer group"
    fi
    echo
    if [[ -n "$DRAIN_LINE" ]]; then
        echo "drain: events already in the topic -> one consumer -> PostgreSQL + Redis; raw COPY of the same rows into an identical table"
        printf '%-10s %-9s %9s %12s %12s %6s %26s %10s %s\n' "scenario" "broker" "events" "drain ev/s" "COPY rows/s" \
            "ratio" "stored/duplicates/counted" "RSS MiB" "CPU s consumer/postgres/kafka/redis"
        echo "$DRAIN_LINE"
        echo
    fi
    if ((${#REF_ROWS[@]})); then
        echo "$REF_HEAD"
        printf '%-10s %-38s %10s   %-44s %10s %6s\n' "scenario" "logpipe" "events/s" "reference" "per second" "ratio"
        for row in "${REF_ROWS[@]}"; do echo "$row"; done
        for n in "${INGEST_NOTES[@]}"; do echo "$n"; done
        echo
    fi
    echo "end to end: loadgen -> gateway -> producer -> broker -> consumer -> PostgreSQL + Redis (rates in events/s)"
    printf '%-10s %-9s %8s %9s %8s %8s %8s %8s %9s %-13s %s\n' "scenario" "broker" "offered" "achieved" \
        "e2e p50" "e2e p95" "e2e p99" "gw p99" "max lag" "RSS g/p/c" "stored/accepted"
    cat "$ROWS_FILE"
    echo
    echo "e2e: gateway receipt -> committed in PostgreSQL, in ms, estimated from histogram buckets (bounds 10, 12.5, 15,"
    echo "  20, 25, 30, 40, 50, 75, 100, 150, 200, 300, 500 ms), so within one bucket's width. gw p99: request latency at"
    echo "  the client (from each request's scheduled start), ms."
    echo "max lag: max of gateway accepted - consumer stored (events), sampled every second. RSS g/p/c: peak RSS (VmHWM)"
    echo "  in MiB of gateway/producer/consumer (embedded: the one 'logpipe run'); each step runs in fresh processes."
    echo "each step: $DURATION at the offered rate after a 500-event warm-up; batch 100 events/request up to 5,000/s, else 500."
    for n in "${SEARCH_NOTES[@]}"; do echo "$n"; done
    for n in "${E2E_NOTES[@]}"; do echo "$n"; done
    if ((${#AB_ROWS[@]})); then
        echo
        echo "A/B on kafka ($AB_ROUNDS rounds, alternating; e2e ms from the histogram, PP = ProducerPerformance at the same rate; load 1 min before->after)"
        printf '%-12s %5s %7s %8s %8s %8s %-16s' variant round rate "e2e p50" "e2e p99" "gw p99" "load"
        if [[ "$E2E_REF" == 1 ]]; then printf ' %8s %8s %-16s' "PP p50" "PP p99" "PP load"; fi
        echo "   env"
        for n in "${AB_ROWS[@]}"; do echo "$n"; done
    fi
    if [[ -n "$LARGE_NOTE" ]]; then echo "$LARGE_NOTE"; fi
    if [[ -n "$QUERY_NOTE" ]]; then echo "$QUERY_NOTE"; fi
    if [[ "$QUERY_ROWS" == *" "* ]]; then
        echo
        sed -n '/^scaling:/,/^$/p' "$ARTIFACTS/query.txt"
    fi
    for n in "${LOSSES[@]}"; do echo "LOSS: $n"; done
    for n in "${STEP_FAILURES[@]}"; do echo "FAILED: $n"; done
    if ((BUSY_STEPS)); then
        echo "* measured while a build or CI run was active on this machine: those figures are skewed."
    fi
    echo
    echo "issue 16's targets (machine: $MACHINE; load average 1/5/15 min at the start $LOAD_BEFORE, at the end $(cut -d' ' -f1-3 /proc/loadavg)):"
    python3 scripts/lib/bench_targets.py "$TARGETS" || echo "(cannot print the target table from $TARGETS)"
} | tee "$ARTIFACTS/summary.txt"
cp "$ARTIFACTS/summary.txt" "$REPO_ROOT/artifacts/bench/summary.txt"
say "done in $((SECONDS - START)) s; summary in artifacts/bench/summary.txt (logs in $ARTIFACTS)"

if ((${#LOSSES[@]})); then
    die "stored differs from accepted in ${#LOSSES[@]} step(s): see the LOSS lines above"
fi
if ((${#STEP_FAILURES[@]})); then
    die "${STEP_FAILURES[*]}"
fi
