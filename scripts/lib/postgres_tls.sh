# shellcheck shell=bash
# A second PostgreSQL server that accepts TLS connections only, for the sslmode tests. It runs the
# installed PostgreSQL (the binaries of the newest /usr/lib/postgresql/N) as the `postgres` OS
# user, on a free port of 127.0.0.1, with its data, socket and certificates under one directory;
# the shared server on 5432 is not touched.
#
#   source scripts/lib/services.sh; source scripts/lib/postgres_tls.sh
#   ensure_postgres_tls "$dir"     # starts it (or finds it running) and exports:
#     LOGPIPE_TEST_POSTGRES_TLS_PORT      its port on 127.0.0.1
#     LOGPIPE_TEST_POSTGRES_TLS_DIR       the certificates (scripts/lib/certs.sh): ca.crt,
#                                         other-ca.crt, logpipe_cert-client.crt/.key
#     LOGPIPE_TEST_POSTGRES_TLS_URL       postgres://logpipe_tls:PASSWORD@127.0.0.1:PORT/logpipe
#                                         (no sslmode: the tests add their own)
#   stop_postgres_tls "$dir"
#
# pg_hba.conf has no `host` line: every TCP connection must be TLS (`hostssl`). Role
# `logpipe_tls` logs in with a SCRAM password, role `logpipe_cert` with a client certificate
# (`cert`, which implies clientcert=verify-full: CN must be the role name). Both may create
# schemas in database `logpipe`. Only `local` (Unix socket, peer) lets `postgres` in, for setup.

if [[ -n "${LOGPIPE_POSTGRES_TLS_SH_LOADED:-}" ]]; then
    return 0
fi
LOGPIPE_POSTGRES_TLS_SH_LOADED=1

# shellcheck source=scripts/lib/certs.sh
source "$(dirname "${BASH_SOURCE[0]}")/certs.sh"

pgtls_log() { printf '[postgres-tls] %s\n' "$*" >&2; }

# The password of role logpipe_tls: a test server on 127.0.0.1, torn down after the run.
PGTLS_PASSWORD=logpipe-tls-test-password

# pgtls_bin: the bin directory of the newest installed PostgreSQL.
pgtls_bin() {
    local bin
    bin=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
    [[ -x "$bin/postgres" ]] || { pgtls_log "no PostgreSQL under /usr/lib/postgresql: apt-get install postgresql"; return 1; }
    echo "$bin"
}

# pgtls_as_postgres CMD...: CMD as the postgres OS user (PostgreSQL refuses to run as root).
pgtls_as_postgres() {
    if [[ "$(id -un)" == postgres ]]; then
        "$@"
    else
        runuser -u postgres -- "$@"
    fi
}

# pgtls_psql DIR SQL: SQL as the superuser over the server's private Unix socket.
pgtls_psql() {
    local dir=$1 port
    port=$(cat "$dir/port")
    pgtls_as_postgres psql -X -w -q -v ON_ERROR_STOP=1 -tA -h "$dir/run" -p "$port" -U postgres -d postgres -c "$2"
}

pgtls_export() {
    local dir=$1 port
    port=$(cat "$dir/port")
    export LOGPIPE_TEST_POSTGRES_TLS_PORT=$port
    export LOGPIPE_TEST_POSTGRES_TLS_DIR=$dir/certs
    export LOGPIPE_TEST_POSTGRES_TLS_URL="postgres://logpipe_tls:$PGTLS_PASSWORD@127.0.0.1:$port/logpipe"
}

# pgtls_running DIR: true if the server of DIR is up.
pgtls_running() {
    local dir=$1 bin
    [[ -s "$dir/port" && -f "$dir/data/postmaster.pid" ]] || return 1
    bin=$(pgtls_bin) || return 1
    pgtls_as_postgres "$bin/pg_ctl" status -D "$dir/data" >/dev/null 2>&1
}

