# shellcheck shell=bash
# Apache Kafka, the reference broker of the tests and benchmarks: installed from Maven Central's
# artifacts (no tarball, no Docker) and run as a KRaft cluster on loopback. Source it from bash:
#
#   source scripts/lib/kafka.sh
#   kafka_install                                   # Java + Maven (apt-get when missing), jars cached
#   kafka_cluster_start /tmp/k 3 19192              # 3 nodes: brokers on 19192/19194/19196
#   echo "$KAFKA_BOOTSTRAP"                         # 127.0.0.1:19192,127.0.0.1:19194,127.0.0.1:19196
#   kafka_node_kill /tmp/k 2; kafka_node_start /tmp/k 2; kafka_node_wait /tmp/k 2
#   kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --list
#   kafka_cluster_stop /tmp/k
#
# A cluster lives in one folder (its "dir"): node-N.properties, data-N/, node-N.log, node-N.pid,
# and `bootstrap` (the broker list). Each node is broker and controller at once (combined mode),
# node N listening on BASE+2(N-1) (clients, PLAINTEXT) and BASE+2(N-1)+1 (CONTROLLER). With 3
# nodes the quorum is static (controller.quorum.voters) and replication is production-like:
# internal topics and the default replication factor 3, min.insync.replicas 2. With 1 node every
# factor is 1 (a quick local cluster). Only the timings are shortened for tests (no initial
# rebalance delay, short minimum session timeouts, 3 offsets partitions); nothing that changes
# what a client may rely on.
#
# Knobs: KAFKA_VERSION (pinned, 4.4.0), KAFKA_CACHE (where the jars go, reused across runs;
# default ~/.cache/logpipe/apache-kafka-VERSION), KAFKA_HEAP (-Xms/-Xmx per node, default
# "-Xms256m -Xmx768m"), KAFKA_LOG_LEVEL (root log level of the nodes, WARN).
#
# Hooks for a caller that needs a differently configured cluster (scripts/lib/kafka_sasl.sh), set
# as `local` variables around kafka_cluster_start: KAFKA_NODE_EXTRA (properties lines appended to
# every node's file; a key set again there overrides the generated one) and KAFKA_FORMAT_EXTRA
# (an array of extra arguments to `StorageTool format`, e.g. --add-scram).
#
# Functions print progress to stderr and return non-zero on failure (they never exit).

if [[ -n "${LOGPIPE_KAFKA_SH_LOADED:-}" ]]; then
    return 0
fi
LOGPIPE_KAFKA_SH_LOADED=1

# shellcheck source=scripts/lib/services.sh
source "$(dirname "${BASH_SOURCE[0]}")/services.sh"

: "${KAFKA_VERSION:=4.4.0}"
: "${KAFKA_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/logpipe/apache-kafka-$KAFKA_VERSION}"
: "${KAFKA_HEAP:=-Xms256m -Xmx768m}"
: "${KAFKA_LOG_LEVEL:=WARN}"
# The log4j2 binding for the slf4j 2 API the broker logs through (Kafka's own distribution ships
# the same pair).
: "${KAFKA_LOG4J_VERSION:=2.24.3}"
: "${KAFKA_SLF4J_VERSION:=2.0.17}"

kafka_log() { printf '[kafka] %s\n' "$*" >&2; }
kafka_err() { printf '[kafka] ERROR: %s\n' "$*" >&2; }

# ---------------------------------------------------------------------------------------------
# Install: Java 17+, Maven, the jars
# ---------------------------------------------------------------------------------------------

# kafka_java_major: the major version of `java` on PATH (empty when there is none).
kafka_java_major() {
    command -v java >/dev/null 2>&1 || return 0
    java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n 1
}

