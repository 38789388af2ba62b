# shellcheck shell=bash
# The OpenTelemetry Collector the integration tests run (tests/it/otel_collector.rs): a minimal
# build (receivers otlp and filelog; exporters otlphttp, kafka and debug; the health_check
# extension) from the sources the official builder generated in scripts/otelcol/, with every
# module pinned by its go.mod and go.sum. Built once with the machine's Go from the Go module
# proxy (a few minutes) and cached in ~/.cache/logpipe/otelcol-<version>/otelcol; rebuilt only
# when the binary is missing or scripts/otelcol/ changed. Source it from bash after services.sh
# (for the log helpers):
#
#   source scripts/lib/services.sh
#   source scripts/lib/otelcol.sh
#   ensure_otelcol            # exports LOGPIPE_TEST_OTELCOL
#
# Returns non-zero on failure rather than exiting, like services.sh.

if [[ -n "${LOGPIPE_OTELCOL_SH_LOADED:-}" ]]; then
    return 0
fi
LOGPIPE_OTELCOL_SH_LOADED=1

# The release of the Collector core; contrib modules are at v0.165.1 (scripts/otelcol/go.mod).
OTELCOL_VERSION=0.165.0
: "${LOGPIPE_OTELCOL_ROOT:=$HOME/.cache/logpipe}"

# otelcol_sources_stamp: a digest of what the binary is built from, so an edited manifest or
# go.sum rebuilds it even at the same Collector version.
otelcol_sources_stamp() {
    local src
    src="$(logpipe_repo_root)/scripts/otelcol"
    cat "$src"/builder-config.yaml "$src"/go.mod "$src"/go.sum "$src"/*.go | sha256sum | cut -d' ' -f1
}

# ensure_otelcol: build the Collector unless the cached binary matches the sources; exports
# LOGPIPE_TEST_OTELCOL. The binary is written under a temporary name and renamed into place, so
# a concurrent or interrupted build never leaves a half-written binary where tests look for one.
ensure_otelcol() {
    local dir="$LOGPIPE_OTELCOL_ROOT/otelcol-$OTELCOL_VERSION"
    local bin="$dir/otelcol" stamp="$dir/.sources" src want
    src="$(logpipe_repo_root)/scripts/otelcol"
    want=$(otelcol_sources_stamp)
    export LOGPIPE_TEST_OTELCOL="$bin"
    if [[ -x "$bin" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]]; then
        svc_log "OpenTelemetry Collector $OTELCOL_VERSION: $bin (cached)"
        return 0
    fi
    if ! command -v go >/dev/null 2>&1; then
        svc_err "go is not on PATH: the OpenTelemetry Collector is built from source with Go $(
            sed -n 's/^go //p' "$src/go.mod") or newer (the machine's own toolchain)"
        return 1
    fi
    mkdir -p "$dir" || return 1
    svc_log "building the OpenTelemetry Collector $OTELCOL_VERSION from $src with $(go version | cut -d' ' -f3) (modules from the Go module proxy; a few minutes the first time)"
    local start=$SECONDS tmp="$bin.tmp.$$"
    # -mod=readonly: the build uses exactly go.sum's modules, and fails rather than resolving new
    # ones. CGO off: a static binary, as the Collector's own releases are. -s -w: no symbol or
    # DWARF tables (a third smaller; the tests need no debugger).
    if ! (cd "$src" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags='-s -w' -o "$tmp" .) >&2; then
        rm -f "$tmp"
        svc_err "building the OpenTelemetry Collector failed (Go module proxy reachable? see the go output above)"
        return 1
    fi
    mv -f "$tmp" "$bin" && printf '%s\n' "$want" >"$stamp" || return 1
    svc_log "built $bin ($(du -h "$bin" | cut -f1)) in $((SECONDS - start))s"
}
