#!/usr/bin/env bash
# The one command that runs logpipe's whole test suite, on a fresh rust-svc machine, as root:
#
#   scripts/test.sh                        # everything
#   scripts/test.sh -E 'test(foo)'         # extra args go to `cargo nextest run`
#   SKIP_LINT=1 scripts/test.sh            # skip cargo fmt --check and clippy
#   SKIP_BENCH=1 scripts/test.sh           # skip the benchmark smoke run (scripts/bench.sh)
#   SKIP_KILL=1 scripts/test.sh            # skip the kill, scale and broker fault tests
#   SKIP_API_FUZZ=1 scripts/test.sh        # skip the schemathesis run (scripts/api-fuzz.sh)
#   KAFKA_NODES=1 scripts/test.sh          # a single-node Kafka for the suite (quicker locally)
#
# It provisions what the tests need (PostgreSQL, Redis, Java 17, Maven, Apache Kafka from Maven
# Central as a 3-node KRaft cluster, Prometheus, Chromium, the OpenTelemetry Collector built from
# scripts/otelcol/, cargo-nextest, rustfmt, clippy), then
# runs: cargo fmt --check, cargo clippy -D warnings, cargo nextest run, the doc tests, the API
# fuzzing with schemathesis, the benchmark at smoke size, and the kill, scale and broker fault
# tests. All stages run even if an
# earlier one fails; the exit status is non-zero if any failed. Logs go to artifacts/
# (git-ignored). Tests find the services through:
#   LOGPIPE_TEST_KAFKA_BROKERS   127.0.0.1:19192,127.0.0.1:19194,127.0.0.1:19196 (a fresh cluster)
#   LOGPIPE_TEST_KAFKA_LIBS      Apache Kafka's jars, for tests that run Kafka's own tools
#   LOGPIPE_TEST_POSTGRES_URL    postgres://postgres@127.0.0.1:5432/test
#   LOGPIPE_TEST_POSTGRES_TLS_{PORT,DIR,URL}  a second PostgreSQL that accepts TLS only (hostssl),
#                                and its certificates (scripts/lib/postgres_tls.sh)
#   LOGPIPE_TEST_REDIS_URL       redis://127.0.0.1:6379
#   LOGPIPE_TEST_REDIS_TLS_*     two TLS-only Redis servers with passwords (scripts/lib/redis_tls.sh)
#   LOGPIPE_TEST_AUTH_{POSTGRES,REDIS}_{URL,PASSWORD}  a PostgreSQL and a Redis that demand a password
#                                (scripts/lib/auth_services.sh)
#   LOGPIPE_TEST_KAFKA_SASL_{BROKERS,USER,PASSWORD,CA}  a separate 1-node Kafka whose client
#                                listener is SASL_SSL with SCRAM-SHA-512 (scripts/lib/kafka_sasl.sh)
#   LOGPIPE_TEST_PYTHON          a Python with the client libraries of tests/clients/requirements.txt
#   LOGPIPE_TEST_OTELCOL         an OpenTelemetry Collector built from scripts/otelcol/ (cached)
set -euo pipefail
# One stream, so CI logs keep helper messages (stderr) in order with step output (stdout).
exec 2>&1

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=scripts/lib/services.sh
source scripts/lib/services.sh
# shellcheck source=scripts/lib/kafka.sh
source scripts/lib/kafka.sh
# shellcheck source=scripts/lib/postgres_tls.sh
source scripts/lib/postgres_tls.sh
# shellcheck source=scripts/lib/kafka_sasl.sh
source scripts/lib/kafka_sasl.sh
# shellcheck source=scripts/lib/redis_tls.sh
source scripts/lib/redis_tls.sh
# shellcheck source=scripts/lib/auth_services.sh
source scripts/lib/auth_services.sh

START_SECONDS=$SECONDS
ARTIFACTS="$REPO_ROOT/artifacts"
mkdir -p "$ARTIFACTS"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
elapsed() {
    local s=$((SECONDS - START_SECONDS))
    printf '%dm%02ds' $((s / 60)) $((s % 60))
}

