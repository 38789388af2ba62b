# shellcheck shell=bash
# Prometheus for the monitoring tests (`cargo nextest run -p logpipe --test it observability`):
# Debian's `prometheus` package provides `promtool` (checks deploy/prometheus/*.yml and runs the
# alert unit tests) and `prometheus` (the tests start their own on a free port, with a temporary
# storage directory, scraping logpipe). Source it from bash after services.sh (for apt_install and
# the log helpers):
#
#   source scripts/lib/services.sh
#   source scripts/lib/prometheus.sh
#   ensure_prometheus
#
# Returns non-zero on failure rather than exiting, like services.sh.

if [[ -n "${LOGPIPE_PROMETHEUS_SH_LOADED:-}" ]]; then
    return 0
fi
LOGPIPE_PROMETHEUS_SH_LOADED=1

# ensure_prometheus: install Debian's prometheus when prometheus or promtool is missing. The
# package's own service (on :9090) is stopped and disabled right after installing it here: the
# tests never use it, and it would only take CPU. A Prometheus that was already installed is left
# as it is.
ensure_prometheus() {
    if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
        svc_log "prometheus/promtool not installed; installing Debian's prometheus package"
        apt_install prometheus || return 1
        hash -r
        if command -v systemctl >/dev/null 2>&1 && [[ -d /run/systemd/system ]]; then
            systemctl disable --now prometheus >&2 2>/dev/null || true
        elif command -v service >/dev/null 2>&1 && [[ -x /etc/init.d/prometheus ]]; then
            service prometheus stop >&2 2>/dev/null || true
        fi
    fi
    local bin
    for bin in prometheus promtool; do
        if ! "$bin" --version >/dev/null 2>&1; then
            svc_err "$bin is installed but does not run ($bin --version failed)"
            return 1
        fi
    done
    svc_log "Prometheus ready: $(prometheus --version 2>&1 | head -n 1)"
}
