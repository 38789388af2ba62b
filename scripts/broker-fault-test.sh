#!/usr/bin/env bash
# Broker fault test: Apache Kafka nodes fail under load, and nothing accepted is lost or stored
# twice. A private 3-node KRaft cluster (replication factor 3, min.insync.replicas 2), the
# gateway, producer and consumer as separate processes, PostgreSQL and Redis; a load client posts
# RATE events/s throughout, each event with a unique marker, and records every request's outcome.
#
# Scenarios (each with its own topic, group, schema and Redis prefix):
#   leader-kill     kill -9 the node that leads the most partitions of the topic; restart it
#                   after DOWN_SECONDS; wait until every replica is back in sync.
#   rolling         a rolling restart: each node in turn stopped cleanly (SIGTERM: controlled
#                   shutdown moves its leaderships away first), started again, and the next one
#                   only once no partition is under-replicated, as an operator does it.
#   two-down        two nodes killed at once (kill -9): the topic cannot satisfy
#                   min.insync.replicas (and, in combined mode, the controller quorum is lost).
#                   The gateway must answer 503 with Retry-After, never a 2xx it cannot keep;
#                   after DOWN_SECONDS both come back and ingest must recover by itself.
#   coordinator     a second consumer joins the group and, while that rebalance is in progress,
#                   the group coordinator's node is killed (kill -9); the group must settle with
#                   the 12 partitions split between the two, and the node is restarted.
#
# After each scenario: the load stops, the consumer drains, every process gets SIGTERM (exit 0
# expected), and every 2xx event must be stored exactly once (by SQL, per marker), no event
# twice, the Redis aggregates equal to the rows. Figures per scenario: events sent, 2xx, errors,
# rows, lost, duplicated, the longest stretch without any 2xx (ingest stall), the time until the
# replicas were in sync again after the restart, and the drain time.
#
#   scripts/broker-fault-test.sh                      # about 6 minutes
#   SCENARIOS="two-down" scripts/broker-fault-test.sh
#
# Knobs: SCENARIOS ("leader-kill rolling two-down coordinator"), DOWN_SECONDS (12), RATE (500),
# BATCH (10), DRAIN_TIMEOUT (180), GROUP_PROTOCOL (classic), LOGPIPE, BUILD=1, KEEP_DATA=1.
# Logs: artifacts/broker-fault-test/ (per process, per node under kafka/, the load outcomes);
# the summary also in artifacts/broker-fault-test/summary.txt.
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/stack.sh
source scripts/lib/stack.sh

SCENARIOS=${SCENARIOS:-leader-kill rolling two-down coordinator}
DOWN_SECONDS=${DOWN_SECONDS:-12}
seen=" "
for s in $SCENARIOS; do
    [[ $s == leader-kill || $s == rolling || $s == two-down || $s == coordinator ]] ||
        { echo "SCENARIOS: unknown scenario '$s' (leader-kill rolling two-down coordinator)" >&2; exit 2; }
    # A scenario's topic, group and schema are named after it: each may run once per invocation.
    [[ $seen != *" $s "* ]] || { echo "SCENARIOS: '$s' is listed twice; run the script again instead" >&2; exit 2; }
    seen+="$s "
done
[[ "$DOWN_SECONDS" =~ ^[0-9]+$ ]] || { echo "DOWN_SECONDS must be whole seconds" >&2; exit 2; }
KAFKA_NODES=3
KAFKA_BASE_PORT=29392
stack_init broker-fault-test

PH_CONSUMER_TOML='session_timeout = "6s"
drain_timeout = "3s"'
[[ "${GROUP_PROTOCOL:-classic}" == classic ]] && PH_CONSUMER_PROPS='"heartbeat.interval.ms" = "1000"'

ROWS=()
NOTES=()
FAILURES=()
FAIL_LOGS=()

