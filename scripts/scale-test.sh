#!/usr/bin/env bash
# Scale test: several `logpipe consumer` processes in one consumer group on a
# private Apache Kafka cluster (3 nodes, replication factor 3), under load, with PostgreSQL and Redis:
#   1. three instances start and must share the 12 partitions 4/4/4;
#   2. a fourth joins: 3/3/3/3;
#   3. one leaves by SIGTERM, which must exit 0: 4/4/4;
#   4. one dies by SIGKILL: 6/6 once the broker has expired it.
# The load client posts RATE events/s through gateway + producer throughout. Afterwards every
# event answered 2xx must be stored exactly once in PostgreSQL (by the unique marker in each
# message, by SQL), nothing twice, and the Redis aggregates must equal the rows exactly; every
# instance must show its rebalances in its log (`grep rebalance`) and in
# log_consumer_rebalance_events_total. Prints the phases (instances, partitions per instance,
# events) and the final counts; exits non-zero on any mismatch.
#
# The assignment is read from each instance's /metrics: log_consumer_assigned_partitions (count)
# and the log_consumer_partition_lag{partition} series (which partitions; a series appears at the
# member's next statistics report, at most 5 s after the assignment, and is removed on revoke).
# That view is the members' own, so it also shows that each instance acts on what it was given. A
# phase's balance is reached when every instance's count is as expected and the partition sets
# are disjoint and cover 0..11.
#
#   scripts/scale-test.sh                  # about 2 minutes
#   PHASE_SECONDS=20 RATE=1000 scripts/scale-test.sh
#
# Knobs: PHASE_SECONDS (8: load kept running after each phase's balance is reached), RATE (500
# events/s), BATCH (10 events/request), ASSIGN_TIMEOUT (90 s per phase), DRAIN_TIMEOUT (180 s),
# SESSION_TIMEOUT (10 s), GROUP_PROTOCOL (classic; consumer for KIP-848), LOGPIPE (binary; default target/debug/logpipe, built if missing),
# BUILD=1, KEEP_DATA=1, RDKAFKA_DEBUG (e.g. "cgrp": librdkafka debug contexts in the consumers' logs).
# Logs: artifacts/scale-test/ (one log per instance: c1..c4, gateway, producer, kafka/, the load
# client's per-request outcomes); the summary also in artifacts/scale-test/summary.txt.
#
# Test settings (in the generated config):
#   - consumer.session_timeout = 10s (SESSION_TIMEOUT; drain_timeout 5s, heartbeat.interval.ms
#     1000), so the SIGKILLed instance is expired, and its partitions reassigned, sooner than
#     with the default 30 s. With GROUP_PROTOCOL=consumer (KIP-848) the session timeout is set on
#     the group itself (consumer.session.timeout.ms, a dynamic group config), with a heartbeat
#     interval of a quarter of it.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/stack.sh
source scripts/lib/stack.sh

PHASE_SECONDS=${PHASE_SECONDS:-8}
ASSIGN_TIMEOUT=${ASSIGN_TIMEOUT:-90}
SESSION_TIMEOUT=${SESSION_TIMEOUT:-10}
for v in PHASE_SECONDS ASSIGN_TIMEOUT SESSION_TIMEOUT RATE BATCH DRAIN_TIMEOUT; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || { echo "$v must be a positive integer, not '${!v}'" >&2; exit 2; }
done

((SESSION_TIMEOUT > 5)) || { echo "SESSION_TIMEOUT must be above the 5 s drain timeout" >&2; exit 2; }
KAFKA_BASE_PORT=29292
stack_init scale-test

PH_CONSUMER_TOML="session_timeout = \"${SESSION_TIMEOUT}s\"
drain_timeout = \"5s\""
# heartbeat.interval.ms is a classic-protocol client setting (KIP-848 groups take the broker's).
[[ "${GROUP_PROTOCOL:-classic}" == classic ]] && PH_CONSUMER_PROPS='"heartbeat.interval.ms" = "1000"'

