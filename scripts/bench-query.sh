#!/usr/bin/env bash
# Query API benchmark on a big store: a PostgreSQL schema of its own, created by `logpipe migrate`,
# is filled inside PostgreSQL (INSERT ... SELECT generate_series, through the shipped indexes) with
# rows shaped like the loadgen's traffic (10 services svc-0..9, its level mix and message
# templates, timestamps spread in order over the last 24 h, unique Kafka coordinates), then a
# gateway serves the query API on it and each query of issue 16's table is timed at the client
# (scripts/lib/query_latency.py, fixed concurrency). With STEADY_RATE>0 a producer + consumer +
# loadgen ingest at that rate into the same store (a private 3-node Apache Kafka cluster, RF 3)
# while the queries run. Figures are printed, never asserted; the load average is printed with
# each table since the machine is shared.
#
#   scripts/bench-query.sh                       # 20,000,000 rows, 5,000 events/s steady ingest
#   SMOKE=1 scripts/bench-query.sh               # 200,000 rows, no ingest, 40 requests each (CI, ~20 s)
#   ROWS_LIST="1000000 5000000 10000000 20000000" scripts/bench-query.sh   # scaling table: the
#                                                # store grows to each size in turn
#   STEADY_RATE=0 scripts/bench-query.sh         # no ingest, no Kafka
#   DRAIN_EVENTS=500000 ROWS_LIST="1000000 5000000 10000000 20000000" scripts/bench-query.sh
#                                                # the scaling table: at each size, after the
#                                                # queries, one consumer drains a backlog of that
#                                                # many events into the store (rate printed per
#                                                # size); the drained rows are deleted again so the
#                                                # next size's 15-minute range holds only fill rows
#   N=200 CONCURRENCY=4 scripts/bench-query.sh   # requests per query kind, client threads
#   INDEX_STUDY=1 scripts/bench-query.sh         # at the last size: search with no index, a pg_trgm
#                                                # GIN and a full-text GIN, and each one's COPY cost
#   SEARCH_INDEX=trigram scripts/bench-query.sh  # the shipped opt-in path: postgres.search_index
#                                                # = trigram for migrate, gateway and consumer, so
#                                                # the fill and ingest go through the index and the
#                                                # API's searches use it (not with INDEX_STUDY=1)
#   LOGPIPE=target/debug/logpipe scripts/bench-query.sh   # use this binary, build nothing
#   KEEP=1 scripts/bench-query.sh                # keep the schema (printed) for EXPLAIN
#   BENCH_KAFKA_DIR=DIR scripts/bench-query.sh   # steady ingest through the cluster already running
#                                                # in DIR (scripts/bench.sh's), not a cluster of its own
#   RESULT_FILE=out.env scripts/bench-query.sh   # also write the last size's figures as key=value
#                                                # lines (p99_<kind>, errors_<kind>, scan_15m, ...)
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/kafka.sh
source scripts/lib/kafka.sh
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh
# shellcheck source=scripts/lib/metrics.sh
source scripts/lib/metrics.sh
# shellcheck source=scripts/lib/backlog.sh
source scripts/lib/backlog.sh
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh
command -v jq >/dev/null || apt_install jq
command -v bc >/dev/null || apt_install bc

if [[ "${SMOKE:-0}" == 1 ]]; then
    # No Kafka by default: starting 3 broker JVMs alone takes ~50 s on 2 cores. SMOKE=1
    # STEADY_RATE=1000 exercises the ingest path too (~2 min).
    ROWS_LIST=${ROWS_LIST:-200000}; N=${N:-40}; STEADY_RATE=${STEADY_RATE:-0}
    INDEX_STUDY=${INDEX_STUDY:-1}; COPY_ROWS=${COPY_ROWS:-20000}
