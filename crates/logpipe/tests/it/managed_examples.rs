//! The managed-service examples of `config/examples/` (shown in docs/configuration.md, "Connect to
//! managed services"), each loaded as written by the binary and connected to a real server set up
//! the same way: the TLS-only PostgreSQL (verify-full, SCRAM password), a TLS-only Redis with
//! `requirepass`, and Apache Kafka's SASL_SSL listener with SCRAM-SHA-512 and PLAIN.
//!
//! An operator adapts an example by changing host names and file paths; the tests do the same
//! through `LOGPIPE_*` variables and leave every other setting as the example has it. Secrets come
//! from files, as in the examples. Where an example trusts the system's roots (public CAs), the
//! child process gets `SSL_CERT_FILE` naming the test CA, which OpenSSL (librdkafka) and
//! rustls-native-certs (redis-rs) read in place of the system store: so no CA setting is added.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::consumer_flow::{generate, post_all, stats};
use crate::support::{
    eventually, finished, free_port, logpipe, read_repo_file, repo_root, required_env, unique,
    written,
};

const EXAMPLES: &[&str] = &[
    "rds-postgres.toml",
    "tls-redis.toml",
    "msk-scram.toml",
    "confluent-cloud.toml",
];

fn example(name: &str) -> PathBuf {
    repo_root().join("config/examples").join(name)
}

/// `logpipe --config EXAMPLE` with `env`.
fn with_example(name: &str, env: &[(&str, &str)]) -> Command {
    let mut command = logpipe();
    command
        .arg("--config")
        .arg(example(name))
        .envs(env.iter().copied());
    command
}

/// A file holding `secret` (with the trailing newline `echo` would add), as a mounted secret.
fn secret_file(dir: &Path, name: &str, secret: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path.display().to_string()
}

#[test]
fn the_docs_show_every_example_as_it_is() {
    let docs = read_repo_file("docs/configuration.md");
    for name in EXAMPLES {
        let text = std::fs::read_to_string(example(name)).unwrap();
        assert!(
            docs.contains(&format!("```toml\n{text}```")),
            "docs/configuration.md does not show config/examples/{name} verbatim in a toml block"
        );
    }
}

