#!/usr/bin/env bash
# Kill test: logpipe's processes are SIGKILLed at random points and restarted
# while a load client posts events through the gateway, against real components: a private Apache
# Kafka cluster (3 nodes, replication factor 3, min.insync.replicas 2), PostgreSQL and Redis. Afterwards every event the gateway answered 2xx must be stored
# exactly once in PostgreSQL (matched by a unique marker in each message, by SQL), no event may be
# stored twice, and the Redis aggregates must equal the rows exactly. Exits non-zero on any
# mismatch.
#
# Three phases, each with its own topic, consumer group, PostgreSQL schema and Redis key prefix,
# and the load running throughout (RATE events/s in BATCH-event requests):
#   consumer  gateway + producer keep running; the `logpipe consumer` process is SIGKILLed CYCLES
#             times, either early (0.1..1 s after the start, while it joins the group or catches
#             up; 1 in 4) or 0.2..KILL_MAX s after it got its partitions, and restarted; then a
#             last one drains the topic.
#   producer  the `logpipe producer` service is SIGKILLed PRODUCER_CYCLES times, 0.3..KILL_MAX s
#             after it became ready, and restarted on the same port.
#   gateway   the `logpipe gateway` is SIGKILLed GATEWAY_CYCLES times the same way.
# The load client records each request's outcome (HTTP status, or no answer). Events with a 2xx
# must be stored once; events with an error or no answer may or may not be stored (counted), but
# never twice. Finally the surviving processes are stopped with SIGTERM and must exit 0.
#
#   scripts/kill-test.sh                          # about 5 minutes on 2 cores
#   CYCLES=5 scripts/kill-test.sh                 # quicker
#   PHASES="consumer" CYCLES=30 scripts/kill-test.sh
#
# Knobs: CYCLES (20; also the default of PRODUCER_CYCLES and GATEWAY_CYCLES), PHASES ("consumer
# producer gateway"), KILL_MAX (3 s), RATE (500 events/s), BATCH (10 events/request),
# DRAIN_TIMEOUT (180 s), LOGPIPE (binary; default target/debug/logpipe, built if missing),
# BUILD=1 (cargo build first), KEEP_DATA=1 (keep the schemas and Redis keys), RDKAFKA_DEBUG
# (e.g. "cgrp": librdkafka debug contexts, logged by the consumers).
# Logs: artifacts/kill-test/ (one log per process incarnation, the load client's per-request
# outcomes, the generated configs); the summary table also in artifacts/kill-test/summary.txt.
#
# Test settings (in the generated config, not defaults anyone should copy):
#   - consumer.session_timeout = 4s (drain_timeout 2s, heartbeat.interval.ms 1000), so that the
#     partitions of a SIGKILLed member move to its successor after 4 s rather than 30 s: the
#     successor joins at once and the rebalance completes when the dead member's session expires.
#     With GROUP_PROTOCOL=consumer (KIP-848) the session timeout is set on the group itself
#     (consumer.session.timeout.ms = 4 s, a dynamic group config).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/stack.sh
source scripts/lib/stack.sh

