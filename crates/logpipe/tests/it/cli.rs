//! The `logpipe` binary as users run it: help texts, `config check` (validation and redaction),
//! and `logpipe run` serving on the embedded broker and stopping cleanly on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::logpipe;

fn output(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = logpipe()
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_roles_and_tools() {
    let (code, stdout, _) = output(&["--help"], &[]);
    assert_eq!(code, 0);
    for word in [
        "gateway",
        "producer",
        "run",
        "topics",
        "config",
        "--kafka-brokers",
        "--postgres-url",
        "--redis-url",
        "--config",
    ] {
        assert!(stdout.contains(word), "--help lacks {word}:\n{stdout}");
    }
    // Every subcommand clap knows, at every depth, so a new one cannot ship without help.
    fn walk(command: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
        for sub in command.get_subcommands() {
            let mut p = path.clone();
            p.push(sub.get_name().to_string());
            out.push(p.clone());
            walk(sub, p, out);
        }
    }
    let mut paths = Vec::new();
    walk(
        &<logpipe::cli::Cli as clap::CommandFactory>::command(),
        Vec::new(),
        &mut paths,
    );
    for expected in [
        "consumer",
        "demo",
        "loadgen",
        "lag",
        "dlq",
        "migrate",
        "aggregates",
    ] {
        assert!(
            paths.iter().any(|p| p[0] == expected),
            "{expected} missing from {paths:?}"
        );
    }
    for sub in paths
        .iter()
        .filter(|p| p[0] != "help" && p.last().unwrap() != "help")
    {
        let mut args: Vec<&str> = sub.iter().map(String::as_str).collect();
        args.push("--help");
        let (code, stdout, stderr) = output(&args, &[]);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(stdout.len() > 200, "{args:?} help is too thin:\n{stdout}");
    }
}

#[test]
fn config_check_prints_effective_config_with_secrets_redacted() {
    let (code, stdout, stderr) = output(
        &[
            "config",
            "check",
            "--postgres-url",
            "postgres://app:hunter2@db/logs",
            "--set",
            "producer.linger=20ms",
        ],
        &[
            ("LOGPIPE_REDIS_URL", "redis://:topsecret@cache:6379"),
            ("LOGPIPE_KAFKA_PROPERTY_SASL_PASSWORD", "pw-123"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("topsecret") && !stdout.contains("pw-123"),
        "{stdout}"
    );
    assert!(
        stdout.contains("postgres://app:<redacted>@db/logs"),
        "{stdout}"
    );
    assert!(stdout.contains("linger = \"20ms\""), "{stdout}");
    assert!(stdout.contains("EMBEDDED"), "{stdout}");
    assert!(stdout.contains("config OK"));

    let (code, stdout, _) = output(&["config", "check", "--env"], &[]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("LOGPIPE_KAFKA_BROKERS")
            && stdout.contains("LOGPIPE_GATEWAY_MAX_BATCH_EVENTS")
    );
}

#[test]
fn set_reaches_a_quoted_librdkafka_property_and_redacts_a_secret_one() {
    let (code, stdout, stderr) = output(
        &[
            "config",
            "check",
            "--set",
            "consumer.properties.\"fetch.wait.max.ms\"=10",
            "--set",
            "kafka.properties.\"sasl.password\"=pw-from-set",
        ],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("\"fetch.wait.max.ms\" = \"10\""),
        "{stdout}"
    );
    assert!(!stdout.contains("pw-from-set"), "{stdout}");
    assert!(
        stdout.contains("\"sasl.password\" = \"<redacted>\""),
        "{stdout}"
    );

    // Unquoted, the property name would be split on its dots: refused with the fix.
    let (code, _, stderr) = output(
        &[
            "config",
            "check",
            "--set",
            "consumer.properties.fetch.wait.max.ms=10",
        ],
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        stderr.contains("quote them, e.g. consumer.properties.\"fetch.wait.max.ms\"=VALUE"),
        "{stderr}"
    );
}

#[test]
fn bad_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[gateway]\nmax_batch_evnts = 5\n").unwrap();
    let (code, _, stderr) = output(
        &["--config", path.to_str().unwrap(), "config", "check"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("gateway.max_batch_evnts"), "{stderr}");

    let (code, _, stderr) = output(
        &["config", "check"],
        &[("LOGPIPE_PRODUCER_COMPRESION", "zstd")],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("LOGPIPE_PRODUCER_COMPRESION"), "{stderr}");

    let (code, _, stderr) = output(
        &["config", "check", "--set", "producer.compression=brotli"],
        &[],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("producer.compression"), "{stderr}");
}

#[test]
fn topics_commands_need_brokers_and_say_so() {
    let (code, _, stderr) = output(&["topics", "describe"], &[]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--kafka-brokers"), "{stderr}");
}

#[test]
fn aggregates_commands_need_redis_and_a_store_and_say_so() {
    for command in ["verify", "rebuild"] {
        let (code, _, stderr) = output(&["aggregates", command], &[]);
        assert_eq!(code, 1, "{command}: {stderr}");
        assert!(
            stderr.contains("in-process") && stderr.contains("--redis-url"),
            "{command}: {stderr}"
        );
        let (code, _, stderr) = output(
            &["aggregates", command, "--redis-url", "redis://127.0.0.1:1"],
            &[],
        );
        assert_eq!(code, 1, "{command}: {stderr}");
        assert!(stderr.contains("--postgres-url"), "{command}: {stderr}");
    }
}

#[tokio::test]
async fn run_serves_on_the_embedded_broker_and_exits_0_on_sigterm() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = logpipe()
        .args(["run", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    crate::support::wait_ready(&base).await;
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/logs"))
        .json(&serde_json::json!({"service": "cli", "level": "INFO", "message": "hello from the CLI test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);

    let started = Instant::now();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "logpipe run did not stop within 30 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit status {status}: {stderr}");
    assert!(
        stderr.contains("EMBEDDED"),
        "startup says the broker is embedded:\n{stderr}"
    );
    assert!(stderr.contains("NOTHING across restarts"), "{stderr}");
}

#[test]
fn config_check_json_is_machine_readable_and_redacted() {
    let (code, stdout, stderr) = output(
        &["config", "check", "--json"],
        &[("LOGPIPE_POSTGRES_URL", "postgres://app:hunter2@db/logs")],
    );
    assert_eq!(code, 0, "{stderr}");
    let config: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(config["kafka"]["topic"], "application-logs");
    assert_eq!(config["retry"]["attempts"], 4);
    assert!(!stdout.contains("hunter2"), "{stdout}");
}
