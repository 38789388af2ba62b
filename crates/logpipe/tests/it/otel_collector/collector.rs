//! The Collector as a child process of a test: started with a generated config, ready when its
//! health_check extension says so, killed on drop; and the documented snippets its configs are
//! built from.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{free_port, required_env};

/// A running Collector, killed (and reaped) on drop; its output goes to a file in its folder.
pub struct Collector {
    child: Child,
    output: PathBuf,
    _dir: tempfile::TempDir,
}

impl Collector {
    /// Starts the Collector with `config` (JSON is YAML, which its file provider reads) and
    /// `env`, adding a health_check extension on a free port, and waits until it reports ready,
    /// i.e. every receiver listens and every exporter started.
    pub async fn start(mut config: Value, env: &[(&str, &str)]) -> Collector {
        let binary = collector_binary();
        let health = free_port();
        config["extensions"] = json!({"health_check": {"endpoint": format!("127.0.0.1:{health}")}});
        config["service"]["extensions"] = json!(["health_check"]);
        // No metrics server: its default :8888 would clash between Collectors run in parallel.
        config["service"]["telemetry"] = json!({"metrics": {"level": "none"}});
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let output = dir.path().join("output.log");
        let log = std::fs::File::create(&output).unwrap();
        let child = Command::new(&binary)
            .arg(format!("--config=file:{}", file.display()))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {binary}: {e}"));
        let mut collector = Collector {
            child,
            output,
            _dir: dir,
        };
        let url = format!("http://127.0.0.1:{health}/");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = collector.child.try_wait().unwrap() {
                panic!("the Collector exited ({status}):\n{}", collector.output());
            }
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return collector;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the Collector was not ready in 30 s:\n{}",
                collector.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails on a warning or error the Collector logged: a deprecated key or component name in
    /// a documented snippet, or an export that failed and was retried.
    pub fn assert_no_warnings(&self) {
        let output = self.output();
        let bad: Vec<&str> = output
            .lines()
            .filter(|l| l.contains("\twarn\t") || l.contains("\terror\t"))
            .collect();
        assert!(bad.is_empty(), "the Collector warned:\n{}", bad.join("\n"));
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- Collector output ---\n{}", self.output());
        }
    }
}

/// The first ```yaml block of `doc` (a repository file) holding `marker`, parsed.
pub fn yaml_snippet(doc: &str, marker: &str) -> Value {
    let text = crate::support::read_repo_file(doc);
    let block = text
        .split("```yaml\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .find(|block| block.contains(marker))
        .unwrap_or_else(|| panic!("no yaml block with {marker:?} in {doc}"));
    serde_yaml_ng::from_str(block).unwrap_or_else(|e| panic!("{doc}: {e}\n{block}"))
}

/// An OTLP receiver on a free 127.0.0.1 port, HTTP only; returns it and its logs URL.
pub fn otlp_receiver() -> (Value, String) {
    let port = free_port();
    let receiver = json!({"protocols": {"http": {"endpoint": format!("127.0.0.1:{port}")}}});
    (receiver, format!("http://127.0.0.1:{port}/v1/logs"))
}

/// LOGPIPE_TEST_OTELCOL, or a failure that says how to build it.
pub fn collector_binary() -> String {
    let binary = required_env("LOGPIPE_TEST_OTELCOL");
    assert!(
        Path::new(&binary).is_file(),
        "LOGPIPE_TEST_OTELCOL={binary} does not exist: build it with \
         `source scripts/lib/services.sh; source scripts/lib/otelcol.sh; ensure_otelcol` \
         (scripts/test.sh does)"
    );
    binary
}
