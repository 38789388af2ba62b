#!/usr/bin/env bash
# The spec's integration flow, against a RUNNING logpipe stack (logpipe run, or gateway + producer
# + consumer): posts events through the gateway, checks every one reached PostgreSQL (by SQL) and
# Redis (by reading the aggregate hashes), injects a poison record straight into Kafka and checks
# it lands in the dead-letter topic with its reason. Exits non-zero on any mismatch.
#
#   scripts/test-consumer-flow.sh
#   GATEWAY=http://10.0.0.5:8080 LOGPIPE_KAFKA_BROKERS=kafka:9092 \
#   LOGPIPE_POSTGRES_URL=postgres://... LOGPIPE_REDIS_URL=redis://... scripts/test-consumer-flow.sh
#
# It reads the stack's settings the way logpipe does (LOGPIPE_CONFIG file, LOGPIPE_* variables):
# kafka.brokers, postgres.url/schema, redis.url/key_prefix, kafka.topic/dlq_topic. The poison and
# DLQ steps need an external broker (the embedded one lives inside the stack's process).
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GATEWAY=${GATEWAY:-http://127.0.0.1:8080}
EVENTS=${EVENTS:-100}
TIMEOUT=${TIMEOUT:-60}
LOGPIPE=${LOGPIPE:-}
if [[ -z "$LOGPIPE" ]]; then
    if [[ -x "$REPO_ROOT/target/release/logpipe" ]]; then LOGPIPE="$REPO_ROOT/target/release/logpipe"
    elif command -v logpipe >/dev/null; then LOGPIPE=logpipe
    else echo "logpipe binary not found: build it (cargo build --release) or set LOGPIPE=path" >&2; exit 2; fi
fi
for tool in curl psql redis-cli python3; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool (apt-get install curl postgresql-client redis-tools python3)" >&2; exit 2; }
done

# The effective configuration, as the stack sees it (same file and environment).
config_json=$("$LOGPIPE" config check --json)
cfg() { python3 -c "import json,sys; c=json.load(sys.stdin); print(eval('c' + ''.join('[%r]' % k for k in sys.argv[1].split('.'))))" "$1" <<<"$config_json"; }
PG_URL=${LOGPIPE_POSTGRES_URL:-$(cfg postgres.url)}
PG_SCHEMA=$(cfg postgres.schema)
REDIS_URL=${LOGPIPE_REDIS_URL:-$(cfg redis.url)}
REDIS_PREFIX=$(cfg redis.key_prefix)
BROKERS=$(cfg kafka.brokers)
TOPIC=$(cfg kafka.topic)

fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "==> $*"; }
wait_for() { # wait_for DESCRIPTION COMMAND... : retries COMMAND until it succeeds or TIMEOUT
    local what=$1; shift
    local deadline=$((SECONDS + TIMEOUT))
    until "$@"; do
        ((SECONDS < deadline)) || fail "timed out after ${TIMEOUT}s waiting for: $what"
        sleep 1
    done
}
[[ -n "$PG_URL" ]] || fail "postgres.url is not set: the flow checks PostgreSQL directly (set LOGPIPE_POSTGRES_URL as for the stack)"
[[ -n "$REDIS_URL" ]] || fail "redis.url is not set: the flow checks Redis directly (set LOGPIPE_REDIS_URL as for the stack)"
curl -fsS "$GATEWAY/health/ready" >/dev/null || fail "the gateway at $GATEWAY is not ready; start the stack first (logpipe run) or set GATEWAY"

RUN="flow-$(date +%s)-$$"
SERVICE="$RUN-checkout"
step "posting $EVENTS events for service $SERVICE"
body=$(python3 - "$SERVICE" "$EVENTS" <<'PY'
import json, sys
service, n = sys.argv[1], int(sys.argv[2])
levels = ["INFO", "WARN", "ERROR", "DEBUG"]
print(json.dumps([{"service": service, "level": levels[i % 4], "message": f"order {i} processed in {i % 50} ms"} for i in range(n)]))
PY
)
answer=$(curl -fsS -H 'content-type: application/json' --data-binary "$body" "$GATEWAY/api/v1/logs/batch")
accepted=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["accepted"])' <<<"$answer")
[[ "$accepted" == "$EVENTS" ]] || fail "gateway accepted $accepted of $EVENTS: $answer"

pg_rows() { psql "$PG_URL" -tAqc "SELECT count(*) FROM \"$PG_SCHEMA\".logs WHERE service = '$SERVICE'"; }
step "checking PostgreSQL ($PG_SCHEMA.logs)"
wait_for "$EVENTS rows in PostgreSQL" bash -c "[[ \$($(declare -f pg_rows); PG_URL='$PG_URL' PG_SCHEMA='$PG_SCHEMA' SERVICE='$SERVICE' pg_rows) -ge $EVENTS ]]"
rows=$(pg_rows)
[[ "$rows" == "$EVENTS" ]] || fail "PostgreSQL holds $rows rows for $SERVICE, expected exactly $EVENTS"
echo "    $rows rows"

redis_count() { # sum of the per-minute counts of SERVICE over every level
    redis-cli -u "$REDIS_URL" --scan --pattern "$REDIS_PREFIX:m:*:sl" | while read -r key; do
        redis-cli -u "$REDIS_URL" --raw hgetall "$key"
    done | python3 -c '
import sys
lines = sys.stdin.read().split("\n")
service = sys.argv[1]
print(sum(int(v) for k, v in zip(lines[0::2], lines[1::2]) if k.split("|")[0] == service))' "$SERVICE"
}
step "checking Redis ($REDIS_PREFIX:m:*:sl)"
deadline=$((SECONDS + TIMEOUT))
until [[ $(redis_count) -ge $EVENTS ]]; do
    ((SECONDS < deadline)) || fail "Redis counts $(redis_count) events for $SERVICE after ${TIMEOUT}s, expected $EVENTS"
    sleep 1
done
counted=$(redis_count)
[[ "$counted" == "$EVENTS" ]] || fail "Redis counts $counted events for $SERVICE, expected exactly $EVENTS"
echo "    $counted counted"

[[ -n "$BROKERS" ]] || fail "the poison/DLQ step needs an external broker the script can reach: set kafka.brokers (LOGPIPE_KAFKA_BROKERS) as for the stack"
step "injecting a poison record into $TOPIC"
poison="{\"service\":\"$SERVICE\",\"message\":\"truncated"
where=$("$LOGPIPE" topics produce --topic "$TOPIC" --key "$SERVICE" --value "$poison")
partition=$(awk '{print $3}' <<<"$where")
offset=$(awk '{print $5}' <<<"$where")
echo "    $where"
dlq_has() {
    "$LOGPIPE" dlq show --json --limit 100000 2>/dev/null | python3 -c '
import json, sys
topic, partition, offset = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = json.load(sys.stdin)
records = data["records"] if isinstance(data, dict) else data
hit = [r for r in records if r["original_topic"] == topic and r["original_partition"] == partition and r["original_offset"] == offset]
sys.exit(0 if hit and hit[0]["class"] == "poison" and hit[0]["error_type"] == "invalid_json" else 1)' "$TOPIC" "$partition" "$offset"
}
step "checking the dead-letter topic"
wait_for "the poison record in the DLQ (class poison, type invalid_json)" dlq_has
echo "    found $TOPIC/$partition@$offset: poison, invalid_json"
echo "PASS: $EVENTS events stored and counted once; the poison record is in the DLQ with its reason"