#[test]
fn rds_postgres_example_migrates_over_verify_full_with_a_password_file() {
    let server = url::Url::parse(&required_env("LOGPIPE_TEST_POSTGRES_TLS_URL")).unwrap();
    let ca = format!("{}/ca.crt", required_env("LOGPIPE_TEST_POSTGRES_TLS_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let password = secret_file(dir.path(), "pg-password", server.password().unwrap());
    // The example's URL with the test server's host, port and role; no password in it.
    let url = format!(
        "postgres://{}@{}:{}{}",
        server.username(),
        server.host_str().unwrap(),
        server.port().unwrap(),
        server.path()
    );
    let schema = format!("managed_rds_{}", std::process::id());
    let env = [
        ("LOGPIPE_POSTGRES_URL", url.as_str()),
        ("LOGPIPE_POSTGRES_SSLROOTCERT", ca.as_str()),
        ("LOGPIPE_POSTGRES_PASSWORD_FILE", password.as_str()),
        ("LOGPIPE_POSTGRES_SCHEMA", schema.as_str()),
    ];

    let (code, stdout, stderr) = finished(
        with_example("rds-postgres.toml", &env),
        &["config", "check", "--json"],
    );
    assert_eq!(code, 0, "{stderr}");
    let shown: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(shown["postgres"]["sslmode"], "verify-full", "{shown:#}");
    assert_eq!(shown["postgres"]["password"], "<redacted>", "{shown:#}");
    assert!(!stdout.contains(server.password().unwrap()), "{stdout}");

    let (code, stdout, stderr) = finished(with_example("rds-postgres.toml", &env), &["migrate"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("applied to `{schema}`")),
        "{stdout}"
    );

    // A wrong password in the file is refused by the server, and the error does not show it.
    let wrong = secret_file(dir.path(), "wrong", "not-the-password-0123");
    let mut env_wrong = env;
    env_wrong[2] = ("LOGPIPE_POSTGRES_PASSWORD_FILE", wrong.as_str());
    let (code, _, stderr) = finished(with_example("rds-postgres.toml", &env_wrong), &["migrate"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("password authentication failed"),
        "{stderr}"
    );
    assert!(!stderr.contains("not-the-password-0123"), "{stderr}");
}

/// A `logpipe run` child, killed when dropped (a failed assertion included), its stderr in a file
/// (a pipe nobody reads would fill and stall it).
struct Running {
    child: Child,
    stderr: PathBuf,
}

impl Running {
    fn spawn(mut command: Command, dir: &Path) -> Running {
        let stderr = dir.join("logpipe-run.stderr");
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Running { child, stderr }
    }

    /// Waits for readiness at `base`, failing with the child's stderr if it exits first.
    async fn ready(&mut self, base: &str) {
        let started = Instant::now();
        let client = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
                panic!("logpipe run exited ({status}) before it was ready:\n{stderr}");
            }
            let ready = client
                .get(format!("{base}/health/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "logpipe run not ready within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_redis_example_counts_over_rediss_with_a_password_file_and_the_system_roots() {
    let host = required_env("LOGPIPE_TEST_REDIS_TLS_HOST");
    let port = required_env("LOGPIPE_TEST_REDIS_TLS_PORT");
    let certs = PathBuf::from(required_env("LOGPIPE_TEST_REDIS_TLS_CERTS"));
    let dir = tempfile::tempdir().unwrap();
    let password = secret_file(
        dir.path(),
        "redis-password",
        &required_env("LOGPIPE_TEST_REDIS_TLS_DEFAULT_PASSWORD"),
    );
    let url = format!("rediss://{host}:{port}/0");
    let prefix = unique("managed-redis");
    let listen = format!("127.0.0.1:{}", free_port());
    let ca = certs.join("ca.crt");
    let mut command = with_example(
        "tls-redis.toml",
        &[
            ("LOGPIPE_REDIS_URL", url.as_str()),
            ("LOGPIPE_REDIS_PASSWORD_FILE", password.as_str()),
            ("LOGPIPE_REDIS_KEY_PREFIX", prefix.as_str()),
        ],
    );
    command
        .env("SSL_CERT_FILE", &ca)
        .args(["run", "--listen", &listen]);
    let mut run = Running::spawn(command, dir.path());
    let base = format!("http://{listen}");
    run.ready(&base).await;

    let events = generate(5, 1, &unique("managed-redis"));
    assert_eq!(post_all(&base, &events, 5).await, 5);
    eventually(
        Duration::from_secs(30),
        "the 5 events counted in the TLS Redis",
        || async { stats(&base).await["all_time"]["total"] == 5 },
    )
    .await;
    // Counted in that Redis, under this test's prefix, not in memory.
    let out = Command::new("redis-cli")
        .args(["--tls", "--cacert", &ca.display().to_string()])
        .args(["-h", &host, "-p", &port, "--no-auth-warning", "-a"])
        .arg(required_env("LOGPIPE_TEST_REDIS_TLS_DEFAULT_PASSWORD"))
        .args(["HGET", &format!("{prefix}:totals"), "all"])
        .output()
        .expect("redis-cli (scripts/test.sh installs Redis)");
    let counted = String::from_utf8_lossy(&out.stdout);
    assert_eq!(counted.trim(), "5", "{prefix}:totals");
    drop(run);
}

/// The SASL_SSL cluster of scripts/lib/kafka_sasl.sh, with `user` and a file holding `password`,
/// as the Kafka examples are adapted: brokers and topics changed, the CA in `SSL_CERT_FILE`.
fn kafka_example(
    name: &'static str,
    dir: &Path,
    user: Option<&str>,
    password: &str,
) -> impl Fn() -> Command {
    let brokers = required_env("LOGPIPE_TEST_KAFKA_SASL_BROKERS");
    let ca = required_env("LOGPIPE_TEST_KAFKA_SASL_CA");
    let file = secret_file(dir, "kafka-password", password);
    let topic = unique("managed");
    let mut env = vec![
        ("LOGPIPE_KAFKA_BROKERS".to_string(), brokers),
        (
            "LOGPIPE_KAFKA_PROPERTY_FILE_SASL_PASSWORD".to_string(),
            file,
        ),
        ("LOGPIPE_KAFKA_TOPIC".to_string(), topic.clone()),
        (
            "LOGPIPE_KAFKA_DLQ_TOPIC".to_string(),
            format!("{topic}-dlq"),
        ),
        (
            "LOGPIPE_KAFKA_PARKED_TOPIC".to_string(),
            format!("{topic}-parked"),
        ),
    ];
    if let Some(user) = user {
        env.push((
            "LOGPIPE_KAFKA_PROPERTY_SASL_USERNAME".to_string(),
            user.into(),
        ));
    }
    move || {
        let mut command = logpipe();
        command
            .arg("--config")
            .arg(example(name))
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("SSL_CERT_FILE", &ca);
        command
    }
}

/// Topics created, an event produced and counted through `config`'s SASL_SSL login.
fn topics_work(cli: impl Fn() -> Command) {
    let (code, stdout, stderr) = finished(cli(), &["topics", "ensure", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let ensured: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        ensured
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "created"),
        "{ensured:#}"
    );
    let event = r#"{"service":"managed","level":"INFO","message":"through the example"}"#;
    let (code, _, stderr) = finished(
        cli(),
        &["topics", "produce", "--key", "managed", "--value", event],
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = finished(cli(), &["topics", "describe", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let described: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(written(&described), 1, "{described:#}");
}

#[test]
fn msk_scram_example_logs_in_with_scram_and_the_system_roots() {
    let dir = tempfile::tempdir().unwrap();
    // The example's user is `logpipe`, as on the test cluster: only brokers and topics change.
    assert_eq!(required_env("LOGPIPE_TEST_KAFKA_SASL_USER"), "logpipe");
    topics_work(kafka_example(
        "msk-scram.toml",
        dir.path(),
        None,
        &required_env("LOGPIPE_TEST_KAFKA_SASL_PASSWORD"),
    ));
}

#[test]
fn confluent_cloud_example_logs_in_with_plain_and_the_system_roots() {
    let dir = tempfile::tempdir().unwrap();
    let key = required_env("LOGPIPE_TEST_KAFKA_SASL_PLAIN_USER");
    let secret = required_env("LOGPIPE_TEST_KAFKA_SASL_PLAIN_PASSWORD");
    topics_work(kafka_example(
        "confluent-cloud.toml",
        dir.path(),
        Some(&key),
        &secret,
    ));

    // A wrong API secret stops the command at once, naming the settings, never the secret.
    let cli = kafka_example(
        "confluent-cloud.toml",
        dir.path(),
        Some(&key),
        "wrong-secret-0123456789",
    );
    let (code, _, stderr) = finished(cli(), &["topics", "describe"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("refused the login"), "{stderr}");
    assert!(stderr.contains("sasl.password"), "{stderr}");
    assert!(!stderr.contains("wrong-secret-0123456789"), "{stderr}");
}