fi
ROWS_LIST=${ROWS_LIST:-${ROWS:-20000000}}
N=${N:-200}
CONCURRENCY=${CONCURRENCY:-4}
STEADY_RATE=${STEADY_RATE:-5000}
DRAIN_EVENTS=${DRAIN_EVENTS:-0}
INDEX_STUDY=${INDEX_STUDY:-0}
SEARCH_INDEX=${SEARCH_INDEX:-none}
if [[ "$SEARCH_INDEX" != none && "$INDEX_STUDY" == 1 ]]; then
    echo "SEARCH_INDEX=$SEARCH_INDEX and INDEX_STUDY=1 do not mix (the study builds its own indexes)" >&2
    exit 2
fi
COPY_ROWS=${COPY_ROWS:-200000}
# maintenance_work_mem for the study's index builds (a session setting; PostgreSQL's default is
# 64MB, with which a GIN build on 20M rows spills much more).
BUILD_MEM=${BUILD_MEM:-256MB}
ARTIFACTS="$REPO_ROOT/artifacts/bench-query"
mkdir -p "$ARTIFACTS"
PG_URL=${LOGPIPE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${LOGPIPE_TEST_REDIS_URL:-redis://127.0.0.1:6379}
RUN="benchq_$(date +%s)"
S=$RUN # the schema
say() { printf '==> [%s] %s\n' "$(date +%T)" "$*"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }
q() { psql "$PG_URL" -X -Atq -v ON_ERROR_STOP=1 "$@"; }

bench_binary
ensure_postgres
ensure_redis

PIDS=()
OWN_CLUSTER=""
cleanup() {
    local pid
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}" 20 || true; done
    if [[ "${KEEP:-0}" == 1 ]]; then
        echo "kept schema $S"
    else
        q -c "DROP SCHEMA IF EXISTS $S CASCADE" >/dev/null 2>&1 || true
    fi
    redis-cli --scan --pattern "$RUN:*" | xargs -r redis-cli del >/dev/null 2>&1 || true
    rm -f "$ARTIFACTS"/copy-*.bin
    kafka_release_run "$OWN_CLUSTER" "$RUN"
}
trap cleanup EXIT
# Nothing runs longer than this, whatever the sizes (a fill of 20M rows takes minutes).
DEADLINE=$((SECONDS + ${MAX_SECONDS:-5400}))
in_time() { ((SECONDS < DEADLINE)) || { echo "time budget (MAX_SECONDS) spent: stopping"; exit 1; }; }

say "schema $S via logpipe migrate (search_index $SEARCH_INDEX); load $(load)"
"$BIN" migrate --postgres-url "$PG_URL" --set "postgres.schema=$S" --set "postgres.search_index=$SEARCH_INDEX" \
    >"$ARTIFACTS/migrate.log" 2>&1 ||
    { tail -n 20 "$ARTIFACTS/migrate.log"; exit 1; }
# migrate creates today's partition and the days ahead; a store that has been running holds
# yesterday's too (created ahead two days ago), so the last 24 h span two day partitions.
yesterday=$(date -u -d yesterday +%Y-%m-%d)
q -c "CREATE TABLE $S.logs_$(date -u -d yesterday +%Y%m%d) PARTITION OF $S.logs
      FOR VALUES FROM ('$yesterday 00:00:00+00') TO ('$(date -u +%Y-%m-%d) 00:00:00+00')"
echo "partitions: $(q -c "SELECT string_agg(c.relname, ' ' ORDER BY c.relname) FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '$S.logs'::regclass")"
if [[ "$SEARCH_INDEX" == trigram ]]; then # yesterday's partition came after migrate: inherited?
    echo "trigram index on $(q -c "SELECT count(*) FROM pg_inherits WHERE inhparent = '$S.logs_message_trgm'::regclass") of $(
        q -c "SELECT count(*) FROM pg_inherits WHERE inhparent = '$S.logs'::regclass") partitions"
fi

