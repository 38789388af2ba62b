//! `scripts/lib/kafka.sh`, which installs Apache Kafka from Maven Central's artifacts and runs it
//! for the tests and benchmarks: a download that fails says what failed and what to check, and a
//! single-node cluster (the quick local mode) starts, takes writes, survives kill -9 and a
//! restart of its node, and stops. The 3-node cluster and its faults are exercised by
//! `scripts/test.sh` itself and `scripts/broker-fault-test.sh`.

use std::process::{Command, Output};

use crate::support::{repo_root, required_env};

/// Runs `script` in bash after sourcing `scripts/lib/kafka.sh`, with `env` set.
fn with_kafka_sh(script: &str, env: &[(&str, &str)]) -> Output {
    let lib = repo_root().join("scripts/lib/kafka.sh");
    Command::new("bash")
        .arg("-c")
        .arg(format!("set -u; source '{}'; {script}", lib.display()))
        .envs(env.iter().copied())
        .output()
        .expect("bash runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_failed_download_names_the_version_and_what_to_check() {
    let cache = tempfile::tempdir().unwrap();
    let out = with_kafka_sh(
        "kafka_install",
        &[
            ("KAFKA_VERSION", "0.0.0-no-such-version"),
            ("KAFKA_CACHE", cache.path().to_str().unwrap()),
        ],
    );
    let said = text(&out);
    assert!(!out.status.success(), "kafka_install succeeded: {said}");
    assert!(
        said.contains("mvn could not fetch Apache Kafka 0.0.0-no-such-version")
            && said.contains("Maven Central"),
        "the error names the version and where it comes from: {said}"
    );
    assert!(
        !cache.path().join(".complete").exists(),
        "a failed download is not marked complete"
    );
}

#[test]
fn a_single_node_cluster_takes_writes_and_survives_kill_and_restart() {
    // The jars come from the cache `scripts/test.sh` filled (no second download here).
    let libs = required_env("LOGPIPE_TEST_KAFKA_LIBS");
    let cache = std::path::Path::new(&libs).parent().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    // Two free ports in a row: the broker and the controller of node 1. Below Linux's ephemeral
    // range (32768-60999): the JVM binds them seconds after this check, and there another
    // test's outgoing connection could take one meanwhile ("Address already in use").
    let start = 20_000 + (std::process::id() % 6_000) as u16 * 2;
    let base = (start..32_000)
        .chain(20_000..start)
        .step_by(2)
        .find(|&port| {
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
                && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok()
        })
        .expect("two free ports in a row below 32000");
    let script = r#"
        trap 'kafka_cluster_stop "$DIR"' EXIT
        kafka_cluster_start "$DIR" 1 "$BASE" || exit 1
        topics() { kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BOOTSTRAP" "$@"; }
        topics --create --topic t1 --partitions 2 --replication-factor 1 || exit 1
        echo "bootstrap=$KAFKA_BOOTSTRAP"
        kafka_node_kill "$DIR" 1
        [[ -z "$(kafka_node_pid "$DIR" 1)" ]] || { echo "node 1 still running after kill -9"; exit 1; }
        kafka_node_start "$DIR" 1 && kafka_node_wait "$DIR" 1 || exit 1
        kafka_cluster_ready "$DIR" || exit 1
        topics --describe --topic t1
    "#;
    let out = with_kafka_sh(
        script,
        &[
            ("KAFKA_CACHE", cache.to_str().unwrap()),
            ("DIR", dir.path().to_str().unwrap()),
            ("BASE", &base.to_string()),
        ],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("bootstrap=127.0.0.1:{base}")),
        "one broker on the base port: {said}"
    );
    // The topic made before the kill is there after the restart, with both partitions led.
    let led = said
        .lines()
        .filter(|l| l.contains("Topic: t1") && l.contains("Leader: 1"))
        .count();
    assert_eq!(led, 2, "both partitions of t1 led by node 1 again: {said}");
}