# kafka_ensure_java: Java 17 or newer on PATH, installing openjdk-17-jre-headless when missing.
kafka_ensure_java() {
    local major
    major=$(kafka_java_major)
    if [[ -z "$major" ]]; then
        kafka_log "java not found; installing openjdk-17-jre-headless"
        apt_install openjdk-17-jre-headless || {
            kafka_err "could not install Java: apt-get install openjdk-17-jre-headless failed (Apache Kafka 4.x needs Java 17+)"
            return 1
        }
        hash -r
        major=$(kafka_java_major)
    fi
    if [[ -z "$major" ]] || ((major < 17)); then
        kafka_err "Apache Kafka $KAFKA_VERSION needs Java 17 or newer; \`java -version\` says ${major:-nothing}. Install openjdk-17-jre-headless or put a newer java first on PATH."
        return 1
    fi
}

# kafka_ensure_maven: `mvn` on PATH, installing Debian's maven when missing.
kafka_ensure_maven() {
    if ! command -v mvn >/dev/null 2>&1; then
        kafka_log "mvn not found; installing maven"
        apt_install maven || {
            kafka_err "could not install Maven: apt-get install maven failed (it fetches Apache Kafka's jars from Maven Central)"
            return 1
        }
        hash -r
    fi
}

# kafka_libs: the folder of the jars (valid once kafka_install succeeded).
kafka_libs() { echo "$KAFKA_CACHE/libs"; }

# kafka_install: Java, Maven and Apache Kafka's jars (broker + tools + log4j2), fetched once into
# KAFKA_CACHE from Maven Central through a generated pom; later calls reuse them.
kafka_install() {
    kafka_ensure_java || return 1
    if [[ -f "$KAFKA_CACHE/.complete" ]]; then
        return 0
    fi
    kafka_ensure_maven || return 1
    mkdir -p "$KAFKA_CACHE"
    cat >"$KAFKA_CACHE/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <!-- Generated by scripts/lib/kafka.sh: Apache Kafka's broker and tools with their runtime
       dependencies, copied into libs/ by mvn dependency:copy-dependencies. -->
  <modelVersion>4.0.0</modelVersion>
  <groupId>logpipe.test</groupId>
  <artifactId>apache-kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$KAFKA_SLF4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>$KAFKA_LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$KAFKA_LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
    kafka_log "fetching Apache Kafka $KAFKA_VERSION (kafka_2.13, kafka-tools) and its dependencies from Maven Central into $KAFKA_CACHE/libs"
    rm -rf "$KAFKA_CACHE/libs"
    if ! mvn -q -B -f "$KAFKA_CACHE/pom.xml" dependency:copy-dependencies \
        -DoutputDirectory="$KAFKA_CACHE/libs" -DincludeScope=runtime >"$KAFKA_CACHE/mvn.log" 2>&1; then
        kafka_err "mvn could not fetch Apache Kafka $KAFKA_VERSION from Maven Central; last lines of $KAFKA_CACHE/mvn.log:"
        tail -n 20 "$KAFKA_CACHE/mvn.log" >&2
        kafka_err "check that Maven Central (repo.maven.apache.org) is reachable, or pin another KAFKA_VERSION"
        return 1
    fi
    if [[ ! -f "$KAFKA_CACHE/libs/kafka_2.13-$KAFKA_VERSION.jar" ]]; then
        kafka_err "mvn finished but $KAFKA_CACHE/libs/kafka_2.13-$KAFKA_VERSION.jar is missing"
        return 1
    fi
    cat >"$KAFKA_CACHE/log4j2.properties" <<'EOF'
# Console logging for the test nodes: warnings and errors, plus the lines that say a node started
# or stopped. KAFKA_LOG_LEVEL (through -Dkafka.root.level) raises or lowers the root level.
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = ${sys:kafka.root.level:-WARN}
rootLogger.appenderRef.stdout.ref = STDOUT
logger.raftserver.name = kafka.server.KafkaRaftServer
logger.raftserver.level = INFO
logger.broker.name = kafka.server.BrokerServer
logger.broker.level = INFO
EOF
    touch "$KAFKA_CACHE/.complete"
    kafka_log "Apache Kafka $KAFKA_VERSION ready: $(find "$KAFKA_CACHE/libs" -name '*.jar' | wc -l) jars in $KAFKA_CACHE/libs"
}