COLS="ts, processed_at, kafka_ts, ingested_at, kafka_offset, fingerprint, kafka_partition, kafka_index,
      severity_number, level, service, kafka_topic, host, trace_id, span_id, request_id, message,
      template, attributes, tags"
# rows_sql TOPIC FROM TO FIRST COUNT: a SELECT of rows g in (FROM, TO] of TOPIC, shaped like
# loadgen events (crates/logpipe/src/loadgen/events.rs: levels 5/70/15/9/1 %, its 8 templates),
# their timestamps in g order across the last 24 h of a step of COUNT rows starting at FIRST.
rows_sql() {
    local topic=$1 from=$2 to=$3 first=$4 count=$5
    cat <<SQL
SELECT t, t + interval '40 ms', t, t, (g / 6)::bigint, hashtext(tpl)::bigint, (g % 6)::int, 0,
       CASE lvl WHEN 'DEBUG' THEN 5 WHEN 'INFO' THEN 9 WHEN 'WARN' THEN 13 WHEN 'ERROR' THEN 17 ELSE 21 END::smallint,
       lvl, 'svc-' || (r % 10), '$topic', 'host-' || (r / 10 % 8), md5(g::text), NULL::text, NULL::text,
       CASE k
         WHEN 0 THEN 'GET /api/orders/' || n || ' completed in ' || ms || ' ms'
         WHEN 1 THEN 'payment failed for order ' || n || ': card declined'
         WHEN 2 THEN 'connection to 10.0.' || a || '.' || b || ':5432 reset after ' || ms || ' ms'
         WHEN 3 THEN 'user ' || n || ' logged in from 192.168.' || a || '.' || b
         WHEN 4 THEN 'cache miss for key session:' || hex
         WHEN 5 THEN 'retrying request ' || hex || ' (attempt ' || a || ')'
         WHEN 6 THEN 'slow query took ' || ms || ' ms: SELECT * FROM items WHERE id = ' || n
         ELSE 'job ' || hex || ' finished: ' || n || ' rows processed' END,
       tpl, jsonb_build_object('region', (ARRAY['eu','us','ap'])[1 + r / 80 % 3], 'build', 100 + r / 240 % 10),
       '{}'::jsonb
FROM (SELECT g, t, r, k, 1 + r / 7 % 999999 AS n, 1 + r / 3 % 4999 AS ms, r / 11 % 256 AS a,
             r / 13 % 256 AS b, substr(md5(r::text), 1, 16) AS hex,
             CASE WHEN p < 0.05 THEN 'DEBUG' WHEN p < 0.75 THEN 'INFO' WHEN p < 0.90 THEN 'WARN'
                  WHEN p < 0.99 THEN 'ERROR' ELSE 'FATAL' END AS lvl,
             (ARRAY['GET /api/orders/<*> completed in <*> ms', 'payment failed for order <*>: card declined',
                    'connection to <*> reset after <*> ms', 'user <*> logged in from <*>',
                    'cache miss for key session:<*>', 'retrying request <*> (attempt <*>)',
                    'slow query took <*> ms: SELECT * FROM items WHERE id = <*>',
                    'job <*> finished: <*> rows processed'])[k + 1] AS tpl
      FROM (SELECT g, now() - interval '24 hours' + interval '1 minute'
                      + (g - $first) * (interval '24 hours' - interval '2 minutes') / $count
                      + random() * interval '1 second' AS t,
                   (random() * 1e9)::bigint AS r, (random() * 8)::int % 8 AS k, random() AS p
            FROM generate_series($from + 1, $to) g) x) y
SQL
}