KAFKA_DIR=""
KAFKA_SASL_DIR=""
PG_TLS_DIR=""
REDIS_TLS_DIR=""
AUTH_DIR=""
cleanup() {
    local rc=$?
    if [[ -n "$KAFKA_DIR" ]]; then
        kafka_cluster_stop "$KAFKA_DIR"
        KAFKA_DIR=""
    fi
    if [[ -n "$KAFKA_SASL_DIR" ]]; then
        kafka_sasl_stop "$KAFKA_SASL_DIR"
        KAFKA_SASL_DIR=""
    fi
    if [[ -n "$PG_TLS_DIR" ]]; then
        stop_postgres_tls "$PG_TLS_DIR"
        PG_TLS_DIR=""
    fi
    if [[ -n "$REDIS_TLS_DIR" ]]; then
        redis_tls_stop "$REDIS_TLS_DIR"
        rm -rf "$REDIS_TLS_DIR"
        REDIS_TLS_DIR=""
    fi
    if [[ -n "$AUTH_DIR" ]]; then
        auth_services_stop "$AUTH_DIR"
        AUTH_DIR=""
    fi
    return "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

FAILED=()
# run_stage NAME LOGFILE CMD...: run CMD, tee its output to artifacts/LOGFILE, record failure.
run_stage() {
    local name=$1 log="$ARTIFACTS/$2"
    shift 2
    step "$name: $*"
    local stage_start=$SECONDS
    if "$@" 2>&1 | tee "$log"; then
        printf '%s passed in %ds\n' "$name" $((SECONDS - stage_start))
    else
        printf '\033[31m%s FAILED\033[0m in %ds (log: %s)\n' "$name" $((SECONDS - stage_start)) "$log"
        FAILED+=("$name")
    fi
}

# -------------------------------------------------------------------------------------------------
step "Rust toolchain"
cargo --version
rustc --version
components=$(rustup component list --installed 2>/dev/null || true)
for comp in rustfmt clippy; do
    if ! grep -q "^$comp" <<<"$components"; then
        echo "installing rustup component $comp"
        rustup component add "$comp"
    fi
done
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "cargo-nextest missing: cargo install cargo-nextest --locked (a few minutes)"
    cargo install cargo-nextest --locked
fi
cargo nextest --version | head -n 1

# -------------------------------------------------------------------------------------------------
step "PostgreSQL"
ensure_postgres
export LOGPIPE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:5432/test"

step "PostgreSQL with TLS only (a second server)"
PG_TLS_DIR="$ARTIFACTS/postgres-tls"
ensure_postgres_tls "$PG_TLS_DIR"

step "Redis"
ensure_redis
export LOGPIPE_TEST_REDIS_URL="redis://127.0.0.1:6379"

step "Redis over TLS (two TLS-only servers with passwords)"
REDIS_TLS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/logpipe-redis-tls.XXXXXX")
redis_tls_start "$REDIS_TLS_DIR"

step "PostgreSQL and Redis with passwords (secrets tests)"
AUTH_DIR=$(mktemp -d /tmp/logpipe-auth.XXXXXX)
auth_services_start "$AUTH_DIR"

step "Chromium (dashboard test)"
# shellcheck source=scripts/lib/chromium.sh
source scripts/lib/chromium.sh
ensure_chromium

step "Prometheus (monitoring tests)"
# shellcheck source=scripts/lib/prometheus.sh
source scripts/lib/prometheus.sh
ensure_prometheus

KAFKA_NODES=${KAFKA_NODES:-3}
step "Apache Kafka $KAFKA_VERSION ($KAFKA_NODES-node KRaft cluster)"
kafka_install
KAFKA_DIR="$ARTIFACTS/kafka"
KAFKA_BASE=$(kafka_free_base 19192 "$KAFKA_NODES")
kafka_cluster_start "$KAFKA_DIR" "$KAFKA_NODES" "$KAFKA_BASE"
export LOGPIPE_TEST_KAFKA_BROKERS="$KAFKA_BOOTSTRAP"
LOGPIPE_TEST_KAFKA_LIBS=$(kafka_libs)
export LOGPIPE_TEST_KAFKA_LIBS

step "Apache Kafka $KAFKA_VERSION with a SASL_SSL listener (SCRAM-SHA-512), single node"
KAFKA_SASL_DIR="$ARTIFACTS/kafka-sasl"
kafka_sasl_start "$KAFKA_SASL_DIR"

step "Python client libraries (tests/clients/requirements.txt)"
# shellcheck source=scripts/lib/python.sh
source scripts/lib/python.sh
ensure_venv clients crates/logpipe/tests/clients/requirements.txt
export LOGPIPE_TEST_PYTHON="$VENV_BIN/python"

step "OpenTelemetry Collector (scripts/otelcol/)"
# shellcheck source=scripts/lib/otelcol.sh
source scripts/lib/otelcol.sh
ensure_otelcol

step "Test environment"
env | grep '^LOGPIPE_TEST_' | sort

# -------------------------------------------------------------------------------------------------
if [[ "${SKIP_LINT:-0}" == 1 ]]; then
    step "SKIP_LINT=1: skipping cargo fmt and cargo clippy"
else
    run_stage "fmt" fmt.log cargo fmt --all -- --check
    run_stage "clippy" clippy.log cargo clippy --workspace --all-targets -- -D warnings
fi

nextest_args=(run --workspace --no-fail-fast)
# In CI use the `ci` profile from .config/nextest.toml (JUnit report, per-test time limits).
if [[ -n "${CI:-}" && -f .config/nextest.toml ]] && grep -q '^\[profile\.ci\]' .config/nextest.toml; then
    nextest_args+=(--profile ci)
fi
run_stage "nextest" nextest.log cargo nextest "${nextest_args[@]}" "$@"
if [[ -f target/nextest/ci/junit.xml ]]; then
    cp target/nextest/ci/junit.xml "$ARTIFACTS/junit.xml"
fi

run_stage "doctests" doctests.log cargo test --workspace --doc

# The scripts below start Kafka clusters of their own (the fault tests kill their nodes): the
# suite's cluster stops here, so no more than one cluster's JVMs share the 2 cores.
kafka_cluster_stop "$KAFKA_DIR"
KAFKA_DIR=""

# The gateway's API fuzzed by schemathesis (PyPI) from its OpenAPI document, every check on; then
# every accepted event must be stored once (~1 minute; installs schemathesis in a virtualenv).
if [[ "${SKIP_API_FUZZ:-0}" != 1 ]]; then
    run_stage "api-fuzz" api-fuzz.log scripts/api-fuzz.sh
fi

# The benchmark at smoke size (debug binary, ~1 minute), so it cannot rot. It fails on errors
# (a process not starting, an accepted event not stored), never on its figures.
if [[ "${SKIP_BENCH:-0}" != 1 ]]; then
    run_stage "bench-smoke" bench-smoke.log env SMOKE=1 scripts/bench.sh
    # The store-side drain variants (crates/logpipe-store/examples/drain_variants.rs), a few
    # seconds at this size.
    run_stage "store-bench-smoke" store-bench-smoke.log \
        env BENCH_ROWS=20000 BENCH_ROUNDS=1 cargo run -q -p logpipe-store --example drain_variants
    # The query API and search on a 200,000-row store (scripts/bench-query.sh, ~15 s).
    run_stage "query-bench-smoke" query-bench-smoke.log \
        env SMOKE=1 LOGPIPE=target/debug/logpipe scripts/bench-query.sh
fi

# Kill, scale and broker fault tests: separate gateway, producer and consumer processes on a
# private Apache Kafka cluster, PostgreSQL and Redis. They fail on a lost or duplicated accepted
# event, aggregates that differ from the rows, or a SIGTERM exit status other than 0.
if [[ "${SKIP_KILL:-0}" != 1 ]]; then
    run_stage "kill-test" kill-test.log scripts/kill-test.sh
    run_stage "scale-test" scale-test.log scripts/scale-test.sh
    run_stage "scale-test (KIP-848)" scale-test-kip848.log env GROUP_PROTOCOL=consumer scripts/scale-test.sh
    run_stage "broker-fault-test" broker-fault-test.log scripts/broker-fault-test.sh
fi

# -------------------------------------------------------------------------------------------------
echo
if ((${#FAILED[@]})); then
    printf '\033[1;31m==> FAILED (%s) in %s; logs in artifacts/\033[0m\n' "${FAILED[*]}" "$(elapsed)"
    exit 1
fi
printf '\033[1;32m==> ALL PASSED in %s\033[0m\n' "$(elapsed)"