# kafka_tool CLASS ARGS...: run one of Kafka's command-line classes (TopicCommand,
# ConsumerGroupCommand, ConsoleConsumer, ProducerPerformance, ...) with the cached jars.
kafka_tool() {
    local class=$1
    shift
    java -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -Dlog4j2.configurationFile="$KAFKA_CACHE/log4j2.properties" -Dkafka.root.level=WARN \
        -cp "$(kafka_libs)/*" "$class" "$@"
}

# kafka_perf CLASS ARGS...: one of Kafka's performance tools (ProducerPerformance,
# ConsumerPerformance), with the JVM options Kafka's own kafka-producer-perf-test.sh uses
# (kafka-run-class.sh's KAFKA_JVM_PERFORMANCE_OPTS, 512 MiB heap). kafka_tool's flags (C1 only,
# serial GC) suit short admin commands, not a throughput measurement.
kafka_perf() {
    local class=$1
    shift
    java -Xmx512m -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_CACHE/log4j2.properties" -Dkafka.root.level=WARN \
        -cp "$(kafka_libs)/*" "$class" "$@"
}

# ---------------------------------------------------------------------------------------------
# A KRaft cluster on loopback
# ---------------------------------------------------------------------------------------------

kafka_broker_port() { echo $(($2 + 2 * ($1 - 1))); }     # NODE BASE
kafka_controller_port() { echo $(($2 + 2 * ($1 - 1) + 1)); }

# kafka_cluster_write DIR NODES BASE: node-N.properties for every node, and DIR/bootstrap.
kafka_cluster_write() {
    local dir=$1 nodes=$2 base=$3 n voters="" bootstrap="" rf isr
    for ((n = 1; n <= nodes; n++)); do
        voters+="${voters:+,}$n@127.0.0.1:$(kafka_controller_port "$n" "$base")"
        bootstrap+="${bootstrap:+,}127.0.0.1:$(kafka_broker_port "$n" "$base")"
    done
    if ((nodes >= 3)); then rf=3 isr=2; else rf=$nodes isr=1; fi
    for ((n = 1; n <= nodes; n++)); do
        local bport cport quorum
        bport=$(kafka_broker_port "$n" "$base")
        cport=$(kafka_controller_port "$n" "$base")
        if ((nodes == 1)); then
            quorum="controller.quorum.bootstrap.servers=127.0.0.1:$cport"
        else
            quorum="controller.quorum.voters=$voters"
        fi
        cat >"$dir/node-$n.properties" <<EOF
# Generated by scripts/lib/kafka.sh: node $n of a $nodes-node KRaft cluster on loopback.
process.roles=broker,controller
node.id=$n
$quorum
listeners=PLAINTEXT://127.0.0.1:$bport,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$bport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data-$n

# Replication as in production: what an operator of a 3-broker cluster sets.
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
# logpipe creates its topics through the admin API; auto-creation would hide a missing step.
auto.create.topics.enable=false
num.partitions=1

# Test timings only.
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=3
share.coordinator.state.topic.num.partitions=1
group.min.session.timeout.ms=1000
group.consumer.min.session.timeout.ms=3000
# KIP-848 sessions as long as logpipe's classic default (Kafka's is 45 s); a test that wants a
# shorter one sets it on its group (consumer.session.timeout.ms, a dynamic group config).
group.consumer.session.timeout.ms=30000
group.consumer.min.heartbeat.interval.ms=500
# librdkafka waits about one interval for a heartbeat's answer: 1 s timed out behind offset
# commits on a loaded machine (Kafka's default is 5 s).
group.consumer.heartbeat.interval.ms=2000

# Fewer threads than the defaults: three nodes share 2 cores with everything else.
num.network.threads=2
num.io.threads=4
num.replica.fetchers=1
background.threads=2
log.cleaner.threads=1
EOF
        if [[ -n "${KAFKA_NODE_EXTRA:-}" ]]; then
            printf '\n# Added by the caller (KAFKA_NODE_EXTRA); a key set again here wins.\n%s\n' \
                "$KAFKA_NODE_EXTRA" >>"$dir/node-$n.properties"
        fi
    done
    echo "$bootstrap" >"$dir/bootstrap"
    echo "$nodes" >"$dir/nodes"
    echo "$base" >"$dir/base"
}

# kafka_node_start DIR N: start node N in the background (its output appended to DIR/node-N.log).
kafka_node_start() {
    local dir=$1 n=$2 pid
    local port
    port=$(kafka_broker_port "$n" "$(cat "$dir/base")")
    if [[ -n "$(kafka_node_pid "$dir" "$n")" ]]; then
        kafka_err "node $n is already running (pid $(kafka_node_pid "$dir" "$n"))"
        return 1
    fi
    echo "# $(date -Is) starting node $n" >>"$dir/node-$n.log"
    # shellcheck disable=SC2086 # KAFKA_HEAP is a list of JVM flags
    nohup java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$KAFKA_CACHE/log4j2.properties" -Dkafka.root.level="$KAFKA_LOG_LEVEL" \
        -Dkafka.logs.dir="$dir" -cp "$(kafka_libs)/*" kafka.Kafka "$dir/node-$n.properties" \
        </dev/null >>"$dir/node-$n.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/node-$n.pid"
    kafka_log "node $n starting: pid $pid, broker 127.0.0.1:$port (log: $dir/node-$n.log)"
}

# kafka_node_wait DIR N [TIMEOUT]: until node N's broker port accepts connections and the node
# logged that it started; fails (with the log's tail) if it exits first.
kafka_node_wait() {
    local dir=$1 n=$2 timeout_s=${3:-90} pid port
    pid=$(cat "$dir/node-$n.pid")
    port=$(kafka_broker_port "$n" "$(cat "$dir/base")")
    if ! wait_for_port 127.0.0.1 "$port" "$timeout_s" "$pid"; then
        kafka_err "node $n did not start; last lines of $dir/node-$n.log:"
        tail -n 30 "$dir/node-$n.log" >&2
        return 1
    fi
}

# kafka_node_pid DIR N: the pid of node N (empty when it is not running).
kafka_node_pid() {
    local f="$1/node-$2.pid" pid
    [[ -f "$f" ]] || return 0
    pid=$(cat "$f")
    # The pid file outlives a node that died by itself, and its pid may be reused meanwhile.
    if pid_alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "node-$2.properties"; then
        echo "$pid"
    fi
    return 0
}

# kafka_node_stop DIR N: a clean shutdown (SIGTERM: controlled shutdown moves leadership away
# first), SIGKILL after 60 s.
kafka_node_stop() {
    local pid
    pid=$(kafka_node_pid "$1" "$2")
    [[ -n "$pid" ]] || return 0
    kafka_log "node $2: stopping (SIGTERM, pid $pid)"
    stop_pid "$pid" 60
    rm -f "$1/node-$2.pid"
}

# kafka_node_kill DIR N: kill -9, as a crashed machine.
kafka_node_kill() {
    local pid
    pid=$(kafka_node_pid "$1" "$2")
    [[ -n "$pid" ]] || return 0
    kafka_log "node $2: kill -9 (pid $pid)"
    kill -KILL "$pid" 2>/dev/null || true
    while pid_alive "$pid"; do sleep 0.05; done
    wait "$pid" 2>/dev/null || true
    rm -f "$1/node-$2.pid"
}

# kafka_node_restart DIR N: stop (cleanly), start and wait for node N.
kafka_node_restart() {
    kafka_node_stop "$1" "$2" && kafka_node_start "$1" "$2" && kafka_node_wait "$1" "$2"
}

# kafka_show_logs DIR: the last lines of every node's log, for a failure report.
kafka_show_logs() {
    local n
    for ((n = 1; n <= $(cat "$1/nodes"); n++)); do
        printf -- '----- last 15 lines of %s -----\n' "$1/node-$n.log" >&2
        tail -n 15 "$1/node-$n.log" >&2
    done
}

# kafka_cluster_ready DIR [TIMEOUT]: until every node is registered (the broker count comes
# from the kafka-broker-api-versions tool) and the cluster takes an idempotent acks=all write.
kafka_cluster_ready() {
    local dir=$1 timeout_s=${2:-120} nodes deadline
    nodes=$(cat "$dir/nodes")
    deadline=$((SECONDS + timeout_s))
    local seen=0
    while ((SECONDS < deadline)); do
        seen=$(kafka_tool org.apache.kafka.tools.BrokerApiVersionsCommand \
            --bootstrap-server "$(cat "$dir/bootstrap")" 2>/dev/null | grep -c '^127.0.0.1:[0-9]* (id: ' || true)
        if ((seen >= nodes)); then
            break
        fi
        sleep 1
    done
    if ((seen < nodes)); then
        kafka_err "the cluster in $dir did not register its $nodes node(s) within ${timeout_s}s (saw $seen)"
        kafka_show_logs "$dir"
        return 1
    fi
    # Registered nodes still answer producer-id requests with "coordinator load in progress" for
    # a while (and a client's first writes wait or fail meanwhile): ready means one idempotent
    # acks=all write went through, to a topic replicated like the others.
    local rf=$((nodes >= 3 ? 3 : nodes)) bootstrap
    bootstrap=$(cat "$dir/bootstrap")
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --create --if-not-exists \
        --topic logpipe-cluster-ready --partitions 1 --replication-factor "$rf" >>"$dir/ready.log" 2>&1 || true
    while ((SECONDS < deadline)); do
        local out
        out=$(kafka_tool org.apache.kafka.tools.ProducerPerformance --bootstrap-server "$bootstrap" \
            --topic logpipe-cluster-ready --num-records 1 --record-size 100 --throughput -1 \
            --command-property acks=all enable.idempotence=true delivery.timeout.ms=60000 2>&1) || true
        echo "$out" >>"$dir/ready.log"
        # The tool exits 0 even when the send failed; its summary line says what was sent.
        if grep -q '^1 records sent' <<<"$out" && ! grep -qi 'exception' <<<"$out"; then
            kafka_group_ready "$dir" "$deadline"
            return
        fi
        sleep 1
    done
    kafka_err "the cluster in $dir registered its nodes but took no acks=all write within ${timeout_s}s; see $dir/ready.log"
    kafka_show_logs "$dir"
    return 1
}

# kafka_group_ready DIR DEADLINE: one consumer group reads the ready record and commits. Kafka
# creates __consumer_offsets on the first group request and its coordinator times requests out
# while the topic's replicas load; a loaded machine made the first consumers of a test run fail
# on that, so the cluster is ready only once a group has committed.
kafka_group_ready() {
    local dir=$1 deadline=$2 bootstrap out
    bootstrap=$(cat "$dir/bootstrap")
    while ((SECONDS < deadline)); do
        out=$(kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$bootstrap" \
            --topic logpipe-cluster-ready --group logpipe-cluster-ready --from-beginning \
            --max-messages 1 --timeout-ms 30000 2>&1) || true
        echo "$out" >>"$dir/ready.log"
        if grep -q 'Processed a total of 1 message' <<<"$out"; then
            return 0
        fi
        sleep 1
    done
    kafka_err "the cluster in $dir took writes but no consumer group committed in time; see $dir/ready.log"
    kafka_show_logs "$dir"
    return 1
}

# kafka_free_base PREFERRED NODES: echo a base port whose 2 x NODES ports are all free,
# PREFERRED when it is, otherwise one from 20000-31999: below Linux's ephemeral range
# (32768-60999), where an outgoing connection could take a port before the JVM binds it.
kafka_free_base() {
    local preferred=$1 nodes=$2 base i n busy
    for ((i = 0; i < 100; i++)); do
        if ((i == 0)); then base=$preferred; else base=$((20000 + (RANDOM % 1200) * 10)); fi
        busy=0
        for ((n = 0; n < 2 * nodes; n++)); do
            if port_in_use $((base + n)); then
                busy=1
                break
            fi
        done
        if ((busy == 0)); then
            echo "$base"
            return 0
        fi
    done
    kafka_err "no block of $((2 * nodes)) free ports found"
    return 1
}

# kafka_cluster_start DIR NODES BASE_PORT: format and start a fresh cluster in DIR (emptied
# first), wait until every node is registered, and set KAFKA_BOOTSTRAP. NODES is 3 (replicated,
# the reference) or 1 (quick local runs).
kafka_cluster_start() {
    local dir=$1 nodes=$2 base=$3 n id
    kafka_install || return 1
    for ((n = 0; n < 2 * nodes; n++)); do
        if port_in_use $((base + n)); then
            kafka_err "port $((base + n)) is in use; pick another base port (free ports $base-$((base + 2 * nodes - 1)) needed)"
            return 1
        fi
    done
    rm -rf "$dir"
    mkdir -p "$dir"
    kafka_cluster_write "$dir" "$nodes" "$base"
    id=$(kafka_tool kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)
    [[ -n "$id" ]] || {
        kafka_err "kafka.tools.StorageTool random-uuid printed nothing (is $KAFKA_CACHE/libs complete? delete it to refetch)"
        return 1
    }
    echo "$id" >"$dir/cluster-id"
    local standalone=()
    ((nodes == 1)) && standalone=(--standalone)
    for ((n = 1; n <= nodes; n++)); do
        kafka_tool kafka.tools.StorageTool format -t "$id" -c "$dir/node-$n.properties" "${standalone[@]}" \
            ${KAFKA_FORMAT_EXTRA[@]+"${KAFKA_FORMAT_EXTRA[@]}"} >>"$dir/format.log" 2>&1 || {
            kafka_err "formatting node $n failed; see $dir/format.log:"
            tail -n 10 "$dir/format.log" >&2
            return 1
        }
    done
    for ((n = 1; n <= nodes; n++)); do
        kafka_node_start "$dir" "$n" || return 1
    done
    for ((n = 1; n <= nodes; n++)); do
        kafka_node_wait "$dir" "$n" || return 1
    done
    kafka_cluster_ready "$dir" || return 1
    KAFKA_BOOTSTRAP=$(cat "$dir/bootstrap")
    export KAFKA_BOOTSTRAP
    kafka_log "Apache Kafka $KAFKA_VERSION: $nodes-node KRaft cluster $id ready at $KAFKA_BOOTSTRAP (dir $dir)"
}

# kafka_release_run OWN_DIR RUN: a script's cleanup. Stops the cluster it started in OWN_DIR (and
# frees its data), or, with OWN_DIR empty, deletes the run's topics (RUN-*) from the shared
# cluster at KAFKA_BOOTSTRAP, if any. Never fails.
kafka_release_run() {
    local own=$1 run=$2
    if [[ -n "$own" ]]; then
        kafka_cluster_stop "$own" 2>>"${ARTIFACTS:-/tmp}/kafka.log" || true
        rm -rf "$own"/data-*
    elif [[ -n "${KAFKA_BOOTSTRAP:-}" ]]; then
        kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" --delete \
            --topic "$run-.*" >/dev/null 2>&1 || true
    fi
}

# kafka_cluster_stop DIR: stop every node (in parallel, clean shutdown first).
kafka_cluster_stop() {
    local dir=$1 n nodes
    [[ -f "$dir/nodes" ]] || return 0
    nodes=$(cat "$dir/nodes")
    local pids=()
    for ((n = 1; n <= nodes; n++)); do
        local pid
        pid=$(kafka_node_pid "$dir" "$n")
        if [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null; then pids+=("$pid"); fi
    done
    for pid in "${pids[@]}"; do
        stop_pid "$pid" 30
    done
    rm -f "$dir"/node-*.pid
}