# fill_to TARGET: adds rows until the store holds TARGET fill rows, in chunks of 1M (progress).
FILLED=0
fill_to() {
    local target=$1 first=$FILLED count=$(($1 - FILLED)) from to t0 t1 start
    start=$(date +%s.%N)
    from=$FILLED
    while ((from < target)); do
        in_time
        to=$((from + 1000000 < target ? from + 1000000 : target))
        t0=$(date +%s.%N)
        q -c "INSERT INTO $S.logs ($COLS) $(rows_sql "$RUN-fill" "$from" "$to" "$first" "$count")"
        t1=$(date +%s.%N)
        printf '  filled %9d / %d  (%.0f rows/s this chunk, load %s)\n' "$to" "$target" \
            "$(echo "($to - $from) / ($t1 - $t0)" | bc -l)" "$(load)"
        from=$to
    done
    FILL_RATE=$(echo "$count / ($(date +%s.%N) - $start)" | bc -l)
    FILLED=$target
    q -c "ANALYZE $S.logs"
    pg_checkpoint "$PG_URL"
}

# --- the gateway (and, with STEADY_RATE>0, the ingest path) --------------------------------------
COMMON=(--set "kafka.topic=$RUN-logs" --set "kafka.dlq_topic=$RUN-dlq" --set "kafka.parked_topic=$RUN-parked")
STORES=(--postgres-url "$PG_URL" --redis-url "$REDIS_URL" --set "postgres.schema=$S" --set "redis.key_prefix=$RUN"
    --set "postgres.search_index=$SEARCH_INDEX")
if ((STEADY_RATE > 0 || DRAIN_EVENTS > 0)); then
    # A borrowed cluster (BENCH_KAFKA_DIR) keeps running; only this run's topics go at the end.
    bench_cluster "$ARTIFACTS" 19492
    export LOGPIPE_KAFKA_BROKERS="$KAFKA_BOOTSTRAP"
fi
if ((STEADY_RATE > 0)); then
    PP=$(free_port 18681)
    "$BIN" producer "${COMMON[@]}" --listen "127.0.0.1:$PP" >"$ARTIFACTS/producer.log" 2>&1 &
    PIDS+=($!)
    CP=$(free_port 18682)
    "$BIN" consumer "${COMMON[@]}" "${STORES[@]}" --listen "127.0.0.1:$CP" --set "consumer.group_id=$RUN" \
        >"$ARTIFACTS/consumer.log" 2>&1 &
    PIDS+=($!)
    wait_ready "http://127.0.0.1:$CP" "$!" "logpipe consumer" 60 || { tail -n 20 "$ARTIFACTS/consumer.log"; exit 1; }
    UPSTREAM=(--producer-url "http://127.0.0.1:$PP")
else
    UPSTREAM=()
fi
GP=$(free_port 18680)
"$BIN" gateway "${COMMON[@]}" "${STORES[@]}" "${UPSTREAM[@]}" --listen "127.0.0.1:$GP" \
    >"$ARTIFACTS/gateway.log" 2>&1 &
PIDS+=($!)
GATEWAY="http://127.0.0.1:$GP"
if ((STEADY_RATE > 0)); then
    wait_ready "$GATEWAY" "$!" "logpipe gateway" 60 || { tail -n 20 "$ARTIFACTS/gateway.log"; exit 1; }
else # no producer: never "ready" for ingest, but the query API answers
    wait_for_port 127.0.0.1 "$GP" 60 "$!" || { tail -n 20 "$ARTIFACTS/gateway.log"; exit 1; }
fi

# steady_start / steady_stop: loadgen at STEADY_RATE into the gateway during the measurements only
# (not during fills, which would otherwise compete with it).
LOADGEN_PID=""
steady_start() {
    ((STEADY_RATE > 0)) || return 0
    "$BIN" loadgen --target "$GATEWAY" --metrics-url none --rate "$STEADY_RATE" --duration 60m \
        --services 10 --batch 100 >"$ARTIFACTS/loadgen-$1.txt" 2>&1 &
    LOADGEN_PID=$!
    PIDS+=("$LOADGEN_PID")
    sleep 5 # connections, first batches stored
}
steady_stop() {
    [[ -n "$LOADGEN_PID" ]] || return 0
    stop_pid "$LOADGEN_PID" 10 || true
    LOADGEN_PID=""
}
stored() { q -c "SELECT count(*) FROM $S.logs WHERE kafka_topic = '$RUN-logs'"; }

