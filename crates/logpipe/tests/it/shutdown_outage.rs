//! Shutdown while a store is down: the consumer cannot finish its batch (Redis is gone), so
//! nothing is committed, but SIGTERM-style shutdown still completes within the drain bound
//! instead of retrying forever. Runs its own Redis (the `redis-server` binary that
//! `scripts/test.sh` installs) so stopping it disturbs no other test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use logpipe::app::Roles;
use serde_json::json;

use crate::consumer_flow::post_all;
use crate::support::{eventually, start, test_config};

struct PrivateRedis(Child);

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn private_redis() -> (PrivateRedis, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("redis-server not found ({e}): run the suite with scripts/test.sh, which installs Redis"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "private redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (PrivateRedis(child), port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_an_aggregates_outage_is_bounded() {
    let (mut redis, port) = private_redis();
    let mut config = test_config("");
    config.redis.url = format!("redis://127.0.0.1:{port}");
    config.consumer.drain_timeout = Duration::from_secs(3);
    config.consumer.session_timeout = Duration::from_secs(10);
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let stats = app.consumer_stats.clone().unwrap();
    let events: Vec<_> = (0..200)
        .map(|i| json!({"service": "outage", "message": format!("m{i}")}))
        .collect();
    assert_eq!(post_all(&base, &events, 100).await, 200);
    eventually(Duration::from_secs(30), "the first events stored", || {
        let stats = stats.clone();
        async move { stats.stored() >= 200 }
    })
    .await;

    // Redis goes away; new events are stored in SQLite but cannot be counted, so the writer
    // retries the batch and commits nothing.
    let _ = redis.0.kill();
    let _ = redis.0.wait();
    assert_eq!(post_all(&base, &events, 100).await, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(30), app.shutdown())
        .await
        .expect("shutdown finished")
        .unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(12),
        "shutdown took {took:?}; it must be bounded by the drain timeout (3 s) plus the flush"
    );
}
