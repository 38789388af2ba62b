//! logpipe against Apache Kafka's SASL_SSL listener (SCRAM-SHA-512 over TLS, a single node started
//! by `scripts/lib/kafka_sasl.sh`), configured only through `kafka.properties`: `logpipe run`
//! ingests and stores, the operator commands work through the binary, and refused credentials or
//! an untrusted broker certificate stop every Kafka-facing command at once with the keys to fix.
//!
//! Coordinates: LOGPIPE_TEST_KAFKA_SASL_BROKERS, _USER, _PASSWORD and _CA (the CA file; the
//! unrelated `other-ca.crt` beside it stands for a wrong one).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use logpipe::app::Roles;
use logpipe::config::Config;
use serde_json::Value;

use crate::consumer_flow::{assert_exact, generate, post_all, wait_for_rows};
use crate::support::{
    eventually, external_config_on, logpipe, required_env, start, unique, written,
};

/// How long a command may take to give up on refused credentials: librdkafka's login fails in
/// about a second, and `kafka.request_timeout` (10 s) bounds the check.
const REFUSAL_WITHIN: Duration = Duration::from_secs(30);

/// The SASL_SSL cluster's coordinates.
struct Sasl {
    brokers: String,
    user: String,
    password: String,
    ca: PathBuf,
}

fn sasl() -> Sasl {
    Sasl {
        brokers: required_env("LOGPIPE_TEST_KAFKA_SASL_BROKERS"),
        user: required_env("LOGPIPE_TEST_KAFKA_SASL_USER"),
        password: required_env("LOGPIPE_TEST_KAFKA_SASL_PASSWORD"),
        ca: required_env("LOGPIPE_TEST_KAFKA_SASL_CA").into(),
    }
}