topics_tool() { kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(live_bootstrap)" "$@"; }

# live_bootstrap: the brokers of the nodes that are running now (a tool given only dead
# bootstrap servers would wait for them).
live_bootstrap() {
    local n list=""
    for n in 1 2 3; do
        [[ -n "$(kafka_node_pid "$KAFKA_DIR" "$n")" ]] && list+="${list:+,}127.0.0.1:$(kafka_broker_port "$n" "$(cat "$KAFKA_DIR/base")")"
    done
    echo "$list"
}

# leaders_of TOPIC: "node count" lines, most partitions first.
leaders_of() {
    topics_tool --describe --topic "$1" 2>/dev/null |
        sed -n 's/.*Leader: \([0-9-]*\).*/\1/p' | sort | uniq -c | sort -rn | awk '{print $2, $1}'
}

# wait_in_sync TIMEOUT: until no partition of the cluster is under-replicated. Sets SYNC_SECS.
wait_in_sync() {
    local t0=$SECONDS out
    while :; do
        out=$(topics_tool --describe --under-replicated-partitions 2>&1) && [[ -z "$out" ]] && break
        ((SECONDS - t0 < $1)) || die "replicas not back in sync after $1 s: $out" "$KAFKA_DIR"/node-*.log
        sleep 1
    done
    SYNC_SECS=$((SECONDS - t0))
}

# The load client's accepted count, sampled 4 times a second from the moment the scenario's fault
# begins: the longest stretch without a new 2xx is the ingest stall.
SAMPLER_PID=""
sampler_start() {
    SAMPLES="$ARTIFACTS/$PH_NAME-samples.txt"
    : >"$SAMPLES"
    (
        while :; do
            printf '%s %s\n' "$(date +%s.%N)" "$(load_progress | awk '{print $2}')" >>"$SAMPLES"
            sleep 0.25
        done
    ) &
    SAMPLER_PID=$!
    ST_LOADS+=("$SAMPLER_PID")
}
sampler_stop() {
    kill "$SAMPLER_PID" 2>/dev/null || true
    wait "$SAMPLER_PID" 2>/dev/null || true
    STALL=$(awk 'NR == 1 {last = $1; ok = $2; max = 0; next}
        $2 != ok {gap = $1 - last; if (gap > max) max = gap; last = $1; ok = $2}
        END {gap = $1 - last; if (gap > max) max = gap; printf "%.1f", max}' "$SAMPLES")
}

# post_probe N: one event (service `fault-probe`, message numbered N) through the gateway; sets
# PROBE ("STATUS retry-after=VALUE"). A refused probe may still be stored, never twice.
post_probe() {
    local headers status ra
    headers=$(curl -s -o /dev/null -D - --max-time 30 -H 'content-type: application/json' \
        -d "{\"service\":\"fault-probe\",\"message\":\"probe $1 while two brokers are down\"}" \
        "$GATEWAY_URL/api/v1/logs" 2>/dev/null || true)
    status=$(awk 'NR == 1 {print $2}' <<<"$headers" | tr -d '\r')
    ra=$(grep -i '^retry-after:' <<<"$headers" | awk '{print $2}' | tr -d '\r')
    PROBE="${status:-none} retry-after=${ra:-none}"
}

run_scenario() {
    local kind=$1 t_phase=$SECONDS note=""
    stack_phase "$kind"
    group_session_timeout 6
    PRODUCER_PORT="" GATEWAY_PORT=""
    local cport curl_c clog="$ARTIFACTS/$kind-consumer.log" clog2="$ARTIFACTS/$kind-consumer2.log"
    cport=$(free_port 28782)
    curl_c="http://127.0.0.1:$cport"
    say "scenario $kind: topic $PH_TOPIC, $RATE events/s"
    start_producer "$ARTIFACTS/$kind-producer.log"
    start_gateway "$ARTIFACTS/$kind-gateway.log"
    start_consumer consumer "$cport" "$clog"
    local c1_pid=$CONSUMER_PID c2_pid="" c2_url=""
    wait_ready "$curl_c" "$c1_pid" "logpipe consumer" 60 || die "logpipe consumer did not start" "$clog"
    local t0=$SECONDS
    until [[ "$(metric "$curl_c" log_consumer_assigned_partitions)" == 12 ]]; do
        ((SECONDS - t0 < 60)) || die "the consumer did not get the 12 partitions within 60 s" "$clog"
        sleep 0.2
    done
    load_start 600
    sleep 3
    sampler_start
    SYNC_SECS="-"
    case $kind in
    leader-kill)
        local victim count
        read -r victim count < <(leaders_of "$PH_TOPIC") || true
        [[ -n "$victim" ]] || die "could not read the leaders of $PH_TOPIC"
        say "  node $victim leads $count of 12 partitions: kill -9"
        kafka_node_kill "$KAFKA_DIR" "$victim" 2>>"$ARTIFACTS/services.log"
        sleep "$DOWN_SECONDS"
        say "  restarting node $victim"
        kafka_node_start "$KAFKA_DIR" "$victim" 2>>"$ARTIFACTS/services.log"
        kafka_node_wait "$KAFKA_DIR" "$victim" 2>>"$ARTIFACTS/services.log" || die "node $victim did not restart" "$KAFKA_DIR/node-$victim.log"
        wait_in_sync 120
        note="node $victim led $count partitions; in sync ${SYNC_SECS}s after its restart"
        ;;
    rolling)
        local n total=0
        for n in 1 2 3; do
            say "  node $n: clean stop, start, wait for in-sync replicas"
            kafka_node_stop "$KAFKA_DIR" "$n" 2>>"$ARTIFACTS/services.log"
            kafka_node_start "$KAFKA_DIR" "$n" 2>>"$ARTIFACTS/services.log"
            kafka_node_wait "$KAFKA_DIR" "$n" 2>>"$ARTIFACTS/services.log" || die "node $n did not restart" "$KAFKA_DIR/node-$n.log"
            wait_in_sync 120
            total=$((total + SYNC_SECS))
            note+="node $n in sync after ${SYNC_SECS}s; "
        done
        SYNC_SECS=$total
        note=${note%; }
        ;;
    two-down)
        local ok0 ok1 probes=() i
        say "  kill -9 nodes 2 and 3"
        kafka_node_kill "$KAFKA_DIR" 2 2>>"$ARTIFACTS/services.log"
        kafka_node_kill "$KAFKA_DIR" 3 2>>"$ARTIFACTS/services.log"
        # Requests already in flight may still complete; from a few seconds on none can.
        sleep 3
        ok0=$(load_progress | awk '{print $2}')
        for ((i = 0; i < 2; i++)); do
            post_probe "$i"
            probes+=("$PROBE")
        done
        sleep $((DOWN_SECONDS > 3 ? DOWN_SECONDS - 3 : 0))
        ok1=$(load_progress | awk '{print $2}')
        say "  while two nodes were down: probes answered ${probes[*]}; 2xx events in that window: $((ok1 - ok0))"
        local p
        for p in "${probes[@]}"; do
            if [[ $p != "503 retry-after="[0-9]* ]]; then
                FAILURES+=("two-down: a request while two of three nodes were down was answered '$p' (expected 503 with Retry-After)")
                FAIL_LOGS+=("$ARTIFACTS/$kind-gateway.log" "$ARTIFACTS/$kind-producer.log")
            fi
        done
        say "  restarting nodes 2 and 3"
        kafka_node_start "$KAFKA_DIR" 2 2>>"$ARTIFACTS/services.log"
        kafka_node_start "$KAFKA_DIR" 3 2>>"$ARTIFACTS/services.log"
        kafka_node_wait "$KAFKA_DIR" 2 2>>"$ARTIFACTS/services.log" || die "node 2 did not restart" "$KAFKA_DIR/node-2.log"
        kafka_node_wait "$KAFKA_DIR" 3 2>>"$ARTIFACTS/services.log" || die "node 3 did not restart" "$KAFKA_DIR/node-3.log"
        local t_back=$SECONDS ok2
        ok2=$(load_progress | awk '{print $2}')
        until (($(load_progress | awk '{print $2}') > ok2)); do
            ((SECONDS - t_back < 120)) || die "ingest did not recover within 120 s after both nodes returned" "$ARTIFACTS/$kind-producer.log"
            sleep 0.25
        done
        local recover=$((SECONDS - t_back))
        wait_in_sync 120
        note="probes while down: ${probes[*]}; 2xx events while down: $((ok1 - ok0)); first 2xx ${recover}s after both nodes were up; in sync after ${SYNC_SECS}s"
        ;;
    coordinator)
        local coord port2
        coord=$(kafka_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$(live_bootstrap)" \
            --describe --group "$PH_GROUP" --state 2>/dev/null |
            awk '$1 == g { for (i = 2; i <= NF; i++) if ($i ~ /^\([0-9]+\)$/) { gsub(/[()]/, "", $i); print $i; exit } }' g="$PH_GROUP")
        [[ "$coord" =~ ^[123]$ ]] || die "could not find the coordinator of group $PH_GROUP (got '$coord')"
        port2=$(free_port 28783)
        c2_url="http://127.0.0.1:$port2"
        say "  coordinator of $PH_GROUP is node $coord; a second consumer joins, then node $coord is killed mid-rebalance"
        start_consumer consumer2 "$port2" "$clog2"
        c2_pid=$CONSUMER_PID
        # The join starts as soon as the member is up; kill the coordinator while it is going on.
        t0=$SECONDS
        until grep -q 'joining the group' "$clog2" 2>/dev/null; do
            ((SECONDS - t0 < 30)) || die "the second consumer did not start joining within 30 s" "$clog2"
            sleep 0.05
        done
        sleep 0.3
        kafka_node_kill "$KAFKA_DIR" "$coord" 2>>"$ARTIFACTS/services.log"
        local t_kill=$SECONDS a1 a2
        while :; do
            a1=$(metric "$curl_c" log_consumer_assigned_partitions)
            a2=$(metric "$c2_url" log_consumer_assigned_partitions)
            [[ -n "$a1" && -n "$a2" ]] && ((a1 > 0 && a2 > 0 && a1 + a2 == 12)) && break
            ((SECONDS - t_kill < 120)) || die "the group did not settle within 120 s after the coordinator died (c1 ${a1:-?}, c2 ${a2:-?})" "$clog" "$clog2"
            sleep 0.5
        done
        local settle=$((SECONDS - t_kill))
        say "  group settled ${settle}s after the kill: $a1 + $a2 partitions"
        sleep 3
        kafka_node_start "$KAFKA_DIR" "$coord" 2>>"$ARTIFACTS/services.log"
        kafka_node_wait "$KAFKA_DIR" "$coord" 2>>"$ARTIFACTS/services.log" || die "node $coord did not restart" "$KAFKA_DIR/node-$coord.log"
        wait_in_sync 120
        note="coordinator node $coord killed mid-rebalance; group settled ${settle}s later ($a1 + $a2 partitions); in sync ${SYNC_SECS}s after its restart"
        ;;
    esac
    sleep 3
    sampler_stop
    load_stop
    local sent ok failed
    read -r sent ok failed < <(load_progress)
    say "  load stopped ($sent sent, $ok accepted, $failed failed); draining"
    drain_wait
    local name pid
    for name in consumer2 consumer gateway producer; do
        case $name in
        consumer2) pid=$c2_pid ;; consumer) pid=$c1_pid ;; gateway) pid=$GATEWAY_PID ;; producer) pid=$PRODUCER_PID ;;
        esac
        [[ -n "$pid" ]] || continue
        term_expect_zero "$kind" "$name" "$pid"
    done
    verify
    local probes_twice
    probes_twice=$(psql "$PG_URL" -XqtAc "SELECT count(*) FROM (SELECT message FROM \"$PH_SCHEMA\".logs WHERE service = 'fault-probe' GROUP BY 1 HAVING count(*) > 1) d")
    if [[ "$probes_twice" != 0 ]]; then
        V_OK=0
        FAILURES+=("$kind: $probes_twice probe event(s) stored twice")
    fi
    local result=PASS
    [[ "$V_OK" == 1 ]] || result=FAIL
    ROWS+=("$(printf '%-12s %7s %7s %7s %7s %5s %5s %8s %-15s %8s %7s %6s %s' "$kind" "${V[sent]}" "${V[ok]}" "${V[failed]}" \
        "${V[rows]}" "${V[lost]}" "${V[dup_rows]}" "${V[failed_stored]}" "${V[agg_total]} vs ${V[rows]}" "${STALL}s" \
        "${SYNC_SECS}s" "${DRAIN_SECS}s" "$result")")
    NOTES+=("$kind ($((SECONDS - t_phase))s): $note; no-2xx outcomes: ${V[statuses]:-none}")
    verify_failed "$kind" "$clog"
    say "  $kind: $result (2xx ${V[ok]}, rows ${V[rows]}, lost ${V[lost]}, duplicated ${V[dup_rows]}, longest stall ${STALL}s)"
}

