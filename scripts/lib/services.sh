# shellcheck shell=bash
# Reusable helpers to provision the external services logpipe's tests talk to: PostgreSQL and
# Redis (Apache Kafka has its own file, scripts/lib/kafka.sh), plus ports, processes and apt.
# Source it from bash:
#
#   source "$(git rev-parse --show-toplevel)/scripts/lib/services.sh"
#   ensure_postgres; ensure_redis
#   port=$(free_port 28680)
#   ...
#   stop_pid "$pid"
#
# Written for the rust-svc machine kind (Debian 12, run as root). Functions print progress to
# stderr, so stdout stays clean for values (`free_port`). They return non-zero on failure rather
# than exiting, so callers decide; under `set -e` a failure stops the caller.

# Guard against double sourcing.
if [[ -n "${LOGPIPE_SERVICES_SH_LOADED:-}" ]]; then
    return 0
fi
LOGPIPE_SERVICES_SH_LOADED=1

# cargo-installed binaries (cargo-nextest) live here; make sure they are found.
if [[ -d "${CARGO_HOME:-$HOME/.cargo}/bin" && ":$PATH:" != *":${CARGO_HOME:-$HOME/.cargo}/bin:"* ]]; then
    PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
    export PATH
fi

svc_log() { printf '[services] %s\n' "$*" >&2; }
svc_err() { printf '[services] ERROR: %s\n' "$*" >&2; }

# The directory `services.sh` lives in is scripts/lib; the repository root is two levels up.
logpipe_repo_root() {
    (cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
}

# ---------------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------------

# port_accepts HOST PORT: true if a TCP connection to HOST:PORT succeeds right now.
port_accepts() {
    local host=$1 port=$2
    # shellcheck disable=SC2016 # $1/$2 expand in the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$host" "$port" 2>/dev/null
}

# port_in_use PORT: true if anything listens on PORT (any address) or accepts on 127.0.0.1.
port_in_use() {
    local port=$1
    if command -v ss >/dev/null 2>&1; then
        if [[ -n "$(ss -Htln "sport = :$port" 2>/dev/null)" ]]; then
            return 0
        fi
    fi
    port_accepts 127.0.0.1 "$port"
}

# free_port [PREFERRED]: echo PREFERRED if it is free, otherwise a free port from 20000-59999.
free_port() {
    local preferred=${1:-} port i
    if [[ -n "$preferred" ]] && ! port_in_use "$preferred"; then
        echo "$preferred"
        return 0
    fi
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + RANDOM % 40000))
        if ! port_in_use "$port"; then
            echo "$port"
            return 0
        fi
    done
    svc_err "no free TCP port found"
    return 1
}

# wait_for_port HOST PORT TIMEOUT_SECS [PID]: poll until HOST:PORT accepts a connection.
# With PID, give up early (and fail) if that process exits meanwhile.
wait_for_port() {
    local host=$1 port=$2 timeout_s=$3 pid=${4:-}
    local deadline=$((SECONDS + timeout_s))
    while ((SECONDS < deadline)); do
        if port_accepts "$host" "$port"; then
            return 0
        fi
        if [[ -n "$pid" ]] && ! pid_alive "$pid"; then
            svc_err "process $pid exited before $host:$port accepted connections"
            return 1
        fi
        sleep 0.2
    done
    svc_err "timed out after ${timeout_s}s waiting for $host:$port to accept connections"
    return 1
}

# wait_ready URL [PID [WHAT [TIMEOUT_SECS]]]: poll until URL/health/ready (every logpipe
# listener has it) answers 2xx, at most TIMEOUT_SECS (60). With PID, give up early (and fail) if
# that process exits meanwhile. WHAT names the process in the failure message.
wait_ready() {
    local url=$1 pid=${2:-} what=${3:-$1} timeout_s=${4:-60}
    local deadline=$((SECONDS + timeout_s))
    until curl -sf --max-time 2 "$url/health/ready" >/dev/null 2>&1; do
        if [[ -n "$pid" ]] && ! pid_alive "$pid"; then
            svc_err "$what (pid $pid) exited while starting"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            svc_err "$what not ready at $url after ${timeout_s}s"
            return 1
        fi
        sleep 0.1
    done
}

# pid_alive PID: true while PID runs (an exited child not yet reaped, a zombie, counts as gone).
pid_alive() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# stop_pid PID [TIMEOUT_SECS]: SIGTERM, wait, then SIGKILL. Works for non-children too.
stop_pid() {
    local pid=$1 timeout_s=${2:-10}
    [[ -n "$pid" ]] || return 0
    pid_alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout_s))
    while pid_alive "$pid" && ((SECONDS < deadline)); do
        sleep 0.1
    done
    if pid_alive "$pid"; then
        svc_log "pid $pid ignored SIGTERM for ${timeout_s}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # Reap it if it is our child (no-op otherwise).
    wait "$pid" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------------
# apt
# ---------------------------------------------------------------------------------------------

LOGPIPE_APT_UPDATED=${LOGPIPE_APT_UPDATED:-}

