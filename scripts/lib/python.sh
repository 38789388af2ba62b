# shellcheck shell=bash
# Python tools the scripts run (schemathesis, real client libraries), each set in a virtualenv of
# its own under ~/.cache/logpipe/venv/, installed from PyPI at the versions pinned in a
# requirements file and reinstalled only when that file changes.
#
#   source scripts/lib/python.sh
#   ensure_venv api-fuzz scripts/api-fuzz/requirements.txt   # sets VENV_BIN

# shellcheck source=scripts/lib/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/services.sh"

: "${LOGPIPE_VENV_ROOT:=$HOME/.cache/logpipe/venv}"

# ensure_venv NAME REQUIREMENTS: a virtualenv NAME holding REQUIREMENTS; sets VENV_BIN (its bin/).
ensure_venv() {
    local name=$1 requirements=$2
    local dir="$LOGPIPE_VENV_ROOT/$name"
    local stamp="$dir/.requirements"
    VENV_BIN="$dir/bin"
    if [[ -x "$VENV_BIN/python" ]] && cmp -s "$requirements" "$stamp"; then
        return 0
    fi
    command -v python3 >/dev/null || apt_install python3 || return 1
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
        apt_install python3-venv || return 1
    fi
    svc_log "creating the Python virtualenv $dir from $requirements (pip, a minute)"
    rm -rf "$dir"
    python3 -m venv "$dir" || { svc_err "python3 -m venv $dir failed"; return 1; }
    "$VENV_BIN/pip" install -q --disable-pip-version-check -r "$requirements" >&2 || {
        svc_err "pip install -r $requirements failed (PyPI reachable?)"
        return 1
    }
    cp "$requirements" "$stamp"
}