# ensure_postgres_tls DIR: the TLS-only server of DIR, started if it is not running.
ensure_postgres_tls() {
    local dir=$1 bin port
    [[ -n "$dir" ]] || { pgtls_log "usage: ensure_postgres_tls DIR"; return 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if pgtls_running "$dir"; then
        pgtls_export "$dir"
        pgtls_log "already running on 127.0.0.1:$LOGPIPE_TEST_POSTGRES_TLS_PORT"
        return 0
    fi
    bin=$(pgtls_bin) || return 1
    command -v runuser >/dev/null 2>&1 || [[ "$(id -un)" == postgres ]] ||
        { pgtls_log "runuser is missing (util-linux): cannot run PostgreSQL as postgres"; return 1; }

    certs_init "$dir/certs" || return 1
    [[ -s "$dir/certs/postgres.crt" ]] || certs_server "$dir/certs" postgres || return 1
    [[ -s "$dir/certs/logpipe_cert-client.crt" ]] || certs_client "$dir/certs" logpipe_cert || return 1
    # The tests (run as root or any user) read the client key; the server copies below are private.
    chmod 755 "$dir" "$dir/certs"
    chmod 644 "$dir/certs/"*.crt

    # A fresh cluster each start: initdb takes a second or two, and nothing in it is worth keeping.
    rm -rf "$dir/data" "$dir/run"
    mkdir -p "$dir/data" "$dir/run"
    chown postgres: "$dir/data" "$dir/run"
    chmod 700 "$dir/data"
    pgtls_as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth-local=peer --auth-host=reject \
        -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        { pgtls_log "initdb failed:"; tail -n 20 "$dir/initdb.log" >&2; return 1; }
    local file
    for file in ca.crt postgres.crt postgres.key; do
        install -o postgres -g postgres -m 600 "$dir/certs/$file" "$dir/data/$file"
    done
    cat >"$dir/data/pg_hba.conf" <<'EOF'
# TLS only: no `host` line, so a connection without TLS matches nothing and is refused
# ("no pg_hba.conf entry ... no encryption").
local   all  postgres                   peer
hostssl all  logpipe_tls   127.0.0.1/32 scram-sha-256
hostssl all  logpipe_cert  127.0.0.1/32 cert clientcert=verify-full
EOF
    chown postgres: "$dir/data/pg_hba.conf"

    port=$(free_port 25433) || return 1
    echo "$port" >"$dir/port"
    cat >>"$dir/data/postgresql.conf" <<EOF
# ensure_postgres_tls (scripts/lib/postgres_tls.sh)
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/run'
ssl = on
ssl_cert_file = 'postgres.crt'
ssl_key_file = 'postgres.key'
ssl_ca_file = 'ca.crt'
password_encryption = 'scram-sha-256'
max_connections = 40
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    pgtls_as_postgres "$bin/pg_ctl" start -w -t 30 -D "$dir/data" -l "$dir/data/postgres.log" >/dev/null ||
        { pgtls_log "PostgreSQL did not start:"; tail -n 20 "$dir/data/postgres.log" >&2; return 1; }
    pgtls_psql "$dir" "create role logpipe_tls login password '$PGTLS_PASSWORD'" &&
        pgtls_psql "$dir" "create role logpipe_cert login" &&
        pgtls_psql "$dir" "create database logpipe owner logpipe_tls" &&
        pgtls_psql "$dir" "grant create, connect on database logpipe to logpipe_cert" ||
        { pgtls_log "setting up roles failed"; return 1; }
    pgtls_export "$dir"
    pgtls_log "TLS-only PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (certificates in $dir/certs)"
}

# stop_postgres_tls DIR: stops the server of DIR, if it runs.
stop_postgres_tls() {
    local dir=$1 bin
    [[ -n "$dir" && -f "$dir/data/postmaster.pid" ]] || return 0
    bin=$(pgtls_bin) || return 0
    pgtls_as_postgres "$bin/pg_ctl" stop -D "$dir/data" -m fast -t 30 >/dev/null 2>&1 || true
}
