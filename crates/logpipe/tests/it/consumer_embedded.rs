//! The consumer on embedded defaults (mock cluster, SQLite, in-process aggregates).

use logpipe::app::Roles;
use serde_json::{json, Value};

use crate::consumer_flow::exactly_once_flow;
use crate::support::{read_all, start, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_events_become_exactly_one_row_each_and_exact_aggregates() {
    exactly_once_flow(test_config("")).await;
}

/// The embedded broker (librdkafka's mock cluster) deletes the oldest record batches past 5 MiB
/// per partition, consumed or not. With nothing consuming the topic, ingest into one partition
/// is refused (503 `embedded_backlog_full`, with Retry-After) before that point, and every event
/// that was accepted is still in the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_broker_refuses_events_before_its_retention_would_drop_them() {
    let mut config = test_config("");
    // The group reads only the (empty) DLQ topic: the main topic's backlog only grows.
    config.consumer.topics = vec![config.kafka.dlq_topic.clone()];
    let app = start(config.clone(), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let client = reqwest::Client::new();
    let filler = "x".repeat(2000);
    let mut accepted = 0usize;
    let mut refusal = None;
    // Up to 30 MB into one partition (one service key), far past the mock's 5 MiB.
    for i in 0..150 {
        let chunk: Vec<Value> = (0..100)
            .map(|j| {
                json!({
                    "timestamp": chrono::Utc::now().to_rfc3339(),
                    "service": "one-partition",
                    "level": "INFO",
                    "message": format!("{i}-{j} {filler}"),
                })
            })
            .collect();
        let response = client
            .post(format!("{base}/api/v1/logs/batch"))
            .json(&chunk)
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            202 => {
                let body: Value = response.json().await.unwrap();
                accepted += body["accepted"].as_u64().unwrap() as usize;
            }
            503 => {
                assert!(response.headers().contains_key("retry-after"));
                refusal = Some(response.json::<Value>().await.unwrap());
                break;
            }
            other => panic!(
                "unexpected status {other}: {}",
                response.text().await.unwrap()
            ),
        }
    }
    let refusal = refusal.expect("refused before 30 MB reached one partition");
    assert_eq!(
        refusal["error"]["code"], "embedded_backlog_full",
        "{refusal}"
    );
    let message = refusal["error"]["message"].as_str().unwrap();
    assert!(message.contains("MiB"), "says why: {message}");
    assert!(
        accepted > 0 && accepted * 2100 < 5 * 1024 * 1024,
        "refused before the retention limit: {accepted} accepted"
    );
    let records = read_all(
        app.bootstrap.as_deref().unwrap(),
        &config.kafka.topic,
        accepted,
    )
    .await;
    assert_eq!(
        records.len(),
        accepted,
        "every accepted event is still in the topic"
    );
    println!(
        "accepted {accepted} events (~{} KiB), then: {message}",
        accepted * 2100 / 1024
    );
    app.shutdown().await.unwrap();
}
