#!/usr/bin/env bash
# TLS benchmark: what encrypting the consumer's PostgreSQL connections costs. The consumer's drain
# rate (scripts/bench-drain.sh, DRAIN_EVENTS events, one instance, rows written with binary COPY)
# with postgres.sslmode=disable (plain TCP) and =require (TLS 1.3, the same server), alternating
# A B B A for ROUNDS pairs so that drift falls on both sides, after one uncounted warm-up drain;
# then the mean ratio. CPU figures are the consumer's and PostgreSQL's /proc times (10 ms ticks).
# The default sslmode, prefer, uses TLS whenever the server offers it (Debian's PostgreSQL does),
# so "require" is what a default setup runs. Figures are printed, never asserted.
#
# While each drain runs, pg_stat_ssl is read to show which kind of connection the consumer really
# had (TLS or not): a run whose connections are not what its mode says is reported as such.
#
#   scripts/bench-tls.sh                                     # 500,000 events, 2 pairs
#   DRAIN_EVENTS=200000 ROUNDS=1 scripts/bench-tls.sh
#   WARMUP=0 scripts/bench-tls.sh                            # no uncounted first drain
#   LOGPIPE=target/release/logpipe scripts/bench-tls.sh     # use this binary, build nothing
set -euo pipefail
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/kafka.sh
source scripts/lib/kafka.sh
# shellcheck source=scripts/lib/bench.sh
source scripts/lib/bench.sh

DRAIN_EVENTS=${DRAIN_EVENTS:-500000}
ROUNDS=${ROUNDS:-2}
ARTIFACTS="$REPO_ROOT/artifacts/bench-tls"
mkdir -p "$ARTIFACTS"
PG_BASE=${LOGPIPE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
PG_BASE=${PG_BASE%%\?*}
RUN="bench_tls_$(date +%s)"
START=$SECONDS
say() { printf '[bench-tls %4ds] %s\n' $((SECONDS - START)) "$*"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

bench_binary
ensure_postgres
if [[ $(psql "$PG_BASE?sslmode=disable" -XAtc "SHOW ssl") != on ]]; then
    echo "PostgreSQL at $PG_BASE has ssl=off: nothing to compare. Turn it on (Debian's default, with the snakeoil certificate) and rerun." >&2
    exit 1
fi

bench_cluster "$ARTIFACTS" 19692
export BENCH_KAFKA_DIR=$KAFKA_DIR
trap 'kafka_release_run "$OWN_CLUSTER" "$RUN"' EXIT

# tls_seen MODE: every 2 s while the drain runs, the consumer's connections by TLS or not
# (other than this query's own), appended to the artifacts; the watcher stops with the drain.
watch_tls() {
    local mode=$1
    while true; do
        psql "$PG_BASE?sslmode=disable" -XAtc "SELECT coalesce(sum(CASE WHEN s.ssl THEN 1 ELSE 0 END), 0) || ' ' ||
            coalesce(sum(CASE WHEN s.ssl THEN 0 ELSE 1 END), 0) || ' ' || coalesce(max(s.version), '-')
            FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
            WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
              AND a.application_name NOT LIKE 'psql%'" >>"$ARTIFACTS/tls-$mode.seen" 2>/dev/null || true
        sleep 2
    done
}

drain() {
    local mode=$1 round=$2 out="$ARTIFACTS/drain-$1-$2.env" watcher
    : >"$ARTIFACTS/tls-$mode.seen"
    watch_tls "$mode" &
    watcher=$!
    LOGPIPE_TEST_POSTGRES_URL="$PG_BASE?sslmode=$mode" EVENTS=$DRAIN_EVENTS LOGPIPE=$BIN RESULT_FILE=$out \
        scripts/bench-drain.sh >"$ARTIFACTS/drain-$mode-$round.txt" 2>&1 ||
        { kill "$watcher"; tail -n 20 "$ARTIFACTS/drain-$mode-$round.txt"; exit 1; }
    kill "$watcher" 2>/dev/null || true
    wait "$watcher" 2>/dev/null || true
    # The most TLS and plain connections seen at once, and the TLS version.
    local seen
    seen=$(awk '$1 > t {t = $1} $2 > p {p = $2} $3 != "-" {v = $3} END {printf "%d TLS (%s), %d plain", t, v ? v : "-", p}' \
        "$ARTIFACTS/tls-$mode.seen")
    echo "$(grep '^drain_rate=' "$out" | cut -d= -f2) $(grep '^cpu_consumer=' "$out" | cut -d= -f2) $(grep '^cpu_postgres=' "$out" | cut -d= -f2) $seen"
}

# A fresh cluster's first drain runs while the brokers' JIT compiles (see docs/performance.md):
# one drain that is not counted comes first.
if [[ "${WARMUP:-1}" == 1 ]]; then
    say "warm-up drain, not counted; load $(load)"
    drain disable 0 >/dev/null
fi
RESULTS=()
for round in $(seq 1 "$ROUNDS"); do
    # A B B A: each mode goes first once per two rounds.
    if ((round % 2)); then order="disable require"; else order="require disable"; fi
    for mode in $order; do
        say "drain $DRAIN_EVENTS events, sslmode=$mode (round $round); load $(load)"
        result=$(drain "$mode" "$round")
        RESULTS+=("$mode $round $result")
        say "  $result"
    done
done

echo
echo "TLS benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load at the end $(load)"
echo "consumer drain of $DRAIN_EVENTS events into PostgreSQL at $PG_BASE, per sslmode"
python3 - "$DRAIN_EVENTS" "${RESULTS[@]}" <<'PY'
import re
import sys
events = int(sys.argv[1])
rows = [r.split(maxsplit=5) for r in sys.argv[2:]]
print(f"  {'sslmode':<8} {'round':>5} {'events/s':>10} {'consumer CPU µs/event':>22} {'postgres CPU µs/event':>22}  connections seen")
for mode, rnd, rate, cpu_c, cpu_pg, seen in rows:
    print(f"  {mode:<8} {rnd:>5} {float(rate):>10.0f} {float(cpu_c) * 1e6 / events:>22.1f} {float(cpu_pg) * 1e6 / events:>22.1f}  {seen}")
def mean(mode, col):
    vals = [float(r[col]) for r in rows if r[0] == mode]
    return sum(vals) / len(vals)
plain, tls = mean("disable", 2), mean("require", 2)
print(f"  mean drain rate: plain {plain:.0f}, TLS {tls:.0f} events/s: TLS / plain = {tls / plain:.2f} x")
for col, what in ((3, "consumer"), (4, "postgres")):
    p, t = mean("disable", col), mean("require", col)
    print(f"  mean {what} CPU: plain {p * 1e6 / events:.1f}, TLS {t * 1e6 / events:.1f} µs/event: {t / p:.2f} x")
for mode, rnd, *_, seen in rows:
    # "N TLS (version), M plain", as drain() writes it.
    tls_n, plain_n = (int(n) for n in re.match(r"(\d+) TLS \(.*\), (\d+) plain", seen).groups())
    if (mode == "require" and (tls_n == 0 or plain_n > 0)) or (mode == "disable" and tls_n > 0):
        print(f"  WARNING: round {rnd} ({mode}) saw {seen}: its connections were not what the mode says")
PY
