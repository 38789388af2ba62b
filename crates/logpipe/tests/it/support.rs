//! Test helpers: unique names (tests run in parallel), a config pointing at a given broker,
//! starting an [`App`] on port 0, and reading records back from Kafka.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use logpipe::app::{App, Roles};
use logpipe::config::{Config, GroupProtocol};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A name no other test (or earlier run against the same broker) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// A config for tests: listeners on port 0, unique topics, brokers as given ("" = embedded).
pub fn test_config(brokers: &str) -> Config {
    let mut config = Config::default();
    config.kafka.brokers = brokers.to_string();
    config.kafka.topic = unique("it-logs");
    config.kafka.dlq_topic = unique("it-dlq");
    config.kafka.parked_topic = unique("it-parked");
    config.gateway.listen = "127.0.0.1:0".parse().unwrap();
    config.producer.listen = "127.0.0.1:0".parse().unwrap();
    config.producer.linger = Duration::from_millis(1);
    config.consumer.group_id = unique("it-group");
    config.consumer.listen = "127.0.0.1:0".parse().unwrap();
    config.consumer.batch_linger = Duration::from_millis(20);
    config.redis.key_prefix = unique("it");
    config
}

/// A config against the external services `scripts/test.sh` starts: Apache Kafka, PostgreSQL (a
/// schema of its own) and Redis (a key prefix of its own).
pub async fn external_config() -> Config {
    external_config_on(&kafka_brokers()).await
}

/// [`external_config`] against the Kafka cluster at `brokers` (another cluster than the suite's,
/// such as the SASL_SSL one).
pub async fn external_config_on(brokers: &str) -> Config {
    let mut config = test_config(brokers);
    config.postgres.url = required_env("LOGPIPE_TEST_POSTGRES_URL");
    config.postgres.schema = unique("it_schema").replace('-', "_");
    config.redis.url = required_env("LOGPIPE_TEST_REDIS_URL");
    config.consumer.group_protocol = test_group_protocol();
    config
}

/// The consumer group protocol of the external tests: `LOGPIPE_TEST_GROUP_PROTOCOL` (`classic`
/// or `consumer`), classic when unset, so the external suite can be run once per protocol. Tests
/// named `*_consumer_protocol` use `consumer` whatever it says.
pub fn test_group_protocol() -> GroupProtocol {
    match std::env::var("LOGPIPE_TEST_GROUP_PROTOCOL").as_deref() {
        Err(std::env::VarError::NotPresent) => GroupProtocol::Classic,
        Ok("classic") => GroupProtocol::Classic,
        Ok("consumer") => GroupProtocol::Consumer,
        other => panic!(
            "LOGPIPE_TEST_GROUP_PROTOCOL must be `classic` or `consumer` (or unset for classic), not {other:?}"
        ),
    }
}

/// Polls `check` until it returns true (or panics with `what` after `timeout`).
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts roles and waits until the gateway (or producer) says it is ready.
pub async fn start(config: Config, roles: Roles) -> App {
    // Logs to the test's captured output (shown on failure); RUST_LOG narrows or widens it.
    logpipe::telemetry::logging::init(logpipe::config::LogFormat::Text, "info");
    let app = App::start(config, roles).await.expect("app starts");
    let addr = app.gateway_addr.or(app.producer_addr).expect("a listener");
    wait_ready(&format!("http://{addr}")).await;
    app
}

/// Polls `/health/ready` until 200 (30 s at most).
pub async fn wait_ready(base: &str) {
    let ready = logpipe::http::wait_ready(base, Duration::from_secs(30)).await;
    ready.unwrap_or_else(|e| panic!("{e}"));
}

/// A record as read back from Kafka.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    /// The value as JSON (Null when it is not JSON: poison records in a DLQ).
    pub value: serde_json::Value,
    pub raw_key: Option<Vec<u8>>,
    pub raw_value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
    pub timestamp_ms: Option<i64>,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads every record of `topic` from the beginning until `expected` arrived (or 30 s passed),
