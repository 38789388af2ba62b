//! The operator scripts against a running stack: `scripts/load-test.sh` (the spec's 1000-event
//! load test) and `scripts/test-consumer-flow.sh` (events into PostgreSQL and Redis, a poison
//! record into the DLQ) pass against `logpipe run` on the external services, and fail (non-zero)
//! when what they find does not match.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{free_port, required_env, unique};

struct Stack {
    child: Child,
    gateway: String,
    env: Vec<(String, String)>,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// `logpipe run` as its own process on the external services, with names of its own.
fn start_stack() -> Stack {
    let id = unique("scr").replace('-', "_");
    let env: Vec<(String, String)> = vec![
        (
            "LOGPIPE_KAFKA_BROKERS",
            required_env("LOGPIPE_TEST_KAFKA_BROKERS"),
        ),
        (
            "LOGPIPE_POSTGRES_URL",
            required_env("LOGPIPE_TEST_POSTGRES_URL"),
        ),
        ("LOGPIPE_REDIS_URL", required_env("LOGPIPE_TEST_REDIS_URL")),
        ("LOGPIPE_KAFKA_TOPIC", format!("{id}_logs")),
        ("LOGPIPE_KAFKA_DLQ_TOPIC", format!("{id}_dlq")),
        ("LOGPIPE_KAFKA_PARKED_TOPIC", format!("{id}_parked")),
        ("LOGPIPE_POSTGRES_SCHEMA", id.clone()),
        ("LOGPIPE_REDIS_KEY_PREFIX", id.clone()),
        ("LOGPIPE_CONSUMER_GROUP_ID", format!("{id}_group")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (gateway, producer, consumer) = (free_port(), free_port(), free_port());
    let child = Command::new(env!("CARGO_BIN_EXE_logpipe"))
        .arg("run")
        .args(["--set", &format!("gateway.listen=127.0.0.1:{gateway}")])
        .args(["--set", &format!("producer.listen=127.0.0.1:{producer}")])
        .args(["--set", &format!("consumer.listen=127.0.0.1:{consumer}")])
        .envs(env.iter().cloned())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("logpipe run starts");
    let gateway = format!("http://127.0.0.1:{gateway}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = Command::new("curl")
            .args([
                "-fsS",
                "-o",
                "/dev/null",
                &format!("{gateway}/health/ready"),
            ])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "the stack did not become ready");
        std::thread::sleep(Duration::from_millis(200));
    }
    Stack {
        child,
        gateway,
        env,
    }
}

fn script(stack: &Stack, name: &str, extra: &[(&str, &str)]) -> (bool, String) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let output = Command::new("bash")
        .arg(format!("{root}/scripts/{name}"))
        .envs(stack.env.iter().cloned())
        .env("GATEWAY", &stack.gateway)
        .env("LOGPIPE", env!("CARGO_BIN_EXE_logpipe"))
        .envs(extra.iter().copied())
        .output()
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn external_operator_scripts_pass_against_a_running_stack_and_fail_on_a_mismatch() {
    let stack = start_stack();

    let (ok, out) = script(&stack, "load-test.sh", &[]);
    assert!(ok, "load-test.sh failed:\n{out}");
    assert!(
        out.contains("PASS: 1000 events accepted and stored"),
        "{out}"
    );
    assert!(out.contains("end-to-end p50/p95/p99"), "{out}");

    let (ok, out) = script(&stack, "test-consumer-flow.sh", &[]);
    assert!(ok, "test-consumer-flow.sh failed:\n{out}");
    assert!(out.contains("poison, invalid_json"), "{out}");

    // Checking the wrong schema: the rows are not there, so the script must fail.
    let (ok, out) = script(
        &stack,
        "test-consumer-flow.sh",
        &[("LOGPIPE_POSTGRES_SCHEMA", "public"), ("TIMEOUT", "3")],
    );
    assert!(!ok, "a mismatch must fail the script:\n{out}");
    assert!(out.contains("FAIL"), "{out}");

    // The load test fails when the consumer's metrics are not where it looks.
    let (ok, out) = script(
        &stack,
        "load-test.sh",
        &[("EVENTS", "50"), ("METRICS", "none")],
    );
    assert!(!ok, "no consumer figures must fail the load test:\n{out}");
}