# apt_install PKG...: install Debian packages non-interactively (runs `apt-get update` once).
apt_install() {
    if [[ $EUID -ne 0 ]]; then
        svc_err "need root to apt-get install $*"
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z "$LOGPIPE_APT_UPDATED" ]]; then
        svc_log "apt-get update"
        apt-get update -qq >&2 || return 1
        LOGPIPE_APT_UPDATED=1
    fi
    svc_log "apt-get install -y $*"
    apt-get install -y -qq --no-install-recommends "$@" >&2
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL: 127.0.0.1:5432, trust auth, roles postgres + root, database test
# ---------------------------------------------------------------------------------------------

: "${PG_HOST:=127.0.0.1}"
: "${PG_PORT:=5432}"

pg_cluster_version() {
    # The newest installed cluster version, e.g. "15".
    find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1
}

# pg_psql SQL: run SQL as the postgres superuser over TCP (needs trust auth), print bare output.
pg_psql() {
    PGCONNECT_TIMEOUT=5 psql -X -w -q -v ON_ERROR_STOP=1 -tA \
        -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -c "$1"
}

ensure_postgres() {
    local ver hba
    if ! command -v pg_isready >/dev/null 2>&1 || ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
        if [[ -z "$(pg_cluster_version)" ]] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
            svc_log "PostgreSQL not installed; installing"
            apt_install postgresql postgresql-client || return 1
        fi
        ver=$(pg_cluster_version)
        if [[ -z "$ver" ]]; then
            svc_err "no PostgreSQL cluster under /etc/postgresql after install"
            return 1
        fi
        if ! pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; then
            svc_log "starting PostgreSQL $ver/main"
            # Fails harmlessly ("already running") if the cluster is up but not yet ready.
            pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 || true
        fi
        local deadline=$((SECONDS + 30))
        until pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; do
            if ((SECONDS >= deadline)); then
                svc_err "PostgreSQL not accepting connections on $PG_HOST:$PG_PORT after 30s"
                pg_lsclusters >&2 || true
                tail -n 20 "/var/log/postgresql/postgresql-$ver-main.log" >&2 2>/dev/null || true
                return 1
            fi
            sleep 0.5
        done
    fi

    # Trust auth for local TCP. If a password is demanded, put trust rules first in pg_hba.conf.
    if ! pg_psql 'select 1' >/dev/null 2>&1; then
        ver=$(pg_cluster_version)
        hba="/etc/postgresql/$ver/main/pg_hba.conf"
        if [[ ! -f "$hba" ]]; then
            svc_err "cannot connect as postgres to $PG_HOST:$PG_PORT and $hba does not exist"
            return 1
        fi
        svc_log "enabling trust auth for 127.0.0.1 and ::1 in $hba"
        sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
        pg_ctlcluster --skip-systemctl-redirect "$ver" main reload >&2 || return 1
        sleep 1
        if ! pg_psql 'select 1' >/dev/null; then
            svc_err "still cannot connect as postgres to $PG_HOST:$PG_PORT without a password"
            return 1
        fi
    fi

    if [[ "$(pg_psql "select 1 from pg_roles where rolname = 'root'")" != 1 ]]; then
        svc_log "creating role root"
        pg_psql 'create role root login superuser' || return 1
    fi
    local db
    for db in test root; do
        if [[ "$(pg_psql "select 1 from pg_database where datname = '$db'")" != 1 ]]; then
            svc_log "creating database $db"
            pg_psql "create database \"$db\"" || return 1
        fi
    done
    svc_log "PostgreSQL ready: $(pg_psql 'show server_version') on $PG_HOST:$PG_PORT"
}

# ---------------------------------------------------------------------------------------------
# Redis: 127.0.0.1:6379, nothing kept on disk
# ---------------------------------------------------------------------------------------------

: "${REDIS_HOST:=127.0.0.1}"
: "${REDIS_PORT:=6379}"

redis_ping() {
    command -v redis-cli >/dev/null 2>&1 &&
        [[ "$(timeout 5 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]
}

ensure_redis() {
    if ! redis_ping; then
        if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
            svc_log "Redis not installed; installing"
            apt_install redis-server redis-tools || return 1
        fi
        # The package's own init script may have started one already.
        if ! redis_ping; then
            svc_log "starting redis-server on $REDIS_HOST:$REDIS_PORT"
            mkdir -p /var/lib/redis /var/log/redis
            redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
                --save "" --appendonly no --dir /var/lib/redis \
                --logfile /var/log/redis/ci.log >&2 || return 1
        fi
        local deadline=$((SECONDS + 30))
        until redis_ping; do
            if ((SECONDS >= deadline)); then
                svc_err "Redis not answering PING on $REDIS_HOST:$REDIS_PORT after 30s"
                tail -n 20 /var/log/redis/ci.log >&2 2>/dev/null || true
                return 1
            fi
            sleep 0.2
        done
    fi
    local ver
    ver=$(timeout 5 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" info server 2>/dev/null |
        tr -d '\r' | sed -n 's/^redis_version://p')
    svc_log "Redis ready: ${ver:-?} on $REDIS_HOST:$REDIS_PORT"
}

# pg_checkpoint URL: flushes PostgreSQL's dirty pages now, so a benchmark phase does not pay for
# the previous one's writes (max_wal_size forces a checkpoint at a random moment otherwise).
# Needs a superuser; without one it says so and returns 0 (the figures just vary more).
pg_checkpoint() {
    psql "$1" -qc "CHECKPOINT" >/dev/null 2>&1 ||
        svc_log "CHECKPOINT refused (not a superuser?): benchmark figures may vary more between runs"
}