CYCLES=${CYCLES:-20}
PRODUCER_CYCLES=${PRODUCER_CYCLES:-$CYCLES}
GATEWAY_CYCLES=${GATEWAY_CYCLES:-$CYCLES}
PHASES=${PHASES:-consumer producer gateway}
KILL_MAX=${KILL_MAX:-3}
for v in CYCLES PRODUCER_CYCLES GATEWAY_CYCLES RATE BATCH DRAIN_TIMEOUT; do
    [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || { echo "$v must be a positive integer, not '${!v}'" >&2; exit 2; }
done
[[ "$KILL_MAX" =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "KILL_MAX must be seconds, e.g. 3 or 2.5" >&2; exit 2; }
for p in $PHASES; do
    [[ $p == consumer || $p == producer || $p == gateway ]] || { echo "PHASES: unknown phase '$p' (consumer producer gateway)" >&2; exit 2; }
done

KAFKA_BASE_PORT=29192
stack_init kill-test

PH_CONSUMER_TOML='session_timeout = "4s"
drain_timeout = "2s"'
# heartbeat.interval.ms is a classic-protocol client setting (KIP-848 groups take the broker's).
[[ "${GROUP_PROTOCOL:-classic}" == classic ]] && PH_CONSUMER_PROPS='"heartbeat.interval.ms" = "1000"'

# rand_secs MIN MAX: a uniformly random duration in seconds (ms resolution).
rand_secs() {
    python3 -c 'import random, sys; print("%.3f" % random.uniform(float(sys.argv[1]), float(sys.argv[2])))' "$1" "$2"
}

ROWS=()        # table rows
NOTES=()       # lines under the table
FAILURES=()    # phases that failed, with why
TERMS=()       # "process rc secs" of every SIGTERM
FAIL_LOGS=()

# assigned URL: the consumer's assigned partitions (empty if it does not answer).
assigned() { metric "$1" log_consumer_assigned_partitions; }

run_phase() {
    local kind=$1 cycles=$2
    local t_phase=$SECONDS c delay mode n stored replays replays_seen=0 kills_assigned=0 stored_by_killed=0
    stack_phase "$kind"
    group_session_timeout 4
    PRODUCER_PORT="" GATEWAY_PORT=""
    local cport curl_c plog="$ARTIFACTS/$kind-producer.log" glog="$ARTIFACTS/$kind-gateway.log"
    local cycles_log="$ARTIFACTS/$kind-cycles.log"
    : >"$cycles_log"
    cport=$(free_port 28682)
    curl_c="http://127.0.0.1:$cport"
    say "phase $kind: $cycles SIGKILL cycles under $RATE events/s (topic $PH_TOPIC, schema $PH_SCHEMA)"
    start_producer "$plog"
    start_gateway "$glog"
    local clog="$ARTIFACTS/$kind-consumer.log"
    if [[ $kind != consumer ]]; then
        start_consumer consumer "$cport" "$clog"
        wait_ready "$curl_c" "$CONSUMER_PID" "logpipe consumer" 60 || die "logpipe consumer did not start" "$clog"
        local t0=$SECONDS
        until [[ "$(assigned "$curl_c")" == 12 ]]; do
            ((SECONDS - t0 < 60)) || die "the consumer did not get the 12 partitions within 60 s" "$clog"
            sleep 0.2
        done
    fi
    load_start $((cycles * 20 + 120))
    sleep 2

    for ((c = 1; c <= cycles; c++)); do
        case $kind in
        consumer)
            clog="$ARTIFACTS/consumer-consumer-$(printf %02d "$c").log"
            start_consumer consumer "$cport" "$clog"
            if ((RANDOM % 4 == 0)); then
                mode=starting
                delay=$(rand_secs 0.1 1.0)
                sleep "$delay"
            else
                mode=working
                local t0=$SECONDS
                until [[ "$(assigned "$curl_c")" -gt 0 ]] 2>/dev/null; do
                    kill -0 "$CONSUMER_PID" 2>/dev/null || die "consumer incarnation $c exited by itself" "$clog"
                    ((SECONDS - t0 < 60)) || die "consumer incarnation $c got no partitions within 60 s (rerun with RDKAFKA_DEBUG=cgrp: the consumer's log then shows the group protocol)" "$clog" "$KAFKA_DIR"/node-*.log
                    sleep 0.1
                done
                delay=$(rand_secs 0.2 "$KILL_MAX")
                sleep "$delay"
            fi
            n=$(assigned "$curl_c")
            stored=$(metric "$curl_c" log_consumer_success_total)
            replays=$(metric "$curl_c" log_consumer_duplicates_total)
            kill9 "$CONSUMER_PID"
            replays_seen=$((replays_seen + ${replays:-0}))
            [[ "${n:-0}" -gt 0 ]] && kills_assigned=$((kills_assigned + 1))
            stored_by_killed=$((stored_by_killed + ${stored:-0}))
            printf 'cycle %2d: SIGKILL while %s (%ss in), %s partitions assigned, %s records stored by this incarnation (%s of them replays already stored); %s\n' \
                "$c" "$mode" "$delay" "${n:-?}" "${stored:-?}" "${replays:-?}" "$(load_progress | awk '{print $2 " accepted so far"}')" >>"$cycles_log"
            ;;
        producer | gateway)
            delay=$(rand_secs 0.3 "$KILL_MAX")
            sleep "$delay"
            if [[ $kind == producer ]]; then kill9 "$PRODUCER_PID"; else kill9 "$GATEWAY_PID"; fi
            printf 'cycle %2d: %s SIGKILL %ss after ready; %s\n' "$c" "$kind" "$delay" "$(load_progress | awk '{print $2 " accepted, " $3 " failed so far"}')" >>"$cycles_log"
            if [[ $kind == producer ]]; then start_producer "$plog"; else start_gateway "$glog"; fi
            ;;
        esac
        if ((c % 5 == 0 || c == cycles)); then
            say "  $kind: $c/$cycles kills; load: $(load_progress | awk '{print $1 " sent, " $2 " accepted, " $3 " failed"}')"
        fi
    done

    if [[ $kind == consumer ]]; then
        clog="$ARTIFACTS/consumer-consumer-final.log"
        start_consumer consumer "$cport" "$clog"
        wait_ready "$curl_c" "$CONSUMER_PID" "logpipe consumer" 60 || die "logpipe consumer did not start" "$clog"
        local t0=$SECONDS
        until [[ "$(assigned "$curl_c")" == 12 ]]; do
            ((SECONDS - t0 < 60)) || die "the last consumer did not get the 12 partitions within 60 s (RDKAFKA_DEBUG=cgrp shows the group protocol)" "$clog" "$KAFKA_DIR"/node-*.log
            sleep 0.2
        done
    fi
    sleep 2
    load_stop
    local sent ok failed
    read -r sent ok failed < <(load_progress)
    say "  $kind: load stopped ($sent sent, $ok accepted, $failed failed); draining"
    drain_wait
    say "  $kind: drained in ${DRAIN_SECS}s; stopping with SIGTERM"
    replays=$(metric "$curl_c" log_consumer_duplicates_total)
    replays_seen=$((replays_seen + ${replays:-0}))
    local name pid
    for name in consumer gateway producer; do
        case $name in consumer) pid=$CONSUMER_PID ;; gateway) pid=$GATEWAY_PID ;; producer) pid=$PRODUCER_PID ;; esac
        if [[ $name == consumer ]]; then
            term_expect_zero "$kind" "$name" "$pid" "$clog"
        else
            term_expect_zero "$kind" "$name" "$pid"
        fi
        TERMS+=("$kind/$name:$TERM_RC(${TERM_SECS}s)")
    done

    verify
    local agg="${V[agg_total]} vs ${V[rows]}"
    local result=PASS
    [[ "$V_OK" == 1 ]] || result=FAIL
    local kills_col=$cycles
    [[ $kind == consumer ]] && kills_col="$cycles ($kills_assigned)"
    ROWS+=("$(printf '%-9s %-8s %7s %7s %7s %7s %7s %5s %5s %7s %-15s %9s %s' "$kind" "$kills_col" "${V[sent]}" \
        "${V[ok]}" "${V[failed]}" "${V[rows]}" "${V[ok_stored]}" "${V[lost]}" "${V[dup_rows]}" "${V[failed_stored]}" \
        "$agg" "$((V[cells] - V[cells_bad]))/${V[cells]}" "$result")")
    local extra=""
    [[ $kind == consumer ]] && extra="; $kills_assigned kills with partitions assigned; the killed incarnations had stored $stored_by_killed records"
    NOTES+=("$kind: $((SECONDS - t_phase))s, drain ${DRAIN_SECS}s, ${V[services]} services on ${V[partitions]} partitions; no-2xx outcomes: ${V[statuses]:-none}$extra; replayed records the store already held (log_consumer_duplicates_total, all incarnations): $replays_seen")
    verify_failed "$kind" "$clog"
    say "  $kind: $result (sent ${V[sent]}, 2xx ${V[ok]}, rows ${V[rows]}, lost ${V[lost]}, duplicated ${V[dup_rows]}, aggregates ${V[agg_total]})"
}