# measure LABEL: every query kind, N requests each; appends to $RESULTS.
RESULTS="$ARTIFACTS/results.txt"
: >"$RESULTS"
KINDS=(service level pages stats search15 search1h common15)
measure() {
    local label=$1 kind line s0 s1 t0 t1
    steady_start "$label"
    s0=$(stored); t0=$SECONDS
    for kind in "${KINDS[@]}"; do
        in_time
        line=$(python3 scripts/lib/query_latency.py "$GATEWAY" "$kind" "$N" "$CONCURRENCY")
        echo "  $line"
        echo "$label $line load=$(load | tr ' ' /)" >>"$RESULTS"
    done
    s1=$(stored); t1=$SECONDS
    steady_stop
    if ((STEADY_RATE > 0)); then
        echo "  steady ingest stored $((s1 - s0)) rows in $((t1 - t0)) s during the queries" \
            "($(((s1 - s0) / (t1 - t0 > 0 ? t1 - t0 : 1))) rows/s; target $STEADY_RATE)"
        echo "$label ingest $(((s1 - s0) / (t1 - t0 > 0 ? t1 - t0 : 1)))" >>"$RESULTS"
    fi
}

# scan_rate SINCE: rows in the range, the rare-q search's execution time in PostgreSQL, rows/s.
scan_rate() {
    local since=$1 rows ms
    rows=$(q -c "SELECT count(*) FROM $S.logs WHERE ts >= now() - interval '$since'")
    ms=$(q -c "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM $S.logs WHERE ts >= now() - interval '$since'
               AND message ILIKE '%424242%' ORDER BY ts DESC, kafka_topic DESC, kafka_partition DESC,
               kafka_offset DESC, kafka_index DESC LIMIT 101" | jq '.[0]["Execution Time"]')
    printf '  search over %s: %d rows in range, %.0f ms in PostgreSQL, %.0f rows scanned/s\n' \
        "$since" "$rows" "$ms" "$(echo "$rows / ($ms / 1000)" | bc -l)"
    SCAN[$since]=$(printf '%.0f' "$(echo "$rows / ($ms / 1000)" | bc -l)")
}
declare -A SCAN=()

# drain_at ROWS: DRAIN_EVENTS events loaded into a topic of their own, then drained by one
# consumer instance (a group of its own) into the store as it stands; the rate from its first to
# its last stored record, read from its metrics as scripts/bench-drain.sh does. The drained rows
# are deleted afterwards (and today's partition vacuumed), so that the next size's queries see
# the fill's rows only: the drain's timestamps are all within the last minutes.
declare -A DRAIN_RATES=()
drain_at() {
    local rows=$1 topic="$RUN-drain-$1" accepted cp pid n t0="" n0=0 t1 deadline text
    local set=(--set "kafka.topic=$topic" --set "kafka.dlq_topic=$RUN-dlq" --set "kafka.parked_topic=$RUN-parked")
    say "drain at $rows rows: loading $DRAIN_EVENTS events into $topic; load $(load)"
    accepted=$(load_backlog "$BIN" "$ARTIFACTS" "$DRAIN_EVENTS" "${set[@]}")
    ((accepted > 0)) || { echo "the backlog for the drain at $rows rows is empty: see $ARTIFACTS/load.txt"; exit 1; }
    pg_checkpoint "$PG_URL"
    cp=$(free_port 18683)
    "$BIN" consumer "${set[@]}" "${STORES[@]}" --listen "127.0.0.1:$cp" --set "consumer.group_id=$topic" \
        >"$ARTIFACTS/drain-$rows.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    deadline=$((SECONDS + 900))
    while ((SECONDS < deadline)); do
        text=$(curl -s "http://127.0.0.1:$cp/metrics" || true)
        n=$(prom_sum log_consumer_success_total <<<"$text")
        n=${n:-0}
        if [[ -z "$t0" ]] && ((n > 0)); then t0=$(date +%s.%N); n0=$n; fi
        ((n >= accepted)) && break
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$ARTIFACTS/drain-$rows.log"; echo "the drain's consumer died"; exit 1; }
        printf '\r  stored and counted: %9d / %d' "$n" "$accepted"
        sleep 0.2
    done
    t1=$(date +%s.%N)
    echo
    ((n >= accepted)) || { echo "the drain at $rows rows stored $n of $accepted within 900 s: see $ARTIFACTS/drain-$rows.log"; exit 1; }
    stop_pid "$pid" 20
    DRAIN_RATES[$rows]=$(echo "($n - $n0) / ($t1 - $t0)" | bc -l | xargs printf '%.0f')
    printf '  drained %d events into the %d-row store at %d events/s (load %s)\n' "$accepted" "$rows" "${DRAIN_RATES[$rows]}" "$(load)"
    echo "$rows drain ${DRAIN_RATES[$rows]}" >>"$RESULTS"
    q -c "DELETE FROM $S.logs WHERE kafka_topic = '$topic'"
    q -c "VACUUM ANALYZE $S.logs_$(date -u +%Y%m%d)"
}

declare -A FILL_RATES
for rows in $ROWS_LIST; do
    in_time
    say "filling to $rows rows; load $(load)"
    fill_to "$rows"
    FILL_RATES[$rows]=$FILL_RATE
    printf '  fill rate %.0f rows/s (INSERT ... SELECT through the shipped indexes); size %s\n' \
        "$FILL_RATE" "$(q -c "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) FROM pg_inherits i
            JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '$S.logs'::regclass")"
    say "measuring at $rows rows (N=$N, concurrency $CONCURRENCY, steady ingest $STEADY_RATE/s); load $(load)"
    measure "$rows"
    scan_rate "15 minutes"
    scan_rate "1 hour"
    echo "$rows size $(q -c "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = '$S.logs'::regclass")" >>"$RESULTS"
    if ((DRAIN_EVENTS > 0)); then drain_at "$rows"; fi
