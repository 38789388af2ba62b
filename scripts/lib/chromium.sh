# shellcheck shell=bash
# Headless Chromium for the dashboard test (`cargo nextest run -p logpipe --test it dashboard`):
# Debian's `chromium`, plus fonts so screenshots show text. Source it from bash after
# services.sh (for apt_install and the log helpers):
#
#   source scripts/lib/services.sh
#   source scripts/lib/chromium.sh
#   ensure_chromium
#
# Returns non-zero on failure rather than exiting, like services.sh.

if [[ -n "${LOGPIPE_CHROMIUM_SH_LOADED:-}" ]]; then
    return 0
fi
LOGPIPE_CHROMIUM_SH_LOADED=1

# ensure_chromium: install Debian's chromium (and fonts) when absent, then check it starts headless.
ensure_chromium() {
    if ! command -v chromium >/dev/null 2>&1; then
        svc_log "chromium not installed; installing (the dashboard test drives it headless)"
        apt_install chromium fonts-liberation fonts-dejavu-core || return 1
    fi
    local out profile rc=0
    profile=$(mktemp -d)
    out=$(timeout 60 chromium --headless --disable-gpu --no-sandbox --no-first-run \
        --user-data-dir="$profile" --dump-dom 'data:text/html,<p id=ok>ok</p>' 2>/dev/null) || rc=$?
    rm -rf "$profile"
    if ((rc != 0)) || [[ "$out" != *'id="ok"'* ]]; then
        svc_err "chromium is installed but does not render a page headless (exit $rc)"
        return 1
    fi
    svc_log "Chromium ready: $(chromium --version 2>/dev/null | head -n 1)"
}
