# shellcheck shell=bash
# shellcheck disable=SC2034 # globals set here (CONSUMER_PID, TERM_RC, DRAIN_SECS, V_OK, ...) are read by the scripts
# Shared helpers of scripts/kill-test.sh, scripts/scale-test.sh and scripts/broker-fault-test.sh:
# a private Apache Kafka cluster, logpipe processes started in the background and tracked, a
# bounded-rate load client (`logpipe loadgen --run`, marked load) that records the outcome of
# every event it sends, and the exactly-once check (PostgreSQL rows by marker, Redis aggregates
# against the rows). Source it from bash after setting nothing; call `stack_init NAME`.
#
# What a run owns, so it can share the machine with other runs and engineers:
#   - an Apache Kafka KRaft cluster of KAFKA_NODES nodes (3: replication factor 3,
#     min.insync.replicas 2) on free ports, its data in artifacts/NAME/kafka/ (never the suite's);
#   - per phase: topic, DLQ topic, consumer group, PostgreSQL schema (database `test`, URL from
#     LOGPIPE_TEST_POSTGRES_URL like the test suite) and Redis key prefix (on the shared Redis,
#     LOGPIPE_TEST_REDIS_URL), all named after the run; dropped on exit unless KEEP_DATA=1;
#   - logs in artifacts/NAME/ (emptied at the start of a run; one run of a script at a time).
#
# Knobs shared by the scripts: LOGPIPE (binary; default target/debug/logpipe, built when
# missing), BUILD=1 (run `cargo build --bin logpipe` first), RATE (events/s, default 500), BATCH
# (events per request, 10), DRAIN_TIMEOUT (s, 180), KEEP_DATA (0), KAFKA_NODES (3),
# GROUP_PROTOCOL (classic or consumer: `consumer.group_protocol` of every consumer).

if [[ -n "${LOGPIPE_STACK_SH_LOADED:-}" ]]; then
    return 0
fi
LOGPIPE_STACK_SH_LOADED=1

# shellcheck source=scripts/lib/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/services.sh"
# shellcheck source=scripts/lib/kafka.sh
source "$(dirname "${BASH_SOURCE[0]}")/kafka.sh"
# shellcheck source=scripts/lib/metrics.sh
source "$(dirname "${BASH_SOURCE[0]}")/metrics.sh"

RATE=${RATE:-500}
BATCH=${BATCH:-10}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-180}
KEEP_DATA=${KEEP_DATA:-0}
case ${GROUP_PROTOCOL:-classic} in
classic | consumer) ;;
*) echo "GROUP_PROTOCOL must be classic or consumer, not '$GROUP_PROTOCOL'" >&2; exit 2 ;;
esac

ST_NAME=""
ST_START=$SECONDS
ST_PROCS=()     # "name pid" of every process started, in start order
ST_SCHEMAS=()   # PostgreSQL schemas to drop on exit
ST_PREFIXES=()  # Redis key prefixes to delete on exit
ST_LOADS=()     # load client pids
KAFKA_NODES=${KAFKA_NODES:-3}
KAFKA_DIR=""

say() { printf '[%s %4ds] %s\n' "$ST_NAME" $((SECONDS - ST_START)) "$*"; }
warn() { printf '[%s %4ds] WARNING: %s\n' "$ST_NAME" $((SECONDS - ST_START)) "$*" >&2; }

# tail_logs FILE...: the last lines of each log, for a failure report.
tail_logs() {
    local f
    for f in "$@"; do
        [[ -f "$f" ]] || continue
        printf '\n----- last 25 lines of %s -----\n' "${f#"$REPO_ROOT"/}" >&2
        tail -n 25 "$f" >&2
    done
}

# die MESSAGE [LOG...]: report, show the logs' tails and what to do, exit 1 (cleanup runs).
die() {
    local msg=$1
    shift
    printf '\n[%s] FAIL: %s\n' "$ST_NAME" "$msg" >&2
    tail_logs "$@"
    printf '\n[%s] Logs of this run: %s\n' "$ST_NAME" "${ARTIFACTS#"$REPO_ROOT"/}/" >&2
    printf '[%s] Next: read the logs above; rerun with KEEP_DATA=1 to keep the PostgreSQL schemas and Redis keys of the run for inspection.\n' "$ST_NAME" >&2
    exit 1
}