stack_phase scale
# KIP-848 groups take their session timeout from the broker: the same SESSION_TIMEOUT, as the
# group's own config.
group_session_timeout "$SESSION_TIMEOUT"
declare -A CURL CPID CLOG CEND REB_LINES REB_ASSIGN REB_REVOKE REB_ERROR STORED
PHASE_ROWS=()
FAILURES=()
FAIL_LOGS=()

start_instance() {
    local name=$1 port
    port=$(free_port $((28690 + ${name#c})))
    CLOG[$name]="$ARTIFACTS/$name.log"
    start_consumer "$name" "$port" "${CLOG[$name]}"
    CPID[$name]=$CONSUMER_PID
    CURL[$name]="http://127.0.0.1:$port"
}

# snapshot NAME: the instance's rebalance counters and records stored, read before it stops.
snapshot() {
    local name=$1 url=${CURL[$1]} k v
    while IFS='=' read -r k v; do
        case $k in
        assign) REB_ASSIGN[$name]=$v ;;
        revoke) REB_REVOKE[$name]=$v ;;
        error) REB_ERROR[$name]=$v ;;
        esac
    done < <(metric_labels "$url" log_consumer_rebalance_events_total kind)
    STORED[$name]=$(metric "$url" log_consumer_success_total)
}

# wait_balance NAME=COUNT...: until every named instance owns COUNT partitions and their sets are
# disjoint and cover the 12 partitions. Sets BALANCE ("c1=4 [0,3,6,9] ...") and BALANCE_SECS.
wait_balance() {
    local t0=$SECONDS spec name want n parts all desc ok
    while :; do
        ok=1 desc="" all=""
        for spec in "$@"; do
            name=${spec%=*} want=${spec#*=}
            n=$(metric "${CURL[$name]}" log_consumer_assigned_partitions)
            parts=$(metric_labels "${CURL[$name]}" log_consumer_partition_lag partition | cut -d= -f1 | sort -n | paste -sd, -)
            [[ "$n" == "$want" ]] || ok=0
            [[ -n "$parts" && $(tr ',' '\n' <<<"$parts" | wc -l) == "$want" ]] || ok=0
            all+="${parts},"
            desc+="$name=${n:-?} [${parts}] "
        done
        if ((ok)) && [[ "$(tr ',' '\n' <<<"$all" | grep -v '^$' | sort -n | paste -sd, -)" == "0,1,2,3,4,5,6,7,8,9,10,11" ]]; then
            break
        fi
        if ((SECONDS - t0 >= ASSIGN_TIMEOUT)); then
            local logs=() s
            for s in "$@"; do logs+=("${CLOG[${s%=*}]}"); done
            die "the group did not reach ${*} within ${ASSIGN_TIMEOUT}s; last seen: $desc" "${logs[@]}" "$KAFKA_DIR"/node-*.log
        fi
        sleep 0.5
    done
    BALANCE=${desc% }
    BALANCE_SECS=$((SECONDS - t0))
}

rows_now() { psql "$PG_URL" -XqtAc "SELECT count(*) FROM \"$PH_SCHEMA\".logs" 2>/dev/null || echo 0; }

# phase LABEL INSTANCES BALANCE_SPEC...: wait for the balance, hold PHASE_SECONDS under load, and
# record a table row with the events accepted and the rows stored since the phase's event.
PH_T0=0 PH_ACC0=0 PH_ROWS0=0
phase_begin() {
    PH_T0=$SECONDS
    PH_ACC0=$(load_progress | awk '{print $2}')
    PH_ROWS0=$(rows_now)
}
phase_end() {
    local label=$1 instances=$2
    shift 2
    wait_balance "$@"
    say "  $label: balanced in ${BALANCE_SECS}s: $BALANCE"
    sleep "$PHASE_SECONDS"
    local acc rows
    acc=$(load_progress | awk '{print $2}')
    rows=$(rows_now)
    PHASE_ROWS+=("$(printf '%-32s %9s %9s %9s %7s  %s' "$label" "$instances" "$((acc - PH_ACC0))" "$((rows - PH_ROWS0))" \
        "$((SECONDS - PH_T0))s" "$BALANCE")")
}

say "phase scale: topic $PH_TOPIC, group $PH_GROUP, schema $PH_SCHEMA, $RATE events/s"
start_producer "$ARTIFACTS/producer.log"
start_gateway "$ARTIFACTS/gateway.log"
load_start 900
sleep 1

# 1. Three instances.
phase_begin
for c in c1 c2 c3; do start_instance "$c"; done
for c in c1 c2 c3; do
    wait_ready "${CURL[$c]}" "${CPID[$c]}" "consumer $c" 60 || die "consumer $c did not start" "${CLOG[$c]}"
done
phase_end "1. c1 c2 c3 start" 3 c1=4 c2=4 c3=4

# 2. A fourth joins.
phase_begin
start_instance c4
wait_ready "${CURL[c4]}" "${CPID[c4]}" "consumer c4" 60 || die "consumer c4 did not start" "${CLOG[c4]}"
phase_end "2. c4 joins" 4 c1=3 c2=3 c3=3 c4=3

# 3. One leaves by SIGTERM: must exit 0.
phase_begin
snapshot c2
term_wait "${CPID[c2]}" 30
CEND[c2]="SIGTERM: exit $TERM_RC in ${TERM_SECS}s"
if [[ "$TERM_RC" != 0 ]]; then
    FAILURES+=("c2 exited $TERM_RC on SIGTERM (expected 0 within 30 s)")
    FAIL_LOGS+=("${CLOG[c2]}")
fi
say "  c2 stopped by SIGTERM: exit $TERM_RC after ${TERM_SECS}s"
phase_end "3. c2 leaves (SIGTERM, exit $TERM_RC)" 3 c1=4 c3=4 c4=4

# 4. One dies by SIGKILL.
phase_begin
snapshot c3
kill9 "${CPID[c3]}"
CEND[c3]="SIGKILL"
say "  c3 killed (SIGKILL); its partitions move once its ${SESSION_TIMEOUT}s session expires"
phase_end "4. c3 dies (SIGKILL)" 2 c1=6 c4=6

load_stop
read -r sent ok failed < <(load_progress)
say "load stopped ($sent sent, $ok accepted, $failed failed); draining"
drain_wait
say "drained in ${DRAIN_SECS}s; stopping c1 and c4, gateway and producer with SIGTERM"
for c in c1 c4; do
    snapshot "$c"
    term_wait "${CPID[$c]}" 30
    CEND[$c]="SIGTERM at the end: exit $TERM_RC in ${TERM_SECS}s"
    if [[ "$TERM_RC" != 0 ]]; then
        FAILURES+=("$c exited $TERM_RC on SIGTERM (expected 0 within 30 s)")
        FAIL_LOGS+=("${CLOG[$c]}")
    fi
done
for name in gateway producer; do
    case $name in gateway) pid=$GATEWAY_PID ;; producer) pid=$PRODUCER_PID ;; esac
    term_wait "$pid" 30
    if [[ "$TERM_RC" != 0 ]]; then
        FAILURES+=("logpipe $name exited $TERM_RC on SIGTERM (expected 0)")
        FAIL_LOGS+=("$ARTIFACTS/$name.log")
    fi
