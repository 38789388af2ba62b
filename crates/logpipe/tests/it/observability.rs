//! Monitoring: the Prometheus and Grafana files under `deploy/` against the real tools and a
//! running logpipe.
//!
//! - promtool accepts `prometheus.yml` and `alerts.yml`, and the alert unit tests in
//!   `alerts_test.yml` pass;
//! - the Grafana dashboard is well formed and every metric it or a rule names is one logpipe's
//!   services export;
//! - a real Prometheus, configured from the shipped `prometheus.yml` and `alerts.yml`, scrapes the
//!   three services (split mode, as in production) while traffic goes through the pipeline, and
//!   answers the spec's three queries, every dashboard query and every rule expression with data.
//!   The traffic includes what the alerts watch for: a poison record and an exhausted one (DLQ),
//!   retries, a dead-letter outage (circuit open, partitions paused), lag growing behind a held
//!   key, slow records (p99), and finally a stopped consumer and producer.
//!
//! Needs `prometheus` and `promtool` (Debian's `prometheus` package), which `scripts/test.sh`
//! installs; without them these tests fail and say so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use logpipe::app::{App, Extensions, Roles};
use logpipe::config::Config;
use logpipe::consumer::steps::{Step, StepError};
use logpipe::kafka::admin::TopicSpec;
use logpipe::kafka::embedded::EmbeddedBroker;
use logpipe::model::EnrichedLog;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use crate::consumer_flow::post_all;
use crate::support::{
    eventually, free_port, metric, on_path, redis_cli, repo_root, required_env, test_config,
    unique, wait_ready,
};

/// The spec's Prometheus queries, which must work exactly as written.
const SPEC_QUERIES: [&str; 3] = [
    "rate(log_consumer_success_total[1m])",
    "histogram_quantile(0.99, rate(log_consumer_processing_time_bucket[5m]))",
    "kafka_consumer_fetch_manager_records_lag_max",
];

fn deploy(path: &str) -> PathBuf {
    repo_root().join("deploy").join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A binary of Debian's `prometheus` package, or a failure that says how to get it.
fn tool(name: &str) -> PathBuf {
    on_path(&[name]).unwrap_or_else(|| {
        panic!(
            "`{name}` is not on PATH: this test needs Debian's `prometheus` package \
                 (prometheus, promtool). Run the suite with `scripts/test.sh`, which installs it \
                 (or `apt-get install prometheus`)"
        )
    })
}

/// Runs promtool in `deploy/prometheus`; returns its output, failing with it unless it succeeded.
fn promtool(args: &[&str]) -> String {
    let out = Command::new(tool("promtool"))
        .args(args)
        .current_dir(deploy("prometheus"))
        .output()
        .expect("running promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {}: {text}", args.join(" "));
    text
}

// ------------------------------------------------------------------------------------------------
// The rule file. The count is cross-checked with promtool's and with the rules a running
// Prometheus loaded.

/// One rule of `alerts.yml`, as Prometheus reads it.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    record: Option<String>,
    alert: Option<String>,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

#[derive(serde::Deserialize)]
struct RuleGroup {
    rules: Vec<RuleDef>,
}

#[derive(serde::Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Debug, Clone)]
struct Rule {
    alert: bool,
    name: String,
    expr: String,
    def: RuleDef,
}

fn parse_rules(yaml: &str) -> Vec<Rule> {
    let file: RuleFile =
        serde_yaml_ng::from_str(yaml).unwrap_or_else(|e| panic!("alerts.yml does not parse: {e}"));
    file.groups
        .into_iter()
        .flat_map(|g| g.rules)
        .map(|def| {
            let (alert, name) = match (&def.alert, &def.record) {
                (Some(name), None) => (true, name.clone()),
                (None, Some(name)) => (false, name.clone()),
                _ => panic!("a rule must have exactly one of `alert` and `record`: {def:?}"),
            };
            let expr = def.expr.trim().to_string();
            assert!(!expr.is_empty(), "rule {name} has no expr");
            Rule {
                alert,
                name,
                expr,
                def,
            }
        })
        .collect()
}

fn shipped_rules() -> Vec<Rule> {
    parse_rules(&read(&deploy("prometheus/alerts.yml")))
}

// ------------------------------------------------------------------------------------------------
// The dashboard.

fn dashboard() -> Value {
    let path = deploy("grafana/dashboards/logpipe.json");
    serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("dashboard.panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested.iter());
        }
    }
    out
}

