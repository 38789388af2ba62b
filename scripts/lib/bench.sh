# shellcheck shell=bash
# What the benchmark scripts (bench-drain.sh, bench-ingest.sh, bench-query.sh) share: the logpipe
# binary to measure, and the Apache Kafka cluster to measure on. Source it after kafka.sh.
#
#   bench_binary                   # BIN: $LOGPIPE, or a release build of this checkout
#   bench_cluster ARTIFACTS BASE   # KAFKA_DIR, KAFKA_BOOTSTRAP, OWN_CLUSTER (empty for a borrowed one)
#
# Both print progress to stdout and exit the script on failure (they are its preamble).

# bench_binary: the binary named by LOGPIPE (bench.sh passes the one it built), else a release
# build of this checkout.
bench_binary() {
    if [[ -n "${LOGPIPE:-}" ]]; then
        BIN=$LOGPIPE
        [[ -x "$BIN" ]] || { echo "LOGPIPE=$BIN is not an executable"; exit 1; }
    else
        echo "==> building release binary"
        cargo build --release -q -p logpipe
        BIN="$REPO_ROOT/target/release/logpipe"
    fi
}

# bench_cluster ARTIFACTS BASE: the cluster in BENCH_KAFKA_DIR when set (another script runs it;
# it is left running), else a fresh 3-node cluster in ARTIFACTS/kafka on ports from BASE (log:
# ARTIFACTS/kafka.log), which the caller stops on exit (kafka_release_run "$OWN_CLUSTER" ...).
bench_cluster() {
    local artifacts=$1 base=$2
    OWN_CLUSTER=""
    if [[ -n "${BENCH_KAFKA_DIR:-}" ]]; then
        KAFKA_DIR=$BENCH_KAFKA_DIR
        [[ -f "$KAFKA_DIR/bootstrap" ]] || { echo "BENCH_KAFKA_DIR=$KAFKA_DIR holds no cluster (no bootstrap file)"; exit 1; }
        KAFKA_BOOTSTRAP=$(cat "$KAFKA_DIR/bootstrap")
        echo "==> the cluster in $KAFKA_DIR ($KAFKA_BOOTSTRAP)"
        return 0
    fi
    echo "==> starting a 3-node Apache Kafka cluster (log: $artifacts/kafka.log)"
    kafka_install 2>>"$artifacts/kafka.log" || { tail -n 20 "$artifacts/kafka.log"; exit 1; }
    KAFKA_DIR="$artifacts/kafka"
    OWN_CLUSTER=$KAFKA_DIR
    base=$(kafka_free_base "$base" 3) || exit 1
    kafka_cluster_start "$KAFKA_DIR" 3 "$base" 2>>"$artifacts/kafka.log" || { tail -n 30 "$artifacts/kafka.log"; exit 1; }
}