done

# Rebalances: in every instance's log and counter. Survivors gained partitions twice after their
# first assignment (c2 left, c3 died); c1 also gave partitions up when c4 joined.
REB_ROWS=()
for c in c1 c2 c3 c4; do
    REB_LINES[$c]=$(grep -c 'rebalance' "${CLOG[$c]}" || true)
    : "${REB_ASSIGN[$c]:=0}" "${REB_REVOKE[$c]:=0}" "${REB_ERROR[$c]:=0}" "${STORED[$c]:=0}"
    REB_ROWS+=("$(printf '%-8s %14s %8s %8s %8s %10s  %s' "$c" "${REB_LINES[$c]}" "${REB_ASSIGN[$c]}" "${REB_REVOKE[$c]}" \
        "${REB_ERROR[$c]}" "${STORED[$c]}" "${CEND[$c]}")")
    if ((REB_LINES[$c] < 1 || REB_ASSIGN[$c] < 1)); then
        FAILURES+=("$c: no rebalance in its log ($(basename "${CLOG[$c]}")) or in log_consumer_rebalance_events_total{kind=\"assign\"}")
        FAIL_LOGS+=("${CLOG[$c]}")
    fi
done
for c in c1 c4; do
    if ((REB_ASSIGN[$c] < 3)); then
        FAILURES+=("$c: expected at least 3 assign rebalances (start, after c2 left, after c3 died), counted ${REB_ASSIGN[$c]}")
        FAIL_LOGS+=("${CLOG[$c]}")
    fi