for phase in $PHASES; do
    case $phase in
    consumer) run_phase consumer "$CYCLES" ;;
    producer) run_phase producer "$PRODUCER_CYCLES" ;;
    gateway) run_phase gateway "$GATEWAY_CYCLES" ;;
    esac
done

{
    echo
    echo "kill-test: SIGKILL + restart under load ($RATE events/s, $BATCH events/request), Apache Kafka ($KAFKA_NODES nodes) + PostgreSQL + Redis, group protocol ${GROUP_PROTOCOL:-classic}"
    printf '%-9s %-8s %7s %7s %7s %7s %7s %5s %5s %7s %-15s %9s %s\n' "phase" "kills" "sent" "2xx" "errors" "rows" \
        "2xx rows" "lost" "dup" "err rows" "agg total/rows" "cells ok" "result"
    for r in "${ROWS[@]}"; do echo "$r"; done
    echo
    echo "kills: SIGKILLs of the phase's process (consumer: in parentheses, those with partitions assigned). sent/2xx/errors: events"
    echo "  sent, answered 2xx, answered otherwise or not at all. rows: rows in PostgreSQL; 2xx rows: 2xx events with a row; lost: 2xx"
    echo "  events without a row; dup: extra rows of events stored more than once (any outcome); err rows: events without a 2xx"
    echo "  that were stored anyway (allowed). agg total/rows: Redis totals 'all' vs rows. cells ok: (service, level) counts in"
    echo "  Redis's per-minute hashes equal to the rows' counts."
    for n in "${NOTES[@]}"; do echo "$n"; done
    echo "SIGTERM exits: ${TERMS[*]}"
    echo "total time: $((SECONDS - ST_START))s"
} | tee "$ARTIFACTS/summary.txt"

stack_finish "every 2xx event stored exactly once, none duplicated, aggregates equal the rows, every SIGTERM exited 0"