/// then 300 ms more to catch extras.
pub async fn read_all(bootstrap: &str, topic: &str, expected: usize) -> Vec<Record> {
    let bootstrap = bootstrap.to_string();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", unique("it-reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader consumer");
        let metadata = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions = metadata.topics()[0].partitions().len();
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).expect("assign");
        let mut records = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut extra_until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if now > deadline || extra_until.is_some_and(|t| now > t) {
                break;
            }
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                records.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: serde_json::from_slice(m.payload().unwrap_or_default())
                        .unwrap_or(serde_json::Value::Null),
                    raw_key: m.key().map(<[u8]>::to_vec),
                    raw_value: m.payload().map(<[u8]>::to_vec),
                    headers,
                    timestamp_ms: m.timestamp().to_millis(),
                });
            }
            if records.len() >= expected && extra_until.is_none() {
                extra_until = Some(Instant::now() + Duration::from_millis(300));
            }
        }
        records
    })
    .await
    .unwrap()
}

/// The repository's root directory.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A file of the repository (`rel` from its root), read whole.
pub fn read_repo_file(rel: &str) -> String {
    let path = repo_root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The first of `names` found as a file on PATH.
pub fn on_path(names: &[&str]) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|p| p.is_file())
}

/// The external Apache Kafka cluster `scripts/test.sh` starts, or a failure that says how.
pub fn kafka_brokers() -> String {
    required_env("LOGPIPE_TEST_KAFKA_BROKERS")
}

/// The environment variable an external test needs, or a failure that says how to get it.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: this test needs an external service or tool. Run the suite with `scripts/test.sh`, \
             which installs and starts Apache Kafka, PostgreSQL and Redis, installs the Python client \
             libraries of tests/clients/requirements.txt, and sets {name}"
        )
    })
}

