//! Shutdown while a store is down: the consumer cannot finish its batch (Redis is gone), so
//! nothing is committed, but SIGTERM-style shutdown still completes within the drain bound
//! instead of retrying forever. Runs its own Redis (the `redis-server` binary that
//! `scripts/test.sh` installs) so stopping it disturbs no other test.

use std::time::{Duration, Instant};

use logpipe::app::Roles;
use serde_json::json;

use crate::consumer_flow::post_all;
use crate::support::{eventually, start, test_config, PrivateRedis};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_during_an_aggregates_outage_is_bounded() {
    let mut redis = PrivateRedis::start();
    let mut config = test_config("");
    config.redis.url = format!("redis://127.0.0.1:{}", redis.port);
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
    redis.kill();
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
