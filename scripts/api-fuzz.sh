#!/usr/bin/env bash
# Fuzzes the gateway's public API with schemathesis (PyPI, pinned in
# scripts/api-fuzz/requirements.txt), from the OpenAPI document the gateway serves at
# /api/v1/openapi.json, with every check on: no 5xx, every answer as the document says, valid
# input accepted, invalid input refused, unsupported methods answered 405 with `Allow`, API keys
# enforced, plus the checks in scripts/api-fuzz/hooks.py. Then every event the gateway accepted
# (the sum of `accepted` over its 202 answers) must be in PostgreSQL once, and in the aggregates.
#
#   scripts/api-fuzz.sh                      # 100 examples per operation and phase
#   MAX_EXAMPLES=500 scripts/api-fuzz.sh     # longer
#
# The gateway is `logpipe run` with an API key, on a private Apache Kafka cluster (KAFKA_NODES,
# default 3), PostgreSQL and Redis, like the kill and fault tests (scripts/lib/stack.sh). The run
# is bounded by MAX_EXAMPLES, and by MAX_TIME seconds (default 600) as a safety net. Logs and the
# HAR of every request in artifacts/api-fuzz/. Exit status 1 on any failure.
set -euo pipefail
exec 2>&1

# shellcheck source=scripts/lib/stack.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/stack.sh"
# shellcheck source=scripts/lib/python.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/python.sh"

MAX_EXAMPLES=${MAX_EXAMPLES:-100}
MAX_TIME=${MAX_TIME:-600}
FAILURES=()
FAIL_LOGS=()

stack_init api-fuzz
FUZZ_DIR="$REPO_ROOT/scripts/api-fuzz"
ensure_venv api-fuzz "$FUZZ_DIR/requirements.txt" 2>>"$ARTIFACTS/services.log" ||
    die "could not install schemathesis from PyPI" "$ARTIFACTS/services.log"
say "schemathesis $("$VENV_BIN/st" --version | awk '{print $NF}')"

stack_phase fuzz
KEY="api-fuzz-key-$RUN"
PORT=$(free_port 28780)
URL="http://127.0.0.1:$PORT"
spawn run "$ARTIFACTS/fuzz-run.log" "$BIN" --config "$PH_CONFIG" run --listen "127.0.0.1:$PORT" \
    "${CONSUMER_STORE_ARGS[@]}" --set "gateway.api_keys=$KEY"
RUN_PID=$SPAWNED_PID
wait_ready "$URL" "$RUN_PID" "logpipe run" 90 || die "logpipe run did not start" "$ARTIFACTS/fuzz-run.log"

say "schemathesis run: every check, $MAX_EXAMPLES examples per operation and phase, at most ${MAX_TIME}s"
st_rc=0
(cd "$FUZZ_DIR" && timeout "$MAX_TIME" "$VENV_BIN/st" --config-file schemathesis.toml run "$URL/api/v1/openapi.json" \
    --checks all --max-examples "$MAX_EXAMPLES" --workers 1 \
    -H "Authorization: Bearer $KEY" -H "X-API-Key: $KEY" \
    --report har,junit --report-dir "$ARTIFACTS/report" --no-color) >"$ARTIFACTS/schemathesis.log" 2>&1 || st_rc=$?
# The summary: phases, failures, cases generated.
sed -n '/^=* SUMMARY =*$/,$p' "$ARTIFACTS/schemathesis.log" | grep -v '^\s*$' | grep -v '^Reports:\|HAR:\|JUnit' || true
if ((st_rc == 124)); then
    FAILURES+=("schemathesis did not finish within MAX_TIME=${MAX_TIME}s")
    FAIL_LOGS+=("$ARTIFACTS/schemathesis.log")
elif ((st_rc != 0)); then
    FAILURES+=("schemathesis found failures (exit $st_rc); each with a curl line to reproduce in artifacts/api-fuzz/schemathesis.log")
    FAIL_LOGS+=("$ARTIFACTS/schemathesis.log")
fi

har=$(ls -t "$ARTIFACTS"/report/har-*.json 2>/dev/null | head -n 1)
[[ -n "$har" ]] || die "schemathesis wrote no HAR report" "$ARTIFACTS/schemathesis.log"
echo
python3 "$FUZZ_DIR/report.py" "$har" | tee "$ARTIFACTS/report.txt" | grep -v '^accepted=\|^requests='
accepted=$(sed -n 's/^accepted=//p' "$ARTIFACTS/report.txt")
requests=$(sed -n 's/^requests=//p' "$ARTIFACTS/report.txt")

pid_alive "$RUN_PID" || die "logpipe run exited during the fuzzing" "$ARTIFACTS/fuzz-run.log"

# Every accepted event is stored once: wait for the rows to reach the count, then stay there.
rows=0 t0=$SECONDS
while ((SECONDS - t0 < DRAIN_TIMEOUT)); do
    rows=$(psql "$PG_URL" -XqtAc "SELECT count(*) FROM \"$PH_SCHEMA\".logs" 2>/dev/null || echo 0)
    ((rows >= accepted)) && break
    sleep 1
done
sleep 3
rows=$(psql "$PG_URL" -XqtAc "SELECT count(*) FROM \"$PH_SCHEMA\".logs")
counted=$(metric "$URL" gateway_events_accepted_total)
total=$(curl -sf -H "X-API-Key: $KEY" "$URL/api/v1/stats?since=1h" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["all_time"]["total"])' || echo '?')
say "$requests requests; $accepted events accepted in 202 answers (gateway_events_accepted_total: $counted); $rows rows in PostgreSQL; aggregates count $total"
if [[ "$counted" != "$accepted" ]]; then
    FAILURES+=("the 202 answers accepted $accepted events but gateway_events_accepted_total says $counted")
fi
if [[ "$rows" != "$accepted" ]]; then
    FAILURES+=("the gateway accepted $accepted events but PostgreSQL holds $rows rows")
    FAIL_LOGS+=("$ARTIFACTS/fuzz-run.log")
fi
if [[ "$total" != "$rows" ]]; then
    FAILURES+=("the aggregates count $total events but PostgreSQL holds $rows rows")
    FAIL_LOGS+=("$ARTIFACTS/fuzz-run.log")
fi

term_expect_zero fuzz run "$RUN_PID"
stack_finish "api-fuzz: $requests requests, no failure; $accepted accepted events stored once"
