# shellcheck shell=bash
# A separate single-node Apache Kafka for the SASL_SSL tests: clients authenticate with
# SCRAM-SHA-512 over TLS, as on a managed cluster. Built on scripts/lib/kafka.sh (same jars, same
# node layout) and scripts/lib/certs.sh (the test CA and a server certificate). Source it from bash:
#
#   source scripts/lib/kafka_sasl.sh
#   kafka_sasl_start /tmp/ks                     # formats, starts, checks a SCRAM login over TLS
#   echo "$LOGPIPE_TEST_KAFKA_SASL_BROKERS"      # 127.0.0.1:19294 (SASL_SSL)
#   kafka_sasl_stop /tmp/ks
#
# The node listens on three ports from BASE (default 19292, another free block when taken):
#   BASE    PLAINTEXT  inter-broker traffic and kafka.sh's readiness checks (never given to logpipe)
#   BASE+1  CONTROLLER KRaft
#   BASE+2  SASL_SSL   clients: SCRAM-SHA-512, server certificate DIR/certs/kafka.crt signed by
#                      DIR/certs/ca.crt
# The SCRAM user `logpipe` and its random password are created once the node runs, through
# Kafka's admin tooling (ConfigCommand, what kafka-configs.sh runs: `--alter --add-config
# SCRAM-SHA-512=[...] --entity-type users`) over the PLAINTEXT listener, as an operator adds a
# user to a running cluster; the readiness check then waits for a login with it. The same
# listener also takes SASL/PLAIN, as Confluent Cloud does: one user shaped like an API key (16
# upper-case characters) with a random secret, declared in the listener's PlainLoginModule.
#
# Exports: LOGPIPE_TEST_KAFKA_SASL_BROKERS (the SASL_SSL address), LOGPIPE_TEST_KAFKA_SASL_USER
# (logpipe), LOGPIPE_TEST_KAFKA_SASL_PASSWORD, LOGPIPE_TEST_KAFKA_SASL_CA (the CA file to trust),
# LOGPIPE_TEST_KAFKA_SASL_PLAIN_USER and LOGPIPE_TEST_KAFKA_SASL_PLAIN_PASSWORD (the PLAIN user).
# Functions print progress to stderr and return non-zero on failure (they never exit).

if [[ -n "${LOGPIPE_KAFKA_SASL_SH_LOADED:-}" ]]; then
    return 0
fi
LOGPIPE_KAFKA_SASL_SH_LOADED=1

# shellcheck source=scripts/lib/kafka.sh
source "$(dirname "${BASH_SOURCE[0]}")/kafka.sh"
# shellcheck source=scripts/lib/certs.sh
source "$(dirname "${BASH_SOURCE[0]}")/certs.sh"