/// (where, PromQL) of every dashboard query: panel targets and the query variables
/// (`label_values(selector, label)` is Grafana's; its selector is the PromQL part).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for p in panels(dashboard) {
        if p["type"] == "row" {
            continue;
        }
        let title = p["title"].as_str().unwrap_or("?");
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap_or_default();
            queries.push((
                format!("panel `{title}` target {}", t["refId"]),
                expr.to_string(),
            ));
        }
    }
    for v in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if v["type"] != "query" {
            continue;
        }
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .unwrap_or_default();
        let selector = q
            .strip_prefix("label_values(")
            .and_then(|rest| rest.rsplit_once(','))
            .map_or(q, |(selector, _)| selector);
        queries.push((
            format!("variable ${}", v["name"]),
            selector.trim().to_string(),
        ));
    }
    queries
}

/// A dashboard query with Grafana's variables replaced by what a default view sends.
fn concrete(expr: &str) -> String {
    let q = expr
        .replace("$__rate_interval", "1m")
        .replace("$__range", "10m")
        .replace("$instance", ".*");
    assert!(!q.contains('$'), "unknown variable left in `{q}`");
    q
}

// ------------------------------------------------------------------------------------------------
// Metric names in PromQL: identifiers that are not functions, keywords, label names (inside
// `{}` or a `by (...)`-style list), strings, durations or numbers.

fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: &[&str] = &[
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
        "atan2",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        // Aggregations, when written `sum by (x) (...)`.
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
    ];
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // Index just past the bracket that closes the one at `start`, skipping strings.
    let skip_group = |start: usize, open: char, close: char| -> usize {
        let mut depth = 0;
        let mut j = start;
        while j < chars.len() {
            let c = chars[j];
            if c == '"' || c == '\'' || c == '`' {
                j += 1;
                while j < chars.len() && chars[j] != c {
                    if chars[j] == '\\' {
                        j += 1;
                    }
                    j += 1;
                }
            } else if c == open {
                depth += 1;
            } else if c == close {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            j += 1;
        }
        panic!("unbalanced `{open}` in `{expr}`");
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            i = skip_group(i, '{', '}');
        } else if c == '[' {
            i = skip_group(i, '[', ']');
        } else if c == '"' || c == '\'' || c == '`' {
            i = skip_group(i, c, c);
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let call = chars.get(next) == Some(&'(');
            if LABEL_LISTS.contains(&word.as_str()) && call {
                i = skip_group(next, '(', ')');
            } else if !call && !KEYWORDS.contains(&word.as_str()) {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

/// Sample names a `/metrics` text exposes, including families declared (`# TYPE`) but without
/// samples yet (labelled series appear on first use), with their sample suffixes.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(family), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "summary" => &["", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            for s in suffixes {
                names.insert(format!("{family}{s}"));
            }
        } else if !line.starts_with('#') && !line.trim().is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_string());
        }
    }
    names
}

// ------------------------------------------------------------------------------------------------
// logpipe in split mode: gateway, producer service and consumer, each with its own registry and
// /metrics, on an in-process broker (librdkafka's mock cluster) the test owns.

struct Split {
    config: Config,
    broker: EmbeddedBroker,
    gateway: Option<App>,
    producer: Option<App>,
    consumer: Option<App>,
}