# stack_init NAME: checks tools and services, picks the binary, starts a private Kafka cluster,
# installs the cleanup trap. Sets REPO_ROOT, ARTIFACTS, RUN, BIN, PG_URL, REDIS_URL, BROKERS.
stack_init() {
    ST_NAME=$1
    ST_START=$SECONDS
    REPO_ROOT=$(logpipe_repo_root)
    ARTIFACTS="$REPO_ROOT/artifacts/$ST_NAME"
    mkdir -p "$ARTIFACTS"
    local tool
    for tool in curl python3 flock; do
        command -v "$tool" >/dev/null || die "missing tool: $tool (apt-get install curl python3 util-linux)"
    done
    # One run of a script at a time on a machine (they would share artifacts/NAME/).
    exec 8>"$REPO_ROOT/artifacts/.$ST_NAME.lock"
    if ! flock -n 8; then
        say "another $ST_NAME run holds artifacts/.$ST_NAME.lock; waiting up to 15 minutes"
        flock -w 900 8 || {
            echo "[$ST_NAME] FAIL: another $ST_NAME run is still going after 15 minutes" >&2
            exit 1
        }
    fi
    find "$ARTIFACTS" -mindepth 1 -delete
    RUN="${ST_NAME//-/}_$(date +%s)_$$"
    PG_URL=${LOGPIPE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
    REDIS_URL=${LOGPIPE_TEST_REDIS_URL:-redis://127.0.0.1:6379}
    local bin_from_env=${LOGPIPE:-}
    # The processes take their settings from the run's config file and flags only: a LOGPIPE_*
    # variable of the caller (LOGPIPE_KAFKA_BROKERS, LOGPIPE_CONFIG, ...) would override them.
    local v
    for v in $(compgen -e); do
        if [[ $v == LOGPIPE_* && $v != LOGPIPE_TEST_* ]]; then unset "$v"; fi
    done
    unset RUST_LOG

    trap stack_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM

    ensure_postgres >/dev/null 2>"$ARTIFACTS/services.log" || die "PostgreSQL is not available" "$ARTIFACTS/services.log"
    ensure_redis >/dev/null 2>>"$ARTIFACTS/services.log" || die "Redis is not available" "$ARTIFACTS/services.log"
    kafka_install 2>>"$ARTIFACTS/services.log" || die "Apache Kafka could not be installed" "$ARTIFACTS/services.log"
    if ! command -v psql >/dev/null || ! command -v redis-cli >/dev/null; then
        die "psql and redis-cli are needed (apt-get install postgresql-client redis-tools)"
    fi
    psql "$PG_URL" -XqtAc 'select 1' >/dev/null 2>&1 || die "cannot connect to PostgreSQL at $PG_URL"
    [[ "$(redis-cli -u "$REDIS_URL" ping 2>/dev/null)" == PONG ]] || die "Redis at $REDIS_URL does not answer PING"

    if [[ -n "$bin_from_env" ]]; then
        BIN=$bin_from_env
    else
        BIN="$REPO_ROOT/target/debug/logpipe"
        if [[ ! -x "$BIN" || "${BUILD:-0}" == 1 ]]; then
            say "building the debug binary (cargo build --bin logpipe; may wait for the target-dir lock)"
            (cd "$REPO_ROOT" && cargo build -q --bin logpipe) || die "cargo build --bin logpipe failed"
        fi
    fi
    [[ -x "$BIN" ]] || die "logpipe binary not found or not executable: $BIN (set LOGPIPE=path or build it)"
    say "binary: $BIN ($(date -r "$BIN" '+built %Y-%m-%d %H:%M'))"

    stack_write_python

    local base
    base=$(kafka_free_base "${KAFKA_BASE_PORT:-29192}" "$KAFKA_NODES") || die "no free ports for Kafka"
    KAFKA_DIR="$ARTIFACTS/kafka"
    kafka_cluster_start "$KAFKA_DIR" "$KAFKA_NODES" "$base" 2>>"$ARTIFACTS/services.log" ||
        die "Apache Kafka did not start ($KAFKA_NODES nodes from port $base)" "$ARTIFACTS/services.log" "$KAFKA_DIR"/node-*.log
    BROKERS=$KAFKA_BOOTSTRAP
    say "Apache Kafka $KAFKA_VERSION, $KAFKA_NODES node(s) at $BROKERS; PostgreSQL $PG_URL; Redis $REDIS_URL; run id $RUN"
}

stack_cleanup() {
    local rc=$?
    trap - EXIT
    local i pid
    for pid in "${ST_LOADS[@]}"; do kill "$pid" 2>/dev/null || true; done
    # Newest first: consumers stop (and commit) before what they depend on.
    for ((i = ${#ST_PROCS[@]} - 1; i >= 0; i--)); do
        pid=${ST_PROCS[i]#* }
        stop_pid "$pid" 15 2>/dev/null || true
    done
    [[ -n "$KAFKA_DIR" ]] && { kafka_cluster_stop "$KAFKA_DIR" 2>/dev/null || true; }
    if [[ "$KEEP_DATA" == 1 ]]; then
        ((${#ST_SCHEMAS[@]})) && echo "[$ST_NAME] KEEP_DATA=1: kept PostgreSQL schemas ${ST_SCHEMAS[*]} and Redis prefixes ${ST_PREFIXES[*]} (drop them by hand)" >&2
    else
        local s p
        for s in "${ST_SCHEMAS[@]}"; do
            psql "$PG_URL" -Xqc "DROP SCHEMA IF EXISTS \"$s\" CASCADE" >/dev/null 2>&1 || true
        done
        for p in "${ST_PREFIXES[@]}"; do
            redis-cli -u "$REDIS_URL" --scan --pattern "$p:*" 2>/dev/null |
                xargs -r -n 500 redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
        done
    fi
    exit "$rc"
}

# stack_phase NAME: names and a config file for one phase (its own topic, group, schema, Redis
# prefix). Sets PH_NAME, PH_TOPIC, PH_GROUP, PH_SCHEMA, PH_PREFIX, PH_CONFIG, CONSUMER_STORE_ARGS.
# Extra [consumer] keys come from PH_CONSUMER_TOML, [consumer.properties] lines from
# PH_CONSUMER_PROPS (TOML lines).
stack_phase() {
    PH_NAME=$1
    PH_TOPIC="${RUN}_${PH_NAME}_logs"
    PH_GROUP="${RUN}_${PH_NAME}_group"
    PH_SCHEMA="${RUN}_${PH_NAME}"
    PH_PREFIX="${RUN}_${PH_NAME}"
    PH_CONFIG="$ARTIFACTS/$PH_NAME.toml"
    ST_SCHEMAS+=("$PH_SCHEMA")
    ST_PREFIXES+=("$PH_PREFIX")
    cat >"$PH_CONFIG" <<EOF
# Generated by scripts/$ST_NAME.sh for phase $PH_NAME of run $RUN.
[kafka]
brokers = "$BROKERS"
topic = "$PH_TOPIC"
dlq_topic = "${RUN}_${PH_NAME}_dlq"
parked_topic = "${RUN}_${PH_NAME}_parked"

[consumer]
group_id = "$PH_GROUP"
${GROUP_PROTOCOL:+group_protocol = \"$GROUP_PROTOCOL\"}
${PH_CONSUMER_TOML:-}

[consumer.properties]
${PH_CONSUMER_PROPS:-}
EOF
    CONSUMER_STORE_ARGS=(--postgres-url "$PG_URL" --redis-url "$REDIS_URL"
        --set "postgres.schema=$PH_SCHEMA" --set "redis.key_prefix=$PH_PREFIX")
    # RDKAFKA_DEBUG=cgrp (librdkafka debug contexts): the consumers log their group protocol.
    if [[ -n "${RDKAFKA_DEBUG:-}" ]]; then
        printf '"debug" = "%s"\n' "$RDKAFKA_DEBUG" >>"$PH_CONFIG"
        CONSUMER_STORE_ARGS+=(--log-level "info,librdkafka=debug")
    fi
}

# group_session_timeout SECONDS: with GROUP_PROTOCOL=consumer (KIP-848), where the session
# timeout is the broker's, sets the phase group's own consumer.session.timeout.ms and a heartbeat
# interval of a quarter of it (dynamic group configs, as an operator sets them with kafka-configs);
# nothing for classic groups, whose members send consumer.session_timeout themselves.
group_session_timeout() {
    [[ "${GROUP_PROTOCOL:-classic}" == consumer ]] || return 0
    local session_ms=$(($1 * 1000))
    local heartbeat_ms=$((session_ms / 4 > 500 ? session_ms / 4 : 500))
    kafka_tool org.apache.kafka.tools.ConfigCommand --bootstrap-server "$BROKERS" --alter --entity-type groups \
        --entity-name "$PH_GROUP" \
        --add-config "consumer.session.timeout.ms=$session_ms,consumer.heartbeat.interval.ms=$heartbeat_ms" \
        >>"$ARTIFACTS/services.log" 2>&1 || die "setting the session timeout of group $PH_GROUP failed" "$ARTIFACTS/services.log"
}

# spawn NAME LOG CMD...: start CMD in the background, output appended to LOG. Sets SPAWNED_PID.
spawn() {
    local name=$1 log=$2
    shift 2
    printf '# %s started: %s\n' "$(date -u +%FT%T.%3NZ)" "$*" >>"$log"
    "$@" >>"$log" 2>&1 </dev/null &
    SPAWNED_PID=$!
    ST_PROCS+=("$name $SPAWNED_PID")
}

# forget PID: drop a process from the cleanup list (it has exited and been reaped).
forget() {
    local i
    for i in "${!ST_PROCS[@]}"; do
        [[ "${ST_PROCS[i]#* }" == "$1" ]] && unset 'ST_PROCS[i]'
    done
    ST_PROCS=("${ST_PROCS[@]}")
}

# kill9 PID: SIGKILL and reap (no "Killed" job message).
kill9() {
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    forget "$1"
}

# term_wait PID TIMEOUT: SIGTERM, wait up to TIMEOUT s. Sets TERM_RC (exit status, or "timeout"
# after which it was SIGKILLed) and TERM_SECS.
term_wait() {
    local pid=$1 timeout_s=$2 t0=$SECONDS
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((SECONDS - t0 < timeout_s)); do sleep 0.1; done
    TERM_SECS=$((SECONDS - t0))
    if kill -0 "$pid" 2>/dev/null; then
        TERM_RC=timeout
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    else
        TERM_RC=0
        wait "$pid" 2>/dev/null || TERM_RC=$?
    fi
    forget "$pid"
}

# term_expect_zero PHASE NAME PID [LOG...]: stops logpipe process NAME with term_wait (30 s); an
# exit other than 0 is a failure of PHASE, with LOGs to show (default: the process's own log).
term_expect_zero() {
    local phase=$1 name=$2 pid=$3
    shift 3
    term_wait "$pid" 30
    if [[ "$TERM_RC" != 0 ]]; then
        FAILURES+=("$phase: logpipe $name exited $TERM_RC on SIGTERM (expected 0)")
        FAIL_LOGS+=("$ARTIFACTS/$phase-$name.log" "$@")
    fi
}

# start_producer LOG: sets PRODUCER_PID, PRODUCER_URL (port kept across restarts in PRODUCER_PORT).
start_producer() {
    local log=$1
    [[ -n "${PRODUCER_PORT:-}" ]] || PRODUCER_PORT=$(free_port 28681)
    spawn producer "$log" "$BIN" --config "$PH_CONFIG" producer --listen "127.0.0.1:$PRODUCER_PORT"
    PRODUCER_PID=$SPAWNED_PID
    PRODUCER_URL="http://127.0.0.1:$PRODUCER_PORT"
    wait_ready "$PRODUCER_URL" "$PRODUCER_PID" "logpipe producer" 60 || die "logpipe producer did not start" "$log"
}

# start_gateway LOG: sets GATEWAY_PID, GATEWAY_URL (port kept in GATEWAY_PORT). No stores: the
# gateway's query API is not used here.
start_gateway() {
    local log=$1
    [[ -n "${GATEWAY_PORT:-}" ]] || GATEWAY_PORT=$(free_port 28680)
    spawn gateway "$log" "$BIN" --config "$PH_CONFIG" gateway --listen "127.0.0.1:$GATEWAY_PORT" \
        --producer-url "$PRODUCER_URL"
    GATEWAY_PID=$SPAWNED_PID
    GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT"
    wait_ready "$GATEWAY_URL" "$GATEWAY_PID" "logpipe gateway" 60 || die "logpipe gateway did not start" "$log"
}

# start_consumer NAME PORT LOG: a `logpipe consumer` process of the phase's group, not waited for.
# Sets CONSUMER_PID.
start_consumer() {
    local name=$1 port=$2 log=$3
    spawn "$name" "$log" "$BIN" --config "$PH_CONFIG" consumer --listen "127.0.0.1:$port" "${CONSUMER_STORE_ARGS[@]}"
    CONSUMER_PID=$SPAWNED_PID
}

# load_start MAX_SECONDS: the load client posts RATE events/s in BATCH-event requests to
# GATEWAY_URL until load_stop (or MAX_SECONDS). Every event carries a unique marker; the outcome
# of every request is recorded. Sets LOAD_PID, LOAD_RESULTS, LOAD_PROGRESS, LOAD_STOP, LOAD_SUMMARY.
load_start() {
    local label=$PH_NAME max_s=$1
    LOAD_RESULTS="$ARTIFACTS/$label-load-results.txt"
    LOAD_PROGRESS="$ARTIFACTS/$label-load-progress.txt"
    LOAD_SUMMARY="$ARTIFACTS/$label-load-summary.json"
    LOAD_STOP="$ARTIFACTS/$label-load.stop"
    rm -f "$LOAD_STOP"
    # Eight requests in flight at most, each failed after 20 s without an answer (never retried).
    "$BIN" loadgen --target "$GATEWAY_URL" --run "$RUN-$label" --rate "$RATE" --batch "$BATCH" \
        --duration "${max_s}s" --stop-file "$LOAD_STOP" --results "$LOAD_RESULTS" --progress "$LOAD_PROGRESS" \
        --partitions 12 --concurrency 8 --request-timeout 20s --metrics-url none --settle 0s --json \
        >"$LOAD_SUMMARY" 2>"$ARTIFACTS/$label-load.err" &
    LOAD_PID=$!
    ST_LOADS+=("$LOAD_PID")
}

# load_progress: "sent ok failed" so far.
load_progress() {
    cat "$LOAD_PROGRESS" 2>/dev/null || echo "0 0 0"
}

load_stop() {
    touch "$LOAD_STOP"
    local t0=$SECONDS
    while kill -0 "$LOAD_PID" 2>/dev/null && ((SECONDS - t0 < 40)); do sleep 0.2; done
    kill -0 "$LOAD_PID" 2>/dev/null && die "the load client did not stop within 40 s" "$ARTIFACTS/$PH_NAME-load.err"
    wait "$LOAD_PID" || die "the load client failed" "$ARTIFACTS/$PH_NAME-load.err"
    [[ -s "$LOAD_RESULTS" ]] || die "the load client recorded no results" "$ARTIFACTS/$PH_NAME-load.err"
}

# group_lag: total lag of the phase's group over the topic, from the broker (OffsetFetch and
# ListOffsets). A partition with records and no commit
# counts all its records. Empty on error.
group_lag() {
    "$BIN" --config "$PH_CONFIG" lag --json --samples 2 --interval 100ms 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
total = 0
for p in d["partitions"]:
    end = p.get("log_end_offset") or 0
    cur = p.get("current_offset")
    total += max(0, end - (cur if cur is not None else 0))
print(total)' 2>/dev/null || true
}

# drain_wait CONSUMER_LOG...: after the load stopped, loads the outcomes into PostgreSQL
# (SCHEMA.kt_sent), then waits until every 2xx event has a row, the group's lag is 0 and the row
# count is stable for 3 s, at most DRAIN_TIMEOUT s. Sets DRAIN_SECS.
drain_wait() {
    local t0=$SECONDS missing lag rows prev="" stable=0
    python3 "$ARTIFACTS/verify.py" prepare --pg "$PG_URL" --schema "$PH_SCHEMA" --results "$LOAD_RESULTS" --run "$RUN-$PH_NAME" \
        >>"$ARTIFACTS/$PH_NAME-verify.log" 2>&1 || die "loading the load client's outcomes into PostgreSQL failed" "$ARTIFACTS/$PH_NAME-verify.log"
    while :; do
        missing=$(psql "$PG_URL" -XqtAc "SELECT count(*) FROM \"$PH_SCHEMA\".kt_sent s WHERE s.ok AND NOT EXISTS (SELECT 1 FROM \"$PH_SCHEMA\".logs l WHERE l.message = s.message)" 2>/dev/null || echo '?')
        rows=$(psql "$PG_URL" -XqtAc "SELECT count(*) FROM \"$PH_SCHEMA\".logs" 2>/dev/null || echo '?')
        lag=$(group_lag)
        if [[ "$missing" == 0 && "$lag" == 0 && "$rows" == "$prev" ]]; then
            stable=$((stable + 1))
            ((stable >= 2)) && break
        else
            stable=0
        fi
        prev=$rows
        if ((SECONDS - t0 >= DRAIN_TIMEOUT)); then
            warn "not drained after ${DRAIN_TIMEOUT}s: $missing accepted events without a row, group lag ${lag:-?}, $rows rows"
            break
        fi
        sleep 1.5
    done
    DRAIN_SECS=$((SECONDS - t0))
}

# verify: the exactly-once check of the phase. Sets V[...] (see verify.py check) and V_OK (1/0).
declare -A V
verify() {
    local k val out
    V=()
    out=$(python3 "$ARTIFACTS/verify.py" check --pg "$PG_URL" --schema "$PH_SCHEMA" --redis "$REDIS_URL" \
        --prefix "$PH_PREFIX" --details "$ARTIFACTS/$PH_NAME-mismatches.txt" 2>>"$ARTIFACTS/$PH_NAME-verify.log") ||
        die "the verification queries failed" "$ARTIFACTS/$PH_NAME-verify.log"
    while IFS='=' read -r k val; do [[ -n "$k" ]] && V[$k]=$val; done <<<"$out"
    # logpipe's own check: every minute, service, level and error fingerprint in Redis against
    # the stored rows at the same watermarks (exit 0 agree, 3 differences, else it could not run).
    V[agg_verify]=0
    "$BIN" --config "$PH_CONFIG" aggregates verify --since 2h "${CONSUMER_STORE_ARGS[@]}" \
        >"$ARTIFACTS/$PH_NAME-aggregates-verify.txt" 2>&1 || V[agg_verify]=$?
    V_OK=1
    if [[ "${V[ok]}" == 0 || "${V[lost]}" != 0 || "${V[dup_rows]}" != 0 || "${V[unknown]}" != 0 ||
        "${V[agg_total]}" != "${V[rows]}" || "${V[levels_bad]}" != 0 || "${V[cells_bad]}" != 0 ||
        "${V[agg_verify]}" != 0 ]]; then
        V_OK=0
    fi
}

# verify_failed PHASE CONSUMER_LOG: after `verify`, a failed check becomes a FAILURES line (what
# was lost, duplicated or miscounted) with the mismatch details and the consumer's log to show.
verify_failed() {
    local phase=$1 clog=$2
    [[ "$V_OK" == 1 ]] && return 0
    FAILURES+=("$phase: lost ${V[lost]}, duplicated ${V[dup_rows]}, unknown rows ${V[unknown]}, aggregate total ${V[agg_total]} vs ${V[rows]} rows, ${V[levels_bad]} level totals and ${V[cells_bad]} service/level cells differ, \`logpipe aggregates verify\` exit ${V[agg_verify]} (details: ${ARTIFACTS#"$REPO_ROOT"/}/$phase-mismatches.txt, $phase-aggregates-verify.txt)")
    FAIL_LOGS+=("$ARTIFACTS/$phase-mismatches.txt" "$ARTIFACTS/$phase-aggregates-verify.txt" "$clog")
}

# The exactly-once check (Python, stdlib only), written next to the logs at init.
stack_write_python() {
    cat >"$ARTIFACTS/verify.py" <<'PY'
"""Exactly-once check of one phase.

prepare: loads the load client's per-request outcomes (`logpipe loadgen --run --results`:
         "FIRST_SEQ EVENTS STATUS" lines) into SCHEMA.kt_sent (one row per event: seq, message,
         status, ok), so rows can be matched by SQL.
check:   (rows of service `fault-probe`, single events a script posts itself to see how the
         gateway answers, are left out of the marker checks; the script checks them)
         counts, by the marker in each stored message: events stored 0 times (lost, among the
         2xx), more than once (duplicated, any outcome), rows matching no sent event; then the
         Redis aggregates against the rows: PREFIX:totals `all` and `level:*`, and every
         (service, level) cell summed over the per-minute hashes PREFIX:m:*:sl (the same keys
         scripts/test-consumer-flow.sh reads). Prints key=value lines; mismatches to --details.
"""
import argparse, collections, os, re, subprocess, sys, tempfile

ap = argparse.ArgumentParser()
ap.add_argument("mode", choices=["prepare", "check"])
ap.add_argument("--pg", required=True)
ap.add_argument("--schema", required=True)
ap.add_argument("--results")
ap.add_argument("--redis")
ap.add_argument("--prefix")
ap.add_argument("--details")
ap.add_argument("--run", help="prepare: the load client's --run (rebuilds each event's message)")
a = ap.parse_args()
S = '"%s"' % a.schema


def psql(sql, *extra):
    out = subprocess.run(["psql", a.pg, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-F", "|", *extra, "-c", sql],
                         check=True, capture_output=True, text=True)
    return [line.split("|") for line in out.stdout.splitlines() if line]


def redis(*args):
    out = subprocess.run(["redis-cli", "-u", a.redis, "--raw", *args], check=True, capture_output=True, text=True)
    return out.stdout.splitlines()


if a.mode == "prepare":
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        for line in open(a.results):
            first, n, status = line.split()
            ok = "t" if status.startswith("2") and status != "partial" else "f"
            for s in range(int(first), int(first) + int(n)):
                # The message loadgen gave event s (loadgen/marked.rs, `message`).
                f.write(f"{s},{status},{ok},loadgen event {s} [{a.run}#{s}]\n")
        path = f.name
    psql(f"CREATE TABLE IF NOT EXISTS {S}.kt_sent (seq bigint PRIMARY KEY, status text NOT NULL, ok boolean NOT NULL, message text)")
    psql(f"TRUNCATE {S}.kt_sent")
    psql(f"\\copy {S}.kt_sent (seq, status, ok, message) FROM '{path}' WITH (FORMAT csv)")
    os.unlink(path)
    print("loaded", psql(f"SELECT count(*) FROM {S}.kt_sent")[0][0], "events")
    sys.exit(0)

# check
q = f"""
WITH r AS (
  SELECT substring(message from '#([0-9]+)\\]$')::bigint AS seq, count(*) AS n
  FROM {S}.logs WHERE service <> 'fault-probe' GROUP BY 1
)
SELECT
  (SELECT count(*) FROM {S}.kt_sent),
  (SELECT count(*) FROM {S}.kt_sent WHERE ok),
  (SELECT count(*) FROM {S}.kt_sent WHERE NOT ok),
  (SELECT count(*) FROM {S}.logs),
  (SELECT count(*) FROM r),
  (SELECT count(*) FROM {S}.kt_sent s JOIN r USING (seq) WHERE s.ok),
  (SELECT count(*) FROM {S}.kt_sent s WHERE s.ok AND NOT EXISTS (SELECT 1 FROM r WHERE r.seq = s.seq)),
  (SELECT count(*) FROM r WHERE n > 1),
  (SELECT coalesce(sum(n - 1), 0) FROM r WHERE n > 1),
  (SELECT count(*) FROM {S}.kt_sent s JOIN r USING (seq) WHERE NOT s.ok),
  (SELECT coalesce(sum(n), 0) FROM r WHERE seq IS NULL OR NOT EXISTS (SELECT 1 FROM {S}.kt_sent s WHERE s.seq = r.seq))
"""
keys = ["sent", "ok", "failed", "rows", "distinct", "ok_stored", "lost", "dup_events", "dup_rows",
        "failed_stored", "unknown"]
res = dict(zip(keys, psql(q)[0]))
details = []
if int(res["lost"]) or int(res["dup_rows"]) or int(res["unknown"]):
    for row in psql(f"""
        WITH r AS (SELECT substring(message from '#([0-9]+)\\]$')::bigint AS seq, count(*) AS n,
                          string_agg(kafka_partition || '@' || kafka_offset, ' ' ORDER BY kafka_offset) AS at
                   FROM {S}.logs WHERE service <> 'fault-probe' GROUP BY 1)
        (SELECT 'lost', s.seq, s.status, '' FROM {S}.kt_sent s WHERE s.ok AND NOT EXISTS (SELECT 1 FROM r WHERE r.seq = s.seq) ORDER BY s.seq LIMIT 200)
        UNION ALL
        (SELECT 'duplicated x' || r.n, r.seq, coalesce(s.status, '?'), r.at FROM r LEFT JOIN {S}.kt_sent s USING (seq) WHERE r.n > 1 ORDER BY r.seq LIMIT 200)
        UNION ALL
        (SELECT 'unknown', r.seq, '', r.at FROM r WHERE r.seq IS NULL OR NOT EXISTS (SELECT 1 FROM {S}.kt_sent s WHERE s.seq = r.seq) LIMIT 50)"""):
        details.append("%s seq=%s status=%s partition@offset=%s" % tuple(row))

# Outcome breakdown of the events that got no 2xx.
res["statuses"] = ",".join(f"{st}:{n}" for st, n in psql(
    f"SELECT status, count(*) FROM {S}.kt_sent WHERE NOT ok GROUP BY 1 ORDER BY 2 DESC"))

# Redis against PostgreSQL.
pg_cells = {(svc, lvl): int(n) for svc, lvl, n in psql(f"SELECT service, level, count(*) FROM {S}.logs GROUP BY 1, 2")}
pg_levels = collections.Counter()
for (svc, lvl), n in pg_cells.items():
    pg_levels[lvl] += n
tot = redis("hgetall", f"{a.prefix}:totals")
totals = dict(zip(tot[0::2], tot[1::2]))
res["agg_total"] = totals.get("all", "0")
levels_bad = 0
for lvl in set(pg_levels) | {k[6:] for k in totals if k.startswith("level:")}:
    if int(totals.get(f"level:{lvl}", 0)) != pg_levels.get(lvl, 0):
        levels_bad += 1
        details.append(f"aggregate totals level:{lvl}: redis {totals.get('level:' + lvl, 0)} != rows {pg_levels.get(lvl, 0)}")
cells = collections.Counter()
minutes = redis("--scan", "--pattern", f"{a.prefix}:m:*:sl")
for key in minutes:
    h = redis("hgetall", key)
    for field, n in zip(h[0::2], h[1::2]):
        svc, lvl = field.split("|", 1)
        cells[(svc, lvl)] += int(n)
cells_bad = 0
for cell in set(cells) | set(pg_cells):
    if cells.get(cell, 0) != pg_cells.get(cell, 0):
        cells_bad += 1
        details.append(f"aggregate {cell[0]}|{cell[1]}: redis {cells.get(cell, 0)} != rows {pg_cells.get(cell, 0)}")
res["agg_cells_sum"] = sum(cells.values())
res["cells"] = len(set(cells) | set(pg_cells))
res["cells_bad"] = cells_bad
res["levels_bad"] = levels_bad
res["services"] = len({svc for svc, _ in pg_cells})
res["partitions"] = psql(f"SELECT count(DISTINCT kafka_partition) FROM {S}.logs")[0][0]
if a.details:
    with open(a.details, "w") as f:
        f.write("\n".join(details) + ("\n" if details else ""))
for k, v in res.items():
    print(f"{k}={v}")
PY
}

# stack_finish PASS_TEXT: fails the run listing FAILURES (with the tails of FAIL_LOGS), or prints
# PASS_TEXT. Call it after the summary (not in a pipeline: `die` must end the script).
stack_finish() {
    if ((${#FAILURES[@]})); then
        local f
        for f in "${FAILURES[@]}"; do echo "FAIL: $f" >&2; done
        die "$ST_NAME failed (${#FAILURES[@]} problem(s) above). A lost or duplicated 2xx event, aggregates that differ from the rows, or a non-zero exit on SIGTERM is a logpipe bug: report it with artifacts/$ST_NAME/ (per-process logs, *-mismatches.txt, *-load-results.txt)" "${FAIL_LOGS[@]}"
    fi
    echo "PASS: $1"
}
