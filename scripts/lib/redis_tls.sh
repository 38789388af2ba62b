# shellcheck shell=bash
# Two throwaway TLS-only Redis servers for the Redis TLS tests, each its own redis-server (Debian's
# is built with TLS) on a free port of 127.0.0.1, in a temporary directory, without persistence:
#
#   - "optional": --tls-auth-clients optional (a client certificate is accepted, not required);
#   - "mtls":     --tls-auth-clients yes (the handshake fails without a client certificate).
#
# Both have no plain-text port (port 0), a server certificate signed by the test CA of
# scripts/lib/certs.sh, a password for the default user (requirepass) and an ACL user `logpipe`
# with a password of its own. Passwords are random per run.
#
#   source scripts/lib/redis_tls.sh
#   redis_tls_start "$dir"    # starts both, exports the LOGPIPE_TEST_REDIS_TLS_* variables below
#   redis_tls_stop "$dir"     # stops both (safe to call twice, or after a failed start)
#
# Exports:
#   LOGPIPE_TEST_REDIS_TLS_URL               rediss://logpipe:PASSWORD@127.0.0.1:PORT (ACL user)
#   LOGPIPE_TEST_REDIS_TLS_HOST              127.0.0.1
#   LOGPIPE_TEST_REDIS_TLS_PORT              the "optional" server's TLS port
#   LOGPIPE_TEST_REDIS_TLS_MTLS_PORT         the "mtls" server's TLS port
#   LOGPIPE_TEST_REDIS_TLS_USER              logpipe
#   LOGPIPE_TEST_REDIS_TLS_PASSWORD          the ACL user's password
#   LOGPIPE_TEST_REDIS_TLS_DEFAULT_PASSWORD  the default user's password (requirepass)
#   LOGPIPE_TEST_REDIS_TLS_CERTS             the certificate directory: ca.crt, other-ca.crt,
#                                            logpipe-client.crt and logpipe-client.key
#
# Functions return non-zero on failure and print progress to stderr.

if [[ -n "${LOGPIPE_REDIS_TLS_SH_LOADED:-}" ]]; then
    return 0
fi
LOGPIPE_REDIS_TLS_SH_LOADED=1

# shellcheck source=scripts/lib/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/services.sh"
# shellcheck source=scripts/lib/certs.sh
source "$(dirname "${BASH_SOURCE[0]}")/certs.sh"

redis_tls_log() { printf '[redis-tls] %s\n' "$*" >&2; }

# redis_tls_server DIR NAME AUTH_CLIENTS PORT PASSWORD USER_PASSWORD: writes DIR/NAME.conf and
# starts a daemonised redis-server from it (pid in DIR/NAME.pid, log in DIR/NAME.log). A config
# file rather than flags keeps the passwords out of `ps`.
redis_tls_server() {
    local dir=$1 name=$2 auth_clients=$3 port=$4 password=$5 user_password=$6
    local certs="$dir/certs"
    mkdir -p "$dir/$name"
    (
        umask 077
        cat >"$dir/$name.conf" <<EOF
daemonize yes
pidfile $dir/$name.pid
logfile $dir/$name.log
dir $dir/$name
bind 127.0.0.1
port 0
tls-port $port
tls-cert-file $certs/redis.crt
tls-key-file $certs/redis.key
tls-ca-cert-file $certs/ca.crt
tls-auth-clients $auth_clients
requirepass $password
user logpipe on >$user_password ~* &* +@all
save ""
appendonly no
EOF
    )
    redis-server "$dir/$name.conf" >&2 || { redis_tls_log "redis-server $name did not start (see $dir/$name.log)"; return 1; }
    local deadline=$((SECONDS + 20)) client=()
    if [[ "$auth_clients" == yes ]]; then
        client=(--cert "$certs/logpipe-client.crt" --key "$certs/logpipe-client.key")
    fi
    until REDISCLI_AUTH=$user_password redis-cli --tls --cacert "$certs/ca.crt" "${client[@]}" \
        -h 127.0.0.1 -p "$port" --user logpipe PING 2>/dev/null | grep -q PONG; do
        if ((SECONDS >= deadline)); then
            redis_tls_log "redis-server $name not answering PING over TLS on 127.0.0.1:$port after 20s; its log:"
            tail -n 20 "$dir/$name.log" >&2 2>/dev/null
            return 1
        fi
        sleep 0.2
    done
    redis_tls_log "$name: TLS on 127.0.0.1:$port (tls-auth-clients $auth_clients)"
}

# redis_tls_start DIR: certificates, both servers, the exports above.
redis_tls_start() {
    local dir=$1
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        redis_tls_log "Redis not installed; installing"
        apt_install redis-server redis-tools || return 1
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local certs="$dir/certs"
    certs_init "$certs" && certs_server "$certs" redis && certs_client "$certs" logpipe || return 1
    local password user_password port mtls_port
    password=$(openssl rand -hex 16) && user_password=$(openssl rand -hex 16) || return 1
    port=$(free_port 16390) || return 1
    redis_tls_server "$dir" optional optional "$port" "$password" "$user_password" || return 1
    mtls_port=$(free_port 16391) || return 1
    redis_tls_server "$dir" mtls yes "$mtls_port" "$password" "$user_password" || return 1
    export LOGPIPE_TEST_REDIS_TLS_URL="rediss://logpipe:$user_password@127.0.0.1:$port"
    export LOGPIPE_TEST_REDIS_TLS_HOST=127.0.0.1
    export LOGPIPE_TEST_REDIS_TLS_PORT=$port
    export LOGPIPE_TEST_REDIS_TLS_MTLS_PORT=$mtls_port
    export LOGPIPE_TEST_REDIS_TLS_USER=logpipe
    export LOGPIPE_TEST_REDIS_TLS_PASSWORD=$user_password
    export LOGPIPE_TEST_REDIS_TLS_DEFAULT_PASSWORD=$password
    export LOGPIPE_TEST_REDIS_TLS_CERTS=$certs
}

# redis_tls_stop DIR: stops the servers redis_tls_start started in DIR (by their pid files).
redis_tls_stop() {
    local dir=$1 name pid
    for name in optional mtls; do
        [[ -s "$dir/$name.pid" ]] || continue
        pid=$(<"$dir/$name.pid")
        stop_pid "$pid"
        rm -f "$dir/$name.pid"
    done
}