done
LAST=${rows}

# --- the search index study --------------------------------------------------------------------
# sql_search FORM SINCE QFILE: median/p99 of 30 searches straight in PostgreSQL (no HTTP), the
# same ORDER BY and LIMIT as the query API; FORM is the predicate with :q for the text.
sql_search() {
    local form=$1 since=$2 i n qv
    : >"$ARTIFACTS/sql-search.sql"
    echo '\timing on' >>"$ARTIFACTS/sql-search.sql"
    for ((i = 0; i < 30; i++)); do
        n=$((100000 + RANDOM * 27 % 900000))
        qv=${form//:q/$n}
        echo "SELECT count(*) FROM (SELECT ts FROM $S.logs WHERE ts >= now() - interval '$since' AND $qv
              ORDER BY ts DESC, kafka_topic DESC, kafka_partition DESC, kafka_offset DESC, kafka_index DESC
              LIMIT 101) x;" >>"$ARTIFACTS/sql-search.sql"
    done
    psql "$PG_URL" -X -q -f "$ARTIFACTS/sql-search.sql" | awk '/^Time:/ {print $2}' | sort -n |
        awk '{a[NR] = $1} END {printf "p50 %.1f ms, p99 %.1f ms", a[int(NR / 2) + 1], a[NR]}'
}
# copy_rate NAME: rows/s of a raw binary COPY of COPY_ROWS rows into the logs table (its current
# indexes), ts over the last 24 h, a topic of its own (so no key conflicts with the fill).
copy_rate() {
    local name=$1 file="$ARTIFACTS/copy-$1.bin" t0 t1
    q -c "\\copy ($(rows_sql "$RUN-copy-$name" 0 "$COPY_ROWS" 0 "$COPY_ROWS" | tr '\n' ' ')) TO '$file' WITH (FORMAT binary)"
    pg_checkpoint "$PG_URL"
    t0=$(date +%s.%N)
    q -c "\\copy $S.logs ($(tr '\n' ' ' <<<"$COLS")) FROM '$file' WITH (FORMAT binary)"
    t1=$(date +%s.%N)
    echo "$COPY_ROWS / ($t1 - $t0)" | bc -l | xargs printf '%.0f'
}
# index_bytes: the size of every index of the partitions.
index_bytes() {
    q -c "SELECT sum(pg_relation_size(indexrelid)) FROM pg_index WHERE indrelid IN
          (SELECT inhrelid FROM pg_inherits WHERE inhparent = '$S.logs'::regclass)"
}
if [[ "$INDEX_STUDY" == 1 ]]; then
    say "search index study at $LAST rows (+ steady ingest off; COPY of $COPY_ROWS rows); load $(load)"
    STUDY="$ARTIFACTS/index-study.txt"
    : >"$STUDY"
    study() { # NAME FORM: one row of the study with the index already in place
        local name=$1 form=$2 c s15 s1h
        c=$(copy_rate "$name")
        s15=$(sql_search "$form" "15 minutes")
        s1h=$(sql_search "$form" "1 hour")
        printf '  %-10s COPY %7s rows/s | 15 min: %s | 1 h: %s | load %s\n' "$name" "$c" "$s15" "$s1h" "$(load)" | tee -a "$STUDY"
    }
    ILIKE="message ILIKE '%:q%'"
    study none "$ILIKE"
    q -c "CREATE EXTENSION IF NOT EXISTS pg_trgm"
    t0=$SECONDS; i0=$(index_bytes)
    PGOPTIONS="-c maintenance_work_mem=$BUILD_MEM" q -c "CREATE INDEX logs_message_trgm_idx ON $S.logs USING gin (message gin_trgm_ops)"
    echo "  trigram GIN built in $((SECONDS - t0)) s, $((($(index_bytes) - i0) / 1048576)) MiB" | tee -a "$STUDY"
    q -c "ANALYZE $S.logs"
    study trigram "$ILIKE"
    if ((STEADY_RATE > 0)); then
        say "query API search with the trigram index, steady ingest on"
        KINDS=(search15 search1h common15)
        measure "$LAST-trigram"
    fi
    q -c "DROP INDEX $S.logs_message_trgm_idx"
    t0=$SECONDS; i0=$(index_bytes)
    PGOPTIONS="-c maintenance_work_mem=$BUILD_MEM" q -c "CREATE INDEX logs_message_fts_idx ON $S.logs USING gin (to_tsvector('simple', message))"
    echo "  full-text GIN built in $((SECONDS - t0)) s, $((($(index_bytes) - i0) / 1048576)) MiB" | tee -a "$STUDY"
    q -c "ANALYZE $S.logs"
    study fulltext "to_tsvector('simple', message) @@ phraseto_tsquery('simple', ':q')"
    q -c "DROP INDEX $S.logs_message_fts_idx"