impl Sasl {
    /// `[kafka.properties]` as documented in docs/configuration.md, with `password` and `ca`.
    fn properties(&self, password: &str, ca: &std::path::Path) -> BTreeMap<String, String> {
        [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", &self.user),
            ("sasl.password", password),
            ("ssl.ca.location", &ca.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// A config against this cluster and the suite's PostgreSQL and Redis.
    async fn config(&self) -> Config {
        let mut config = external_config_on(&self.brokers).await;
        config.kafka.properties = self.properties(&self.password, &self.ca);
        config
    }

    /// The binary with `config`'s brokers and topics, the security settings as `--set` flags
    /// and the password through its environment variable (both ways an operator passes them).
    fn command(
        &self,
        config: &Config,
        password: &str,
        ca: &std::path::Path,
    ) -> std::process::Command {
        let mut command = logpipe();
        command.args(["--kafka-brokers", &self.brokers]);
        for (key, value) in [
            ("kafka.topic", config.kafka.topic.as_str()),
            ("kafka.dlq_topic", &config.kafka.dlq_topic),
            ("kafka.parked_topic", &config.kafka.parked_topic),
        ] {
            command.args(["--set", &format!("{key}={value}")]);
        }
        for (key, value) in self.properties(password, ca) {
            if key == "sasl.password" {
                command.env("LOGPIPE_KAFKA_PROPERTY_SASL_PASSWORD", value);
            } else {
                command.args(["--set", &format!("kafka.properties.\"{key}\"={value}")]);
            }
        }
        command
    }
}

/// Runs `command` with `args` to its end; panics on failure, with what it said.
fn run_ok(mut command: std::process::Command, args: &[&str]) -> Value {
    let out = command.args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "logpipe {args:?} failed: {stderr}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("logpipe {args:?} printed no JSON ({e}): {stderr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_sasl_ssl_run_stores_events_and_the_tools_work() {
    let sasl = sasl();
    let config = sasl.config().await;
    let cli = || sasl.command(&config, &sasl.password, &sasl.ca);

    let ensured = run_ok(cli(), &["topics", "ensure", "--json"]);
    let statuses: Vec<&str> = ensured
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["created"; 3], "{ensured:#}");

    // `logpipe run`: gateway, producer and consumer in one process, every client over SASL_SSL.
    let app = start(config.clone(), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let run = unique("sasl");
    let events = generate(300, 6, &run);
    assert_eq!(post_all(&base, &events, 100).await, 300);
    wait_for_rows(&run, &base, 300).await;
    assert_exact(&base, &run, &events).await;

    // A poison record written by the CLI's producer goes to the DLQ; `dlq stats` counts it.
    let out = cli()
        .args([
            "topics", "produce", "--key", "poison", "--value", "not json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "topics produce: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut dlq = Value::Null;
    eventually(
        Duration::from_secs(60),
        "dlq stats counts the poison record",
        || {
            dlq = run_ok(cli(), &["dlq", "stats", "--json"]);
            let total = dlq["total"].as_u64();
            async move { total == Some(1) }
        },
    )
    .await;
    assert_eq!(dlq["by_class"][0]["class"], "poison", "{dlq:#}");

    let described = run_ok(
        cli(),
        &["topics", "describe", "--json", &config.kafka.topic],
    );
    assert_eq!(
        written(&described),
        301,
        "300 events and the poison record: {described:#}"
    );

    let mut lag = Value::Null;
    eventually(
        Duration::from_secs(60),
        "lag reports the group caught up",
        || {
            lag = run_ok(
                cli(),
                &[
                    "lag",
                    "--json",
                    "--group",
                    &config.consumer.group_id,
                    "--samples",
                    "2",
                    "--interval",
                    "200ms",
                ],
            );
            let caught_up = lag["summary"]["total_lag"] == 0
                && lag["partitions"].as_array().is_some_and(|p| !p.is_empty());
            async move { caught_up }
        },
    )
    .await;
    app.shutdown().await.unwrap();
}

/// Starts `args` and waits for it to exit (killing it after `REFUSAL_WITHIN`); its exit status and
/// stderr, or a failure when it was still running.
fn exits_within(mut child: Child, args: &[&str]) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            return (status, String::from_utf8_lossy(&out.stderr).into_owned());
        }
        if started.elapsed() > REFUSAL_WITHIN {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "logpipe {args:?} still ran after {REFUSAL_WITHIN:?} against refused credentials: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every Kafka-facing command and role, started at once with `password` and `ca`; each must exit
/// non-zero within [`REFUSAL_WITHIN`] saying all of `expected`.
async fn every_command_refused(password: &str, ca: &std::path::Path, expected: &[&str]) {
    let sasl = sasl();
    let config = sasl.config().await;
    let commands: [&[&str]; 7] = [
        &["topics", "describe"],
        &["topics", "ensure"],
        &["lag", "--group", "nobody"],
        &["dlq", "stats"],
        &["producer", "--listen", "127.0.0.1:0"],
        &["consumer", "--listen", "127.0.0.1:0"],
        &["run", "--listen", "127.0.0.1:0"],
    ];
    let children: Vec<Child> = commands
        .iter()
        .map(|args| {
            sasl.command(&config, password, ca)
                .args(["--postgres-url", &config.postgres.url])
                .args(["--redis-url", &config.redis.url])
                .args([
                    "--set",
                    &format!("postgres.schema={}", config.postgres.schema),
                ])
                .args(*args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (child, args) in children.into_iter().zip(commands) {
        let (status, stderr) = exits_within(child, args);
        assert!(!status.success(), "logpipe {args:?} succeeded: {stderr}");
        for part in expected {
            assert!(
                stderr.contains(part),
                "logpipe {args:?} does not say `{part}`: {stderr}"
            );
        }
        assert!(
            !stderr.contains(password),
            "logpipe {args:?} printed the password: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_sasl_ssl_wrong_password_fails_at_start_naming_the_login() {
    let sasl = sasl();
    every_command_refused(
        "not-the-password",
        &sasl.ca,
        &[
            "SASL authentication failed",
            "invalid credentials",
            "\"sasl.username\"",
            "\"sasl.password\"",
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_sasl_ssl_untrusted_broker_certificate_fails_at_start_naming_the_ca() {
    let sasl = sasl();
    // scripts/lib/certs.sh writes an unrelated CA beside the test CA.
    let other = sasl.ca.with_file_name("other-ca.crt");
    assert!(other.is_file(), "{} is missing", other.display());
    every_command_refused(
        &sasl.password,
        &other,
        &["certificate verify failed", "\"ssl.ca.location\""],
    )
    .await;
}