# kafka_sasl_start DIR [BASE]: a fresh single-node cluster in DIR/cluster (a kafka.sh cluster
# folder) with its certificates in DIR/certs, the SCRAM user added through ConfigCommand, ready
# once a SCRAM-SHA-512 login over TLS succeeded;
# exports LOGPIPE_TEST_KAFKA_SASL_*.
kafka_sasl_start() {
    local dir=$1 base user=logpipe password store_password sasl_port plain_user plain_password
    kafka_install || return 1
    # Three ports are needed; kafka_free_base checks them in pairs.
    base=$(kafka_free_base "${2:-19292}" 2) || return 1
    sasl_port=$((base + 2))
    password=$(openssl rand -hex 16) && store_password=$(openssl rand -hex 16) &&
        plain_user=$(openssl rand -hex 8 | tr 'a-f' 'A-F') && plain_password=$(openssl rand -hex 32) || {
        kafka_err "openssl rand failed"
        return 1
    }
    rm -rf "$dir/certs"
    certs_init "$dir/certs" && certs_server "$dir/certs" kafka || return 1
    # Java reads the PKCS#12 openssl writes: the broker's key with its certificate chain.
    openssl pkcs12 -export -in "$dir/certs/kafka.crt" -inkey "$dir/certs/kafka.key" \
        -certfile "$dir/certs/ca.crt" -name kafka -out "$dir/certs/kafka.p12" \
        -passout "pass:$store_password" >/dev/null 2>&1 || {
        kafka_err "openssl could not build the broker's PKCS#12 keystore"
        return 1
    }

    local KAFKA_NODE_EXTRA
    KAFKA_NODE_EXTRA="listeners=PLAINTEXT://127.0.0.1:$base,CONTROLLER://127.0.0.1:$((base + 1)),SASL_SSL://127.0.0.1:$sasl_port
advertised.listeners=PLAINTEXT://127.0.0.1:$base,SASL_SSL://127.0.0.1:$sasl_port
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$plain_user=\"$plain_password\";
ssl.keystore.type=PKCS12
ssl.keystore.location=$dir/certs/kafka.p12
ssl.keystore.password=$store_password
ssl.client.auth=none"
    kafka_cluster_start "$dir/cluster" 1 "$base" || return 1
    kafka_tool org.apache.kafka.tools.ConfigCommand --bootstrap-server "127.0.0.1:$base" --alter \
        --add-config "SCRAM-SHA-512=[iterations=8192,password=$password]" \
        --entity-type users --entity-name "$user" >"$dir/add-user.log" 2>&1 || {
        kafka_err "kafka-configs (ConfigCommand) could not create the SCRAM user $user; see $dir/add-user.log"
        tail -n 15 "$dir/add-user.log" >&2
        return 1
    }
    kafka_sasl_ready "$dir" "127.0.0.1:$sasl_port" "$user" "$password" || return 1

    export LOGPIPE_TEST_KAFKA_SASL_BROKERS="127.0.0.1:$sasl_port"
    export LOGPIPE_TEST_KAFKA_SASL_USER=$user
    export LOGPIPE_TEST_KAFKA_SASL_PASSWORD=$password
    export LOGPIPE_TEST_KAFKA_SASL_CA="$dir/certs/ca.crt"
    export LOGPIPE_TEST_KAFKA_SASL_PLAIN_USER=$plain_user
    export LOGPIPE_TEST_KAFKA_SASL_PLAIN_PASSWORD=$plain_password
    kafka_log "SASL_SSL cluster ready at $LOGPIPE_TEST_KAFKA_SASL_BROKERS (SCRAM-SHA-512 user $user, PLAIN user $plain_user, CA $LOGPIPE_TEST_KAFKA_SASL_CA)"
}

# kafka_sasl_ready DIR ADDRESS USER PASSWORD [TIMEOUT]: until Kafka's own client lists the broker
# through the SASL_SSL listener (TLS verified against DIR/certs/ca.crt, SCRAM login as USER). The
# client settings are left in DIR/client.properties for Kafka's tools (`--command-config`).
kafka_sasl_ready() {
    local dir=$1 address=$2 user=$3 password=$4 timeout_s=${5:-60} deadline
    cat >"$dir/client.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$user" password="$password";
ssl.truststore.type=PEM
ssl.truststore.location=$dir/certs/ca.crt
EOF
    chmod 600 "$dir/client.properties"
    deadline=$((SECONDS + timeout_s))
    while ((SECONDS < deadline)); do
        if kafka_tool org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$address" \
            --command-config "$dir/client.properties" >"$dir/sasl-ready.log" 2>&1 &&
            grep -q "^$address (id: " "$dir/sasl-ready.log"; then
            return 0
        fi
        sleep 1
    done
    kafka_err "no SCRAM-SHA-512 login over TLS at $address within ${timeout_s}s; see $dir/sasl-ready.log"
    tail -n 15 "$dir/sasl-ready.log" >&2
    kafka_show_logs "$dir/cluster"
    return 1
}

# kafka_sasl_stop DIR: stop the node (clean shutdown first) and free its data.
kafka_sasl_stop() {
    kafka_cluster_stop "$1/cluster" || true
    rm -rf "$1/cluster"/data-*
}