impl Split {
    async fn start(steps: Vec<Arc<dyn Step>>, tweak: impl FnOnce(&mut Config)) -> Split {
        logpipe::telemetry::logging::init(logpipe::config::LogFormat::Text, "info");
        let mut config = test_config("");
        tweak(&mut config);
        let broker =
            EmbeddedBroker::start(1, &TopicSpec::from_config(&config.kafka)).expect("broker");
        config.kafka.brokers = broker.bootstrap_servers().to_string();
        // The mock cluster has no CreateTopics: the topics were made above.
        config.kafka.create_topics = false;

        let producer = App::start(config.clone(), Roles::Producer)
            .await
            .expect("producer starts");
        let producer_addr = producer.producer_addr.unwrap();
        wait_ready(&format!("http://{producer_addr}")).await;
        config.gateway.producer_url = format!("http://{producer_addr}");
        let consumer = App::start_with(config.clone(), Roles::Consumer, Extensions { steps })
            .await
            .expect("consumer starts");
        wait_ready(&format!("http://{}", consumer.consumer_addr.unwrap())).await;
        let gateway = App::start(config.clone(), Roles::Gateway)
            .await
            .expect("gateway starts");
        wait_ready(&format!("http://{}", gateway.gateway_addr.unwrap())).await;
        Split {
            config,
            broker,
            gateway: Some(gateway),
            producer: Some(producer),
            consumer: Some(consumer),
        }
    }

    fn gateway(&self) -> String {
        format!(
            "http://{}",
            self.gateway.as_ref().unwrap().gateway_addr.unwrap()
        )
    }

    fn producer(&self) -> String {
        format!(
            "http://{}",
            self.producer.as_ref().unwrap().producer_addr.unwrap()
        )
    }

    fn consumer(&self) -> String {
        format!(
            "http://{}",
            self.consumer.as_ref().unwrap().consumer_addr.unwrap()
        )
    }

