#!/usr/bin/env bash
# Rebuild benchmark: what `logpipe aggregates rebuild` costs. Figures are printed, never asserted.
#
# 1. A log store of ROWS rows (5,000,000) spread evenly over the last 47 hours (the window a
#    rebuild covers with the default redis.minute_ttl of 2 days), 12 partitions, 20 services, all
#    levels, filled by SQL into a schema of its own; in Redis only the watermarks, each
#    partition's last offset: the state right after a FLUSHDB once the consumers restored them.
# 2. `logpipe aggregates rebuild` recounts everything: its own rows-per-second figure, and the
#    wall time. Then `logpipe aggregates verify` must find no difference.
# 3. The consumer's drain rate (scripts/bench-drain.sh, DRAIN_EVENTS events) alone, and with
#    rebuilds of that store running back to back meanwhile, alternating ROUNDS times (A B A B):
#    what a rebuild takes from the pipeline on the same machine.
#
#   scripts/bench-rebuild.sh
#   ROWS=1000000 DRAIN_EVENTS=200000 ROUNDS=1 scripts/bench-rebuild.sh
#   ROWS=100000 ROUNDS=0 scripts/bench-rebuild.sh                # the rebuild only, no drain
#   LOGPIPE=target/release/logpipe scripts/bench-rebuild.sh    # use this binary, build nothing
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/kafka.sh
source scripts/lib/kafka.sh
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

