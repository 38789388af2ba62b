#!/usr/bin/env bash
# A backlog for the consumer benchmarks: events posted through a `logpipe producer` + `logpipe
# gateway` pair by `logpipe loadgen` (50 services, batches of 1,000) into the topic the given
# settings name, on the cluster in LOGPIPE_KAFKA_BROKERS; both processes are stopped afterwards.
# Needs scripts/lib/services.sh (free_port, wait_ready, stop_pid), sourced by scripts/lib/kafka.sh.

# load_backlog BIN ARTIFACTS EVENTS SETTINGS...: progress on stderr, the number of events the
# gateway accepted on stdout.
load_backlog() {
    local bin=$1 artifacts=$2 events=$3
    shift 3
    local pp gp producer gateway
    echo "==> loading $events events through producer + gateway" >&2
    pp=$(free_port 18581); gp=$(free_port 18580)
    "$bin" producer "$@" --listen "127.0.0.1:$pp" >"$artifacts/producer.log" 2>&1 &
    producer=$!
    "$bin" gateway "$@" --listen "127.0.0.1:$gp" --producer-url "http://127.0.0.1:$pp" >"$artifacts/gateway.log" 2>&1 &
    gateway=$!
    if ! wait_ready "http://127.0.0.1:$gp" "$gateway" "logpipe gateway" 60 >&2; then
        stop_pid "$gateway" 10 || true; stop_pid "$producer" 10 || true
        return 1
    fi
    "$bin" loadgen --target "http://127.0.0.1:$gp" --rate 0 --duration 10m --total "$events" --batch 1000 --services 50 --concurrency 16 \
        >"$artifacts/load.txt"
    grep -E "accepted|throughput" "$artifacts/load.txt" >&2
    stop_pid "$gateway" 10; stop_pid "$producer" 10
    awk -F'┆' '/events accepted/ {gsub(/[ │]/, "", $2); print $2}' "$artifacts/load.txt"
}