done
if ((REB_REVOKE[c1] < 1)); then
    FAILURES+=("c1: expected a revoke when c4 joined, counted ${REB_REVOKE[c1]}")
    FAIL_LOGS+=("${CLOG[c1]}")
fi

verify
result=PASS
[[ "$V_OK" == 1 ]] || result=FAIL
if [[ "$V_OK" != 1 ]]; then
    FAILURES+=("lost ${V[lost]}, duplicated ${V[dup_rows]}, unknown rows ${V[unknown]}, aggregate total ${V[agg_total]} vs ${V[rows]} rows, ${V[levels_bad]} level totals and ${V[cells_bad]} service/level cells differ, \`logpipe aggregates verify\` exit ${V[agg_verify]} (details: ${ARTIFACTS#"$REPO_ROOT"/}/scale-mismatches.txt, scale-aggregates-verify.txt)")
    FAIL_LOGS+=("$ARTIFACTS/scale-mismatches.txt" "$ARTIFACTS/scale-aggregates-verify.txt")
fi

{
    echo
    echo "scale-test: consumer instances joining, leaving and dying under load ($RATE events/s, $BATCH events/request),"
    echo "Apache Kafka ($KAFKA_NODES nodes) + PostgreSQL + Redis, group protocol ${GROUP_PROTOCOL:-classic}, 12 partitions"
    printf '%-32s %9s %9s %9s %7s  %s\n' "phase" "instances" "2xx" "stored" "time" "assignment when balanced: partitions per instance [which]"
    for r in "${PHASE_ROWS[@]}"; do echo "$r"; done
    echo
    printf '%7s %7s %7s %7s %8s %5s %5s %8s %-15s %9s %s\n' "sent" "2xx" "errors" "rows" "2xx rows" "lost" "dup" "err rows" "agg total/rows" "cells ok" "result"
    printf '%7s %7s %7s %7s %8s %5s %5s %8s %-15s %9s %s\n' "${V[sent]}" "${V[ok]}" "${V[failed]}" "${V[rows]}" "${V[ok_stored]}" \
        "${V[lost]}" "${V[dup_rows]}" "${V[failed_stored]}" "${V[agg_total]} vs ${V[rows]}" "$((V[cells] - V[cells_bad]))/${V[cells]}" "$result"
    echo
    printf '%-8s %14s %8s %8s %8s %10s  %s\n' "instance" "rebalance log" "assign" "revoke" "error" "stored" "end"
    for r in "${REB_ROWS[@]}"; do echo "$r"; done
    echo
    echo "2xx/stored per phase: events answered 2xx and rows added to PostgreSQL from the phase's event (start, join, SIGTERM,"
    echo "  SIGKILL) to the end of its ${PHASE_SECONDS}s hold after the balance. Final counts: as in kill-test (lost: 2xx events without a row;"
    echo "  dup: extra rows of events stored more than once; agg total/rows: Redis totals 'all' vs rows; cells ok: (service, level)"
    echo "  counts in Redis's per-minute hashes equal to the rows' counts). rebalance log: lines matching 'rebalance' in the instance's"
    echo "  log; assign/revoke/error: log_consumer_rebalance_events_total{kind}; stored: log_consumer_success_total (read before it stopped)."
    echo "drain ${DRAIN_SECS}s; ${V[services]} services on ${V[partitions]} partitions; no-2xx outcomes: ${V[statuses]:-none}; total time: $((SECONDS - ST_START))s"
} | tee "$ARTIFACTS/summary.txt"

stack_finish "4/4/4 -> 3/3/3/3 -> 4/4/4 -> 6/6 under load; every 2xx event stored exactly once, aggregates equal the rows, rebalances logged and counted"