ROWS=${ROWS:-5000000}
DRAIN_EVENTS=${DRAIN_EVENTS:-500000}
ROUNDS=${ROUNDS:-2}
ARTIFACTS="$REPO_ROOT/artifacts/bench-rebuild"
mkdir -p "$ARTIFACTS"
PG_URL=${LOGPIPE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${LOGPIPE_TEST_REDIS_URL:-redis://127.0.0.1:6379}
RUN="bench_rebuild_$(date +%s)"
TOPIC=application-logs
START=$SECONDS
say() { printf '[bench-rebuild %4ds] %s\n' $((SECONDS - START)) "$*"; }
q() { psql "$PG_URL" -X -q -v ON_ERROR_STOP=1 -At "$@"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

bench_binary
ensure_postgres
ensure_redis
LOOP_PID=""
cleanup() {
    [[ -n "$LOOP_PID" ]] && kill "$LOOP_PID" 2>/dev/null || true
    q -c "DROP SCHEMA IF EXISTS $RUN CASCADE" >/dev/null 2>&1 || true
    redis-cli --scan --pattern "$RUN:*" | xargs -r redis-cli del >/dev/null 2>&1 || true
}
trap cleanup EXIT
STORE=(--postgres-url "$PG_URL" --redis-url "$REDIS_URL" --set "postgres.schema=$RUN" --set "redis.key_prefix=$RUN")

say "schema $RUN via logpipe migrate; load $(load)"
"$BIN" migrate "${STORE[@]}" >"$ARTIFACTS/migrate.log" 2>&1 || { tail -n 20 "$ARTIFACTS/migrate.log"; exit 1; }
# migrate creates today's partition and the days ahead; the two days before hold the rest.
for back in 1 2; do
    day=$(date -u -d "$back days ago" +%Y-%m-%d)
    next=$(date -u -d "$((back - 1)) days ago" +%Y-%m-%d)
    q -c "CREATE TABLE IF NOT EXISTS $RUN.logs_$(date -u -d "$back days ago" +%Y%m%d) PARTITION OF $RUN.logs
          FOR VALUES FROM ('$day 00:00:00+00') TO ('$next 00:00:00+00')"
done

say "filling $ROWS rows over the last 47 h"
fill_start=$SECONDS
q -c "INSERT INTO $RUN.logs (ts, processed_at, kafka_offset, fingerprint, kafka_partition, kafka_index,
        severity_number, level, service, kafka_topic, message, template, tags)
      SELECT now() - interval '47 hours' + (i * (47 * 3600.0 / $ROWS)) * interval '1 second',
             now(), i / 12, (i % 40) * 7919, (i % 12)::int, 0,
             (ARRAY[1,5,9,13,17,21])[1 + (i * 7) % 6]::smallint,
             (ARRAY['TRACE','DEBUG','INFO','WARN','ERROR','FATAL'])[1 + (i * 7) % 6],
             'svc-' || (i % 20), '$TOPIC', 'request ' || i || ' failed', 'request <num> failed #' || (i % 40), '{}'::jsonb
      FROM generate_series(0, $ROWS - 1) AS i"
q -c "ANALYZE $RUN.logs"
say "filled in $((SECONDS - fill_start)) s; $(q -c "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = '$RUN'")"
for p in $(seq 0 11); do
    last=$(q -c "SELECT coalesce(max(kafka_offset), -1) FROM $RUN.logs WHERE kafka_partition = $p")
    redis-cli -u "$REDIS_URL" SET "$RUN:wm:$TOPIC:$p" "$last" >/dev/null
done

say "rebuild from empty aggregates; load $(load)"
t0=$(date +%s.%N)
"$BIN" aggregates rebuild "${STORE[@]}" --json >"$ARTIFACTS/rebuild.json" 2>"$ARTIFACTS/rebuild.err" ||
    { cat "$ARTIFACTS/rebuild.err"; exit 1; }
t1=$(date +%s.%N)
read -r rows rate cells seconds < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["rows"], round(r["rows_per_second"]), r["cells_changed"], round(r["seconds"], 1))' "$ARTIFACTS/rebuild.json")
"$BIN" aggregates verify "${STORE[@]}" >"$ARTIFACTS/verify.txt" 2>&1 && verified=agree || verified="DIFFER (exit $?, see $ARTIFACTS/verify.txt)"
say "rebuild: $rows rows read at $rate rows/s, $cells cells written, $seconds s; verify: $verified"

if ((ROUNDS > 0)); then
    bench_cluster "$ARTIFACTS" 19592
    export BENCH_KAFKA_DIR=$KAFKA_DIR
    trap 'cleanup; kafka_release_run "$OWN_CLUSTER" "$RUN"' EXIT
fi
drain() {
    local with=$1 round=$2 out="$ARTIFACTS/drain-$1-$2.env"
    if [[ "$with" == rebuild ]]; then
        (while true; do "$BIN" aggregates rebuild "${STORE[@]}" --json >/dev/null 2>>"$ARTIFACTS/loop.err" || sleep 1; done) &
        LOOP_PID=$!
    fi
    EVENTS=$DRAIN_EVENTS LOGPIPE=$BIN RESULT_FILE=$out scripts/bench-drain.sh >"$ARTIFACTS/drain-$with-$round.txt" 2>&1 ||
        { tail -n 20 "$ARTIFACTS/drain-$with-$round.txt"; exit 1; }
    if [[ -n "$LOOP_PID" ]]; then kill "$LOOP_PID" 2>/dev/null || true; wait "$LOOP_PID" 2>/dev/null || true; LOOP_PID=""; fi
    grep '^drain_rate=' "$out" | cut -d= -f2
}
RESULTS=()
for round in $(seq 1 "$ROUNDS"); do
    for with in alone rebuild; do
        say "drain $DRAIN_EVENTS events, $with (round $round); load $(load)"
        drained=$(drain "$with" "$round")
        RESULTS+=("$with $round $drained")
        say "  $drained events/s"
    done
done

echo
echo "rebuild benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load at the end $(load)"
printf '%-40s %s\n' "store" "$ROWS rows over 47 h, 12 partitions, 20 services"
printf '%-40s %s rows/s (%s rows, %s s of store statements and correction; wall %.1f s)\n' \
    "rebuild from empty aggregates" "$rate" "$rows" "$seconds" "$(echo "$t1 - $t0" | bc -l)"
printf '%-40s %s\n' "verify afterwards" "$verified"
((${#RESULTS[@]})) || exit 0
printf '%-40s %s\n' "drain (events/s), alone vs with rebuilds" ""
# shellcheck disable=SC2086 # each result is three words
for r in "${RESULTS[@]}"; do printf '  %-10s round %s  %s\n' $r; done
python3 - "${RESULTS[@]}" <<'PY'
import sys
rows = [r.split() for r in sys.argv[1:]]
alone = [float(r[2]) for r in rows if r[0] == "alone"]
busy = [float(r[2]) for r in rows if r[0] == "rebuild"]
if alone and busy:
    a, b = sum(alone) / len(alone), sum(busy) / len(busy)
    print(f"  mean: alone {a:.0f}, with rebuilds {b:.0f}: {b / a:.2f} x")
PY
