# shellcheck shell=bash
# Reading the Prometheus text a logpipe process serves at /metrics, for the scripts that watch
# other processes (bench.sh, bench-drain.sh, and through stack.sh the kill, scale and
# broker-fault tests). The one parser of that format in scripts/; Rust code reads the consumer's
# figures as JSON from /stats instead. Source it from bash:
#
#   source scripts/lib/metrics.sh
#   curl -s "$url/metrics" | prom_sum log_consumer_success_total      # 1234 (empty if absent)
#   curl -s "$url/metrics" | prom_by_label log_consumer_partition_lag partition   # 0=5 \n 1=0
#   metric "$url" log_consumer_assigned_partitions                   # the same, fetching /metrics
#
# A sample line is `name{label="value",...} value [# exemplar]`; comments are skipped. Sums print
# integers as integers and keep the fraction of others (histogram `_sum`s).

if [[ -n "${LOGPIPE_METRICS_SH_LOADED:-}" ]]; then
    return 0
fi
LOGPIPE_METRICS_SH_LOADED=1

# prom_sum NAME: (stdin: an exposition) the sum of NAME's samples over all label sets; prints
# nothing when there is none.
prom_sum() {
    awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2; k++} END {if (k) printf "%.15g\n", s}'
}

# prom_by_label NAME LABEL: (stdin) "value=sample" per sample of NAME that has LABEL.
prom_by_label() {
    awk -v n="$1" -v l="$2" 'index($1, n "{") == 1 {
        if (match($1, "[{,]" l "=\"[^\"]*\"")) {
            v = substr($1, RSTART + length(l) + 3, RLENGTH - length(l) - 4); print v "=" $2
        }
    }'
}

# metric BASE_URL NAME: prom_sum of BASE_URL/metrics; empty when unreachable or absent.
metric() {
    { curl -s --max-time 2 "$1/metrics" 2>/dev/null || true; } | prom_sum "$2"
}

# metric_labels BASE_URL NAME LABEL: prom_by_label of BASE_URL/metrics.
metric_labels() {
    { curl -s --max-time 2 "$1/metrics" 2>/dev/null || true; } | prom_by_label "$2" "$3"
}
