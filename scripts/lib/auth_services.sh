# shellcheck shell=bash
# PostgreSQL and Redis that demand a password, for the tests of logpipe's secrets (a password
# given apart from the URL, by value or by file, and kept out of every error when it is wrong).
# The shared services of scripts/test.sh trust every client, so these are separate instances on
# free ports, with their data in one temporary directory:
#
#   source scripts/lib/services.sh; source scripts/lib/auth_services.sh
#   auth_services_start "$dir"   # exports the LOGPIPE_TEST_AUTH_* variables below
#   ...
#   auth_services_stop "$dir"
#
#   LOGPIPE_TEST_AUTH_POSTGRES_URL       postgres://postgres@127.0.0.1:PORT/postgres (no password)
#   LOGPIPE_TEST_AUTH_POSTGRES_PASSWORD  its password (scram-sha-256 over TCP)
#   LOGPIPE_TEST_AUTH_REDIS_URL          redis://127.0.0.1:PORT (no password)
#   LOGPIPE_TEST_AUTH_REDIS_PASSWORD     its password (requirepass)
#
# Passwords are random each run. Functions print progress to stderr and return non-zero on
# failure. Needs services.sh (free_port, wait_for_port, stop_pid) sourced first.

if [[ -n "${LOGPIPE_AUTH_SERVICES_SH_LOADED:-}" ]]; then
    return 0
fi
LOGPIPE_AUTH_SERVICES_SH_LOADED=1

auth_log() { printf '[auth-services] %s\n' "$*" >&2; }

# auth_pg_bin NAME: the PostgreSQL server program NAME (initdb, pg_ctl) of the newest install.
auth_pg_bin() {
    local name=$1 found
    found=$(find /usr/lib/postgresql -path "*/bin/$name" 2>/dev/null | sort -V | tail -n 1)
    if [[ -n "$found" ]]; then
        echo "$found"
    elif command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
    else
        auth_log "PostgreSQL's $name not found (apt-get install postgresql)"
        return 1
    fi
}

# auth_as_pg CMD...: run CMD as the postgres user when root (the server refuses to run as root).
auth_as_pg() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# auth_services_start DIR: start both services with data under DIR and export their variables.
auth_services_start() {
    local dir=$1 initdb pg_ctl pg_port redis_port pg_password redis_password
    mkdir -p "$dir"
    initdb=$(auth_pg_bin initdb) || return 1
    pg_ctl=$(auth_pg_bin pg_ctl) || return 1
    pg_password=$(openssl rand -hex 16) || return 1
    redis_password=$(openssl rand -hex 16) || return 1

    # PostgreSQL: trust on the socket (in DIR), scram-sha-256 over TCP, which the tests use.
    mkdir -p "$dir/pg"
    printf '%s\n' "$pg_password" >"$dir/pg.pw"
    if [[ $EUID -eq 0 ]]; then
        chown -R postgres "$dir/pg" "$dir/pg.pw"
        chmod 755 "$dir"
    fi
    auth_as_pg "$initdb" -D "$dir/pg/data" -U postgres --pwfile="$dir/pg.pw" \
        --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 ||
        { auth_log "initdb failed: $(tail -n 5 "$dir/initdb.log")"; return 1; }
    pg_port=$(free_port 25432) || return 1
    auth_as_pg "$pg_ctl" -D "$dir/pg/data" -l "$dir/pg/server.log" -w -t 30 \
        -o "-p $pg_port -k $dir/pg -c listen_addresses=127.0.0.1" start >/dev/null ||
        { auth_log "PostgreSQL did not start: $(tail -n 5 "$dir/pg/server.log")"; return 1; }
    auth_log "PostgreSQL with password authentication on 127.0.0.1:$pg_port"

    # Redis: requirepass, nothing persisted.
    redis_port=$(free_port 26379) || return 1
    redis-server --port "$redis_port" --bind 127.0.0.1 --requirepass "$redis_password" \
        --save '' --appendonly no --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
        --logfile "$dir/redis.log" ||
        { auth_log "Redis did not start: $(tail -n 5 "$dir/redis.log")"; return 1; }
    wait_for_port 127.0.0.1 "$redis_port" 30 ||
        { auth_log "Redis did not listen: $(tail -n 5 "$dir/redis.log")"; return 1; }
    auth_log "Redis with requirepass on 127.0.0.1:$redis_port"

    export LOGPIPE_TEST_AUTH_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
    export LOGPIPE_TEST_AUTH_POSTGRES_PASSWORD="$pg_password"
    export LOGPIPE_TEST_AUTH_REDIS_URL="redis://127.0.0.1:$redis_port"
    export LOGPIPE_TEST_AUTH_REDIS_PASSWORD="$redis_password"
}

# auth_services_stop DIR: stop what auth_services_start DIR started, and remove DIR.
auth_services_stop() {
    local dir=$1 pg_ctl
    if [[ -f "$dir/pg/data/postmaster.pid" ]] && pg_ctl=$(auth_pg_bin pg_ctl); then
        auth_as_pg "$pg_ctl" -D "$dir/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    if [[ -f "$dir/redis.pid" ]]; then
        stop_pid "$(cat "$dir/redis.pid")" || true
    fi
    rm -rf "$dir"
}