/// Runs `script` (Python source) with the interpreter of the client-library virtualenv that
/// `scripts/test.sh` provisions from `tests/clients/requirements.txt` (LOGPIPE_TEST_PYTHON),
/// with `args` and `env`. Returns the exit status, stdout and stderr; stderr is printed so a
/// failing test shows what the client said.
pub fn run_python(
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String, String) {
    let python = required_env("LOGPIPE_TEST_PYTHON");
    let output = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("running {python}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    eprintln!("--- python stderr ---\n{stderr}");
    (output.status, stdout, stderr)
}

/// The `logpipe` binary with no `LOGPIPE_*` variable inherited from the test environment.
pub fn logpipe() -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_logpipe"));
    for (name, _) in std::env::vars().filter(|(k, _)| k.starts_with("LOGPIPE_")) {
        command.env_remove(name);
    }
    command
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Creates the config's topics (main, DLQ, parked) on its broker.
pub async fn create_topics(config: &Config) {
    let client = logpipe::kafka::client_config(
        &config.kafka,
        &config.kafka.brokers,
        "admin",
        &Default::default(),
    );
    logpipe::kafka::admin::ensure_topics(
        &client,
        &logpipe::kafka::admin::TopicSpec::from_config(&config.kafka),
        config.kafka.request_timeout,
    )
    .await
    .expect("topics created");
}

/// `redis-cli` against `url`, returning its output (panics when it fails).
pub fn redis_cli(url: &str, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-u", url])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("redis-cli not found ({e}): run the suite with scripts/test.sh, which installs Redis"));
    assert!(
        out.status.success(),
        "redis-cli {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Redis server of the test's own, with an append-only file, so it can be stopped and started
/// again with its data.
pub struct PrivateRedis {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// With an append-only file (the data survives a restart) or without (it starts empty).
    persistent: bool,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        Self::start_with(true)
    }

    /// Without persistence: every restart starts empty, as a cache-configured Redis does.
    pub fn start_without_persistence() -> PrivateRedis {
        Self::start_with(false)
    }

    fn start_with(persistent: bool) -> PrivateRedis {
        let port = free_port();
        let mut redis = PrivateRedis {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
            persistent,
        };
        redis.resume();
        redis
    }

    /// Starts (again) on the same port and data directory.
    pub fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(if self.persistent {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "no"]
            })
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("redis-server not found ({e}): run the suite with scripts/test.sh, which installs Redis"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever answers must be this server: while it was stopped, another process may have
        // taken the port (redis-server then exits at once, unable to bind).
        std::thread::sleep(Duration::from_millis(100));
        let mut child = child;
        if let Ok(Some(status)) = child.try_wait() {
            panic!("private redis-server exited ({status}): port {} was taken by another process while it was stopped", self.port);
        }
        self.child = Some(child);
    }

    /// SIGKILL: gone at once, without flushing anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM: Redis flushes its append-only file and exits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `bytes` gzip-compressed (request bodies with `Content-Encoding: gzip`).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// The gateway's `/metrics` text.
pub async fn metrics_text(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A metric's value from the gateway's `/metrics` (0 when the series is absent).
pub async fn metric(base: &str, series: &str) -> f64 {
    metrics_text(base)
        .await
        .lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}

/// Runs one of Apache Kafka's command-line classes (`ConsumerGroupCommand`, `ConsoleConsumer`...)
/// with the jars in LOGPIPE_TEST_KAFKA_LIBS (`scripts/test.sh` sets it), and returns its output.
pub fn kafka_tool(class: &str, args: &[&str]) -> std::process::Output {
    let libs = required_env("LOGPIPE_TEST_KAFKA_LIBS");
    Command::new("java")
        .args(["-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
        .arg("-cp")
        .arg(format!("{libs}/*"))
        .arg(class)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running java {class} ({e}): is a JDK on PATH?"))
}

/// A client of the test PostgreSQL at `url`, for a test's own statements (its connection runs
/// on a task of its own).
pub async fn postgres(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to PostgreSQL at {url}: {e}"));
    tokio::spawn(connection);
    client
}

/// Commits `offsets` (partition → next offset) for `group` on `topic` without joining the group
/// (a "simple" commit, as tools that reset offsets do).
pub fn commit_offsets(brokers: &str, group: &str, topic: &str, offsets: &[(i32, i64)]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for &(partition, offset) in offsets {
        tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
            .unwrap();
    }
    consumer
        .commit(&tpl, CommitMode::Sync)
        .expect("offsets committed");
}

/// A member of `group` that owns partitions of `topic` and consumes, but never commits (a stuck
/// consumer), on the `classic` or the KIP-848 `consumer` group protocol. Leaves the group when
/// dropped.
pub struct IdleMember {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl IdleMember {
    pub fn join(brokers: &str, group: &str, topic: &str, client_id: &str, protocol: &str) -> Self {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", brokers)
            .set("group.id", group)
            .set("group.protocol", protocol)
            .set("client.id", client_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest");
        if protocol == "classic" {
            // A session the broker's minimum allows, shorter than the 45 s default.
            client.set("session.timeout.ms", "10000");
        }
        let consumer: BaseConsumer = client.create().expect("group member");
        consumer.subscribe(&[topic]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let _ = consumer.poll(Duration::from_millis(100));
            }
            consumer.unsubscribe();
            // Polls the unsubscribe through, so the member leaves now instead of timing out.
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until {
                let _ = consumer.poll(Duration::from_millis(100));
            }
        });
        IdleMember {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for IdleMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The gateway's router on an in-process producer and embedded broker, no server: tests drive
/// it with `tower::ServiceExt::oneshot`, so acceptances are real Kafka acknowledgements.
pub struct GatewayHarness {
    pub router: axum::Router,
    pub producer: Arc<logpipe::producer::Producer>,
    _broker: logpipe::kafka::embedded::EmbeddedBroker,
}

/// A [`GatewayHarness`] for the test config as `tune` leaves it.
pub async fn gateway_harness(tune: impl FnOnce(&mut Config)) -> GatewayHarness {
    use logpipe::kafka::admin::TopicSpec;
    use logpipe::producer::{Producer, ProducerMetrics, Upstream};

    let mut config = test_config("");
    tune(&mut config);
    let broker =
        logpipe::kafka::embedded::EmbeddedBroker::start(1, &TopicSpec::from_config(&config.kafka))
            .unwrap();
    let mut registry = logpipe::telemetry::metrics::new_registry();
    let metrics = ProducerMetrics::register(&mut registry);
    let producer = Arc::new(Producer::new(&config, broker.bootstrap_servers(), metrics).unwrap());
    producer.health().set(true);
    let router = logpipe::app::gateway_router(
        &config,
        Upstream::InProcess(producer.clone()),
        None,
        registry,
    );
    GatewayHarness {
        router,
        producer,
        _broker: broker,
    }
}

/// Records written to the first topic of `logpipe topics describe --json`: the sum of its
/// partitions' high watermarks.
pub fn written(described: &serde_json::Value) -> i64 {
    described[0]["partitions"]
        .as_array()
        .expect("topics describe --json lists partitions")
        .iter()
        .map(|p| p["high_watermark"].as_i64().unwrap())
        .sum()
}

/// Runs `command` with `args` to its end: exit code, stdout and stderr. Stderr is also printed,
/// so a failing test shows what the binary said.
pub fn finished(mut command: std::process::Command, args: &[&str]) -> (i32, String, String) {
    let out = command.args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("--- logpipe {args:?} stderr ---\n{stderr}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    )
}