for s in $SCENARIOS; do
    run_scenario "$s"
done

{
    echo
    echo "broker-fault-test: Apache Kafka $KAFKA_VERSION, 3 nodes (replication factor 3, min.insync.replicas 2), $RATE events/s in"
    echo "$BATCH-event requests, group protocol ${GROUP_PROTOCOL:-classic}, nodes down for ${DOWN_SECONDS}s"
    printf '%-12s %7s %7s %7s %7s %5s %5s %8s %-15s %8s %7s %6s %s\n' "scenario" "sent" "2xx" "errors" "rows" "lost" "dup" \
        "err rows" "agg total/rows" "stall" "in sync" "drain" "result"
    for r in "${ROWS[@]}"; do echo "$r"; done
    echo
    echo "sent/2xx/errors: events sent, answered 2xx, answered otherwise or not at all; rows: rows in PostgreSQL; lost: 2xx events"
    echo "  without a row; dup: extra rows of events stored twice; err rows: events without a 2xx stored anyway (allowed);"
    echo "  stall: the longest stretch with no new 2xx from the fault to its end; in sync: from the (last) restart until no"
    echo "  partition was under-replicated; drain: from the end of the load until every 2xx event had its row and the lag was 0."
    for n in "${NOTES[@]}"; do echo "$n"; done
    echo "total time: $((SECONDS - ST_START))s"
} | tee "$ARTIFACTS/summary.txt"

stack_finish "every 2xx event stored exactly once through every broker fault, aggregates equal the rows, every SIGTERM exited 0"