    /// The three /metrics texts, concatenated.
    async fn scrape_all(&self) -> String {
        let mut all = String::new();
        for base in [self.gateway(), self.producer(), self.consumer()] {
            let text = reqwest::get(format!("{base}/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            all.push_str(&text);
            all.push('\n');
        }
        all
    }

    async fn stop(mut self) {
        for app in [
            self.gateway.take(),
            self.consumer.take(),
            self.producer.take(),
        ]
        .into_iter()
        .flatten()
        {
            app.shutdown().await.unwrap();
        }
        drop(self.broker);
    }
}

// ------------------------------------------------------------------------------------------------
// A Prometheus process on a free port with its own storage, configured from the shipped files.

struct Prometheus {
    child: Child,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The shipped prometheus.yml pointed at the test's services, scraping and evaluating every
/// second. Everything else (job names, labels, rule file) is kept as shipped.
fn test_prometheus_config(shipped: &str, targets: [(&str, String); 4]) -> String {
    let mut config = shipped.to_string();
    let mut replacements: Vec<(&str, String)> = targets.into_iter().collect();
    replacements.extend([
        ("scrape_interval: 15s", "scrape_interval: 1s".to_string()),
        ("scrape_timeout: 10s", "scrape_timeout: 1s".to_string()),
        (
            "evaluation_interval: 15s",
            "evaluation_interval: 1s".to_string(),
        ),
    ]);
    for (from, to) in replacements {
        assert_eq!(
            config.matches(from).count(),
            1,
            "deploy/prometheus/prometheus.yml should have `{from}` once"
        );
        config = config.replace(from, &to);
    }
    config
}

impl Prometheus {
    async fn start(services: &Split) -> Prometheus {
        let binary = tool("prometheus");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let addr = |base: String| base.trim_start_matches("http://").to_string();
        let config = test_prometheus_config(
            &read(&deploy("prometheus/prometheus.yml")),
            [
                ("localhost:8080", addr(services.gateway())),
                ("localhost:8081", addr(services.producer())),
                ("localhost:8082", addr(services.consumer())),
                ("localhost:9090", format!("127.0.0.1:{port}")),
            ],
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        std::fs::copy(
            deploy("prometheus/alerts.yml"),
            dir.path().join("alerts.yml"),
        )
        .unwrap();
        let log = dir.path().join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.retention.time=1h")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("prometheus.err")).unwrap())
            .spawn()
            .expect("starting prometheus");
        let mut prometheus = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: dir.path().join("prometheus.err"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}/-/ready", prometheus.base)).await {
                if r.status().is_success() {
                    break;
                }
            }
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!("prometheus exited ({status}): {}", prometheus.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready after 30 s: {}",
                prometheus.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        prometheus
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let body: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/{path}", self.base))
            .query(params)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{path} {params:?}: {body}");
        body["data"].clone()
    }

    /// An instant query's result vector.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("query", &[("query", expr)]).await;
        assert_eq!(data["resultType"], "vector", "`{expr}`: {data}");
        data["result"].as_array().unwrap().clone()
    }

    /// Polls `expr` until it returns data (at most `timeout`); for quantiles, until some value
    /// is a number (not NaN, which is what a quantile of no observations gives).
    async fn data(&self, what: &str, expr: &str, timeout: Duration) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        let numeric = expr.contains("histogram_quantile");
        loop {
            let result = self.query(expr).await;
            let ok = !result.is_empty()
                && (!numeric
                    || result.iter().any(|s| {
                        s["value"][1]
                            .as_str()
                            .and_then(|v| v.parse::<f64>().ok())
                            .is_some_and(f64::is_finite)
                    }));
            if ok {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: `{expr}` returned no data within {timeout:?} (last: {result:?})\nprometheus log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// An instant query's result vector at `time` (Unix seconds).
    async fn query_at(&self, expr: &str, time: f64) -> Vec<Value> {
        let time = format!("{time:.3}");
        let data = self
            .api("query", &[("query", expr), ("time", time.as_str())])
            .await;
        data["result"].as_array().unwrap().clone()
    }

    /// The first instant since `since` (Unix seconds) at which `expr` had data, waiting up to
    /// 20 s for the scrapes to show it.
    async fn first_time(&self, expr: &str, since: f64) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (start, end) = (format!("{since:.3}"), format!("{:.3}", unix_now()));
            let data = self
                .api(
                    "query_range",
                    &[
                        ("query", expr),
                        ("start", &start),
                        ("end", &end),
                        ("step", "0.25"),
                    ],
                )
                .await;
            let first = data["result"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|series| series["values"][0][0].as_f64())
                .reduce(f64::min);
            if let Some(t) = first {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "`{expr}` had no data since {since}"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Every loaded rule (name, type, query, health, lastError).
    async fn rules(&self) -> Vec<Value> {
        let data = self.api("rules", &[]).await;
        data["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .collect()
    }
}

// ------------------------------------------------------------------------------------------------
// Traffic and failure injection.

/// Fails every attempt of records whose message contains `marker`, and holds the last attempt
/// until released: the record's key waits behind it (lag grows), then it goes to the DLQ as
/// `exhausted`.
struct Hold {
    marker: String,
    attempts: AtomicU32,
    released: AtomicBool,
    last_attempt: u32,
}

impl Step for Hold {
    fn name(&self) -> &str {
        "hold"
    }

    fn run<'a>(&'a self, log: &'a EnrichedLog) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(async move {
            if !log.event.message.as_str().contains(&self.marker) {
                return Ok(());
            }
            let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
            if n >= self.last_attempt {
                while !self.released.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Err(StepError::retryable(format!("held, attempt {n}")))
        })
    }
}

/// Posts a batch of valid events (one per service) and one invalid event every 200 ms until
/// stopped. `pause` holds the lock between posts, so nothing is produced while it is held.
struct Traffic {
    stop: Arc<AtomicBool>,
    lock: Arc<tokio::sync::Mutex<()>>,
    task: tokio::task::JoinHandle<()>,
}

const SERVICES: usize = 12;

fn event(service: &str, message: &str) -> Value {
    json!({"service": service, "level": "INFO", "message": message})
}

impl Traffic {
    fn start(base: String, run: String) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let (s, l) = (stop.clone(), lock.clone());
        let task = tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut n = 0u64;
            while !s.load(Ordering::SeqCst) {
                {
                    let _posting = l.lock().await;
                    let batch: Vec<Value> = (0..SERVICES)
                        .map(|i| {
                            n += 1;
                            let level = ["INFO", "WARN", "ERROR"][i % 3];
                            json!({"service": format!("{run}-svc-{i}"), "level": level,
                                   "message": format!("request {n} took {} ms", n % 97)})
                        })
                        .collect();
                    // Failures (503 once the producer is stopped) are what the gateway panels
                    // and the error alert are about; the loop carries on.
                    let _ = client
                        .post(format!("{base}/api/v1/logs/batch"))
                        .json(&batch)
                        .send()
                        .await;
                    // Invalid (no message): a 400 and a rejection reason on the gateway.
                    let _ = client
                        .post(format!("{base}/api/v1/logs"))
                        .json(&json!({"service": format!("{run}-svc-0")}))
                        .send()
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Traffic { stop, lock, task }
    }

    async fn pause(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
    }
}

async fn produce_raw(bootstrap: &str, topic: &str, key: &[u8], value: &[u8]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
}

// ------------------------------------------------------------------------------------------------
// Tests.

#[test]
fn promtool_accepts_the_config_and_rules_and_the_alert_unit_tests_pass() {
    let out = promtool(&["check", "config", "prometheus.yml"]);
    assert!(out.contains("SUCCESS: 1 rule files found"), "{out}");

    let out = promtool(&["check", "rules", "alerts.yml"]);
    let rules = shipped_rules();
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "promtool and this test's reading of alerts.yml disagree on the rule count ({}): {out}",
        rules.len()
    );

    let out = promtool(&["test", "rules", "alerts_test.yml"]);
    assert!(out.contains("SUCCESS"), "{out}");

    // Every alert is unit-tested, waits before firing, and says how bad and what to do.
    let tests = read(&deploy("prometheus/alerts_test.yml"));
    let alerts: Vec<&Rule> = rules.iter().filter(|r| r.alert).collect();
    for name in [
        "LogpipeConsumerLagGrowing",
        "LogpipeDeadLetterRecords",
        "LogpipeConsumerDown",
        "LogpipeProcessingLatencyHigh",
    ] {
        assert!(
            alerts.iter().any(|a| a.name == name),
            "alert {name} missing"
        );
    }
    for alert in alerts {
        let name = &alert.name;
        assert!(
            tests.contains(&format!(
                "alertname: {name}\n        exp_alerts:\n          - "
            )),
            "{name}: no promtool test where it fires"
        );
        assert!(alert.def.for_.is_some(), "{name}: no `for:`");
        assert!(
            alert.def.labels.contains_key("severity"),
            "{name}: no `severity` label"
        );
        for key in ["summary", "description"] {
            assert!(
                alert.def.annotations.contains_key(key),
                "{name}: no `{key}` annotation"
            );
        }
    }
}

#[test]
fn promql_metric_names_skip_functions_labels_strings_and_durations() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route=~"x{1}", le!="b"}[5m] offset 1h))) / on(instance) group_left(job) b > bool 0.5 and max without (x) (logpipe:x:y)"#,
    );
    let expected: BTreeSet<String> = ["a_bucket", "b", "logpipe:x:y"].map(String::from).into();
    assert_eq!(names, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_well_formed_and_uses_only_metrics_logpipe_exports() {
    let dashboard = dashboard();
    assert!(dashboard["schemaVersion"].as_u64().unwrap() >= 36);
    assert!(!dashboard["uid"].as_str().unwrap().is_empty());
    let variables: BTreeMap<&str, &Value> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    assert_eq!(variables["datasource"]["type"], "datasource");
    assert_eq!(variables["datasource"]["query"], "prometheus");
    assert_eq!(variables["instance"]["type"], "query");

    let mut ids = BTreeSet::new();
    let mut titles = BTreeSet::new();
    for p in panels(&dashboard) {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {p}");
        assert!(ids.insert(p["id"].as_u64().unwrap()), "duplicate id: {p}");
        let pos = &p["gridPos"];
        let (x, w, h) = (
            pos["x"].as_u64().unwrap(),
            pos["w"].as_u64().unwrap(),
            pos["h"].as_u64().unwrap(),
        );
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: gridPos {pos}");
        if p["type"] == "row" {
            continue;
        }
        assert!(
            titles.insert(format!("{title}/{}", p["type"])),
            "duplicate panel {title}"
        );
        assert_eq!(
            p["datasource"]["uid"], "${datasource}",
            "{title}: uses the datasource variable"
        );
        let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        assert!(!targets.is_empty(), "panel {title} has no targets");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(
                !t["expr"].as_str().unwrap_or_default().trim().is_empty(),
                "{title}: empty target"
            );
            assert!(
                refs.insert(t["refId"].as_str().unwrap()),
                "{title}: duplicate refId"
            );
        }
    }
    // The spec's panels are there.
    let all_exprs: String = dashboard_queries(&dashboard)
        .into_iter()
        .map(|(_, q)| q + "\n")
        .collect();
    for needle in [
        "log_consumer_success_total",
        "log_consumer_partition_lag",
        "histogram_quantile(0.5, sum by (le) (rate(log_consumer_processing_time_bucket",
        "histogram_quantile(0.95, sum by (le) (rate(log_consumer_processing_time_bucket",
        "histogram_quantile(0.99, sum by (le) (rate(log_consumer_processing_time_bucket",
        "log_consumer_dlq_records_total",
        "log_consumer_rebalance_events_total",
        "gateway_http_requests_total",
        "log_producer_sent_total",
    ] {
        assert!(
            all_exprs.contains(needle),
            "no dashboard query uses {needle}"
        );
    }

    // Provisioning: the datasource is Prometheus, the dashboards provider reads files.
    let datasource = read(&deploy("grafana/provisioning/datasources/prometheus.yml"));
    assert!(datasource.contains("apiVersion: 1") && datasource.contains("type: prometheus"));
    let provider = read(&deploy("grafana/provisioning/dashboards/logpipe.yml"));
    assert!(provider.contains("apiVersion: 1") && provider.contains("type: file"));

    // Every metric a query or a rule names is exported by one of the services.
    let services = Split::start(Vec::new(), |_| {}).await;
    let exported = exported_names(&services.scrape_all().await);
    let rules = shipped_rules();
    let recorded: BTreeSet<&str> = rules
        .iter()
        .filter(|r| !r.alert)
        .map(|r| r.name.as_str())
        .collect();
    let mut queries = dashboard_queries(&dashboard);
    queries.extend(
        rules
            .iter()
            .map(|r| (format!("rule {}", r.name), r.expr.clone())),
    );
    queries.extend(SPEC_QUERIES.map(|q| ("the spec".to_string(), q.to_string())));
    let mut missing = Vec::new();
    for (place, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{place}: no metric in `{expr}`");
        for name in names {
            // `up` is Prometheus' own, per target.
            if name != "up" && !recorded.contains(name.as_str()) && !exported.contains(&name) {
                missing.push(format!("{place}: `{name}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics no service exports:\n{}",
        missing.join("\n")
    );
    services.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_answers_the_spec_dashboard_and_alert_queries_from_the_running_services() {
    tool("prometheus");
    let run = unique("obs");
    let held_service = format!("{run}-svc-0");
    let hold = Arc::new(Hold {
        marker: format!("{run} hold me"),
        attempts: AtomicU32::new(0),
        released: AtomicBool::new(false),
        last_attempt: 4,
    });
    let mut services = Split::start(vec![hold.clone() as Arc<dyn Step>], |c| {
        // The spec's schedule, faster: 0, 0.2, 0.4, 0.8 s. The held attempt may take long.
        c.retry.base = Duration::from_millis(200);
        c.retry.attempt_timeout = Duration::from_secs(300);
        // Redis, so the consumer runs its reconciler (the aggregates alert needs one).
        c.redis.url = required_env("LOGPIPE_TEST_REDIS_URL");
    })
    .await;
    let gateway = services.gateway();
    let consumer = services.consumer();
    let prometheus = Prometheus::start(&services).await;

    // Every shipped rule is loaded, by the same names this test reads.
    let shipped = shipped_rules();
    let loaded = prometheus.rules().await;
    let loaded_names: BTreeSet<&str> = loaded.iter().map(|r| r["name"].as_str().unwrap()).collect();
    let shipped_names: BTreeSet<&str> = shipped.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(loaded_names, shipped_names, "rules loaded by Prometheus");
    let mut answered: BTreeSet<String> = BTreeSet::new();
    let rule_query = |name: &str| -> String {
        loaded
            .iter()
            .find(|r| r["name"] == name)
            .and_then(|r| r["query"].as_str())
            .unwrap_or_else(|| panic!("rule {name} not loaded"))
            .to_string()
    };

    let traffic = Traffic::start(gateway.clone(), run.clone());

    // A poison record straight to the topic: the DLQ (class poison) and failure metrics move.
    produce_raw(
        &services.config.kafka.brokers,
        &services.config.kafka.topic,
        b"poison",
        b"\xde\xad\xbe\xef not an event",
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the poison record dead-lettered",
        || async {
            metric(
                &consumer,
                "log_consumer_dlq_records_total{class=\"poison\"}",
            )
            .await
                == 1.0
        },
    )
    .await;

    // A record of svc-0 that fails every attempt (retries), its last attempt held: svc-0's
    // records queue behind it and its partition's commit point stays put, so lag grows.
    post_all(&gateway, &[event(&held_service, &hold.marker)], 200).await;
    eventually(
        Duration::from_secs(30),
        "the held record's last attempt",
        || async { hold.attempts.load(Ordering::SeqCst) >= hold.last_attempt },
    )
    .await;
    let behind: Vec<Value> = (0..1500)
        .map(|i| event(&held_service, &format!("{run} behind the held record {i}")))
        .collect();
    post_all(&gateway, &behind, 200).await;
    let lag_alert = rule_query("LogpipeConsumerLagGrowing");
    prometheus
        .data(
            "lag growing behind a held key",
            &lag_alert,
            Duration::from_secs(60),
        )
        .await;
    answered.insert("LogpipeConsumerLagGrowing".into());
    for q in [
        "logpipe:consumer_lag:sum",
        "kafka_consumer_fetch_manager_records_lag_max",
    ] {
        prometheus.data("lag", q, Duration::from_secs(10)).await;
    }

    // The dead-letter topic fails writes for a while with an error that is not a refusal for good
    // (the broker's UNKNOWN_SERVER_ERROR; nothing else produces meanwhile): the DLQ circuit opens
    // and the partitions pause, then the held record goes through as `exhausted` and svc-0's
    // backlog is processed, late (p99 up).
    let accepted_before;
    {
        let _paused = traffic.pause().await;
        services
            .broker
            .with_cluster(|c| {
                c.request_errors(
                    RDKafkaApiKey::Produce,
                    &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN; 4],
                )
            })
            .unwrap();
        let outage_start = unix_now();
        hold.released.store(true, Ordering::SeqCst);
        eventually(
            Duration::from_secs(60),
            "the held record dead-lettered",
            || async {
                metric(
                    &consumer,
                    "log_consumer_dlq_records_total{class=\"exhausted\"}",
                )
                .await
                    == 1.0
            },
        )
        .await;
        accepted_before = metric(
            &gateway,
            r#"gateway_events_accepted_total{protocol="logpipe"}"#,
        )
        .await;
        // The outage lasted a few seconds, so a few scrapes saw the circuit open: the outage
        // alert's expression has data at those instants.
        let open_at = prometheus
            .first_time(
                r#"log_consumer_circuit_state{dependency="dlq"} == 1"#,
                outage_start,
            )
            .await;
        let outage = rule_query("LogpipeDependencyOutage");
        let result = prometheus.query_at(&outage, open_at).await;
        assert!(!result.is_empty(), "`{outage}` at {open_at}: no data");
        answered.insert("LogpipeDependencyOutage".into());
    }
    eventually(Duration::from_secs(60), "the backlog processed", || async {
        // Everything the gateway accepted is stored, but the held record (dead-lettered).
        metric(&consumer, "log_consumer_success_total").await >= accepted_before - 1.0
    })
    .await;
    assert!(metric(&consumer, "log_consumer_retries_total").await >= 3.0);
    assert!(
        metric(
            &consumer,
            "log_consumer_partition_pauses_total{reason=\"outage\"}"
        )
        .await
            >= 1.0
    );

    // Every target is up and every rule evaluates without error.
    let targets = prometheus.api("targets", &[("state", "active")]).await;
    let active = targets["activeTargets"].as_array().unwrap();
    assert_eq!(active.len(), 4, "{targets}");
    for t in active {
        assert_eq!(t["health"], "up", "{t}");
    }
    for r in prometheus.rules().await {
        assert_eq!(r["health"], "ok", "{r}");
    }

    // The spec's queries, verbatim.
    for q in SPEC_QUERIES {
        let result = prometheus
            .data("spec query", q, Duration::from_secs(30))
            .await;
        eprintln!("{q} => {}", Value::Array(result));
    }
    // Every dashboard query, as Grafana sends it for the default view.
    for (place, expr) in dashboard_queries(&dashboard()) {
        prometheus
            .data(&place, &concrete(&expr), Duration::from_secs(30))
            .await;
    }
    // Every recording rule, as recorded and as written.
    for rule in shipped.iter().filter(|r| !r.alert) {
        prometheus
            .data(&rule.name, &rule.name, Duration::from_secs(30))
            .await;
        prometheus
            .data(&rule.name, &rule_query(&rule.name), Duration::from_secs(30))
            .await;
        answered.insert(rule.name.clone());
    }
    for name in ["LogpipeDeadLetterRecords", "LogpipeProcessingLatencyHigh"] {
        prometheus
            .data(name, &rule_query(name), Duration::from_secs(30))
            .await;
        answered.insert(name.into());
    }
    // Prometheus' own alerting picked the DLQ alert up (pending until its `for:` has passed).
    // The aggregates lose their watermarks while a minute key in the rebuild's window holds
    // something that is not a hash (30 h back: outside the stats API's 24 h, inside the 2-day
    // window): every rebuild fails, and the rebuild alert's expression has data after two.
    let prefix = services.config.redis.key_prefix.clone();
    let redis_url = services.config.redis.url.clone();
    let minute = (unix_now() as i64 - 30 * 3600).div_euclid(60) * 60;
    let broken = format!("{prefix}:m:{minute}:sl");
    redis_cli(&redis_url, &["SET", &broken, "not a hash"]);
    let unlink =
        "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 0";
    redis_cli(
        &redis_url,
        &["EVAL", unlink, "0", &format!("{prefix}:wm:*")],
    );
    prometheus
        .data(
            "rebuilds failing",
            &rule_query("LogpipeAggregatesRebuildFailing"),
            Duration::from_secs(120),
        )
        .await;
    answered.insert("LogpipeAggregatesRebuildFailing".into());
    assert!(metric(&consumer, "log_consumer_aggregate_losses_total").await >= 1.0);
    redis_cli(&redis_url, &["DEL", &broken]);

    let alerts = prometheus.api("alerts", &[]).await;
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["labels"]["alertname"] == "LogpipeDeadLetterRecords"),
        "{alerts}"
    );

    // The consumer stops: its target goes down. Then the producer service: the gateway answers
    // 503 to the ongoing traffic.
    services.consumer.take().unwrap().shutdown().await.unwrap();
    prometheus
        .data(
            "consumer down",
            &rule_query("LogpipeConsumerDown"),
            Duration::from_secs(30),
        )
        .await;
    answered.insert("LogpipeConsumerDown".into());
    services.producer.take().unwrap().shutdown().await.unwrap();
    for name in ["LogpipeServiceDown", "LogpipeGatewayErrors"] {
        prometheus
            .data(name, &rule_query(name), Duration::from_secs(60))
            .await;
        answered.insert(name.into());
    }

    let unanswered: Vec<&str> = shipped_names
        .iter()
        .copied()
        .filter(|n| !answered.contains(*n))
        .collect();
    assert!(
        unanswered.is_empty(),
        "rules never evaluated with data: {unanswered:?}"
    );
    traffic.stop().await;
    drop(prometheus);
    services.stop().await;
}