fi

# --- the tables --------------------------------------------------------------------------------
echo
echo "query API on PostgreSQL, N=$N per query kind, concurrency $CONCURRENCY, steady ingest $STEADY_RATE events/s, search_index $SEARCH_INDEX"
echo "(latency in ms at the client; load average 1/5/15 min at the end of each kind)"
printf '%-10s %-9s %8s %8s %8s %8s %6s %7s  %-10s %s\n' rows query p50 p95 p99 max errors rows/pg target met?
target_of() { case $1 in search15) echo 200 ;; search1h) echo - ;; common15) echo 200 ;; *) echo 50 ;; esac; }
grep -Ev ' (ingest|drain|size) ' "$RESULTS" | while read -r label kind n errors p50 p95 p99 max rowsp ld; do
    t=$(target_of "$kind")
    p99v=${p99#p99=}
    met=-
    [[ "$t" != - ]] && met=$(echo "$p99v <= $t" | bc -l | sed 's/1/yes/; s/0/NO/')
    printf '%-10s %-9s %8s %8s %8s %8s %6s %7s  %-10s %s  (%s)\n' "$label" "$kind" "${p50#p50=}" "${p95#p95=}" \
        "$p99v" "${max#max=}" "${errors#errors=}" "${rowsp#rows=}" "p99<=$t" "$met" "${ld#load=}"
done
if ((STEADY_RATE > 0)); then
    grep ' ingest ' "$RESULTS" | awk '{printf "steady ingest during %s: %s rows/s stored\n", $1, $3}'
fi
echo
echo "fill (INSERT ... SELECT generate_series through the shipped indexes, search_index $SEARCH_INDEX):"
for rows in $ROWS_LIST; do printf '  to %10d rows: %.0f rows/s\n' "$rows" "${FILL_RATES[$rows]}"; done
# p99_of SIZE KIND: that size's p99 (ms) of one query kind, "-" when not measured.
p99_of() { awk -v s="$1" -v k="$2" '$1 == s && $2 == k {sub(/^p99=/, "", $7); print $7; f = 1} END {if (!f) print "-"}' "$RESULTS"; }
echo
echo "scaling: the same figures at each size (p99 in ms; drain of $DRAIN_EVENTS events by one consumer into the store at"
echo "that size, 0 = not run; size = the logs partitions with their indexes)"
printf '%10s %9s %11s %10s %8s %8s %8s %8s %9s %9s %9s\n' rows size "fill rows/s" "drain ev/s" service level pages stats \
    search15 search1h common15
for rows in $ROWS_LIST; do
    printf '%10d %8sM %11.0f %10s %8s %8s %8s %8s %9s %9s %9s\n' "$rows" \
        "$(awk -v s="$rows" '$1 == s && $2 == "size" {printf "%d", $3 / 1048576}' "$RESULTS")" "${FILL_RATES[$rows]}" \
        "${DRAIN_RATES[$rows]:-0}" "$(p99_of "$rows" service)" "$(p99_of "$rows" level)" "$(p99_of "$rows" pages)" \
        "$(p99_of "$rows" stats)" "$(p99_of "$rows" search15)" "$(p99_of "$rows" search1h)" "$(p99_of "$rows" common15)"
done
if [[ "$INDEX_STUDY" == 1 ]]; then
    echo
    echo "search index study at $LAST rows (SQL straight in PostgreSQL, 30 rare searches each; COPY of $COPY_ROWS rows):"
    cat "$STUDY"
fi
if [[ -n "${RESULT_FILE:-}" ]]; then
    # The last size's figures, for scripts/bench.sh's target table.
    {
        echo "rows=$LAST"
        echo "steady_rate=$STEADY_RATE"
        echo "n=$N"
        { grep "^$LAST " "$RESULTS" || true; } | { grep -Ev ' (ingest|drain|size) ' || true; } | while read -r _ kind _ errors _ _ p99 _ _ ld; do
            echo "p99_$kind=${p99#p99=}"
            echo "errors_$kind=${errors#errors=}"
            echo "load_$kind=${ld#load=}"
        done
        awk -v l="$LAST" '$1 == l && $2 == "ingest" {print "ingest=" $3}' "$RESULTS"
        echo "scan_15m=${SCAN[15 minutes]:-}"
        echo "scan_1h=${SCAN[1 hour]:-}"
    } >"$RESULT_FILE"
fi
echo "kinds: service = service + 15 min; level = ERROR + 15 min; pages = 5 pages following next_cursor"
echo "(each page a sample); stats = /api/v1/stats 24 h (Redis); search15/1h = q a rare 6-digit number;"
echo "common15 = q 'card declined' over 15 min. load now: $(load)"
