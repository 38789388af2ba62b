//! Component tests over real HTTP against the embedded broker: events posted to the gateway are
//! read back from Kafka with their keys, headers and partitions; split mode (gateway → producer
//! service) works; an unreachable or saturated producer answers 503 with Retry-After, never a hang.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use logpipe::app::Roles;
use logpipe::config::KeyStrategy;
use logpipe::kafka::headers;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use serde_json::{json, Value};

use crate::support::{read_all, start, test_config};

async fn post_batch(base: &str, events: &[Value]) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/logs/batch"))
        .json(&events)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.json().await.unwrap(), headers)
}

#[tokio::test]
async fn posted_events_reach_kafka_with_keys_headers_and_per_service_order() {
    let config = test_config("");
    let topic = config.kafka.topic.clone();
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let services = 20;
    let per_service = 25;
    let events: Vec<Value> = (0..per_service)
        .flat_map(|seq| {
            (0..services).map(move |s| {
                json!({"service": format!("svc-{s}"), "level": "warn", "message": format!("event {seq}"),
                       "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "attributes": {"seq": seq}})
            })
        })
        .collect();
    let before = chrono::Utc::now().timestamp_millis();
    let (status, body, headers_) = post_batch(&base, &events).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["accepted"], services * per_service);
    let request_id = headers_["x-request-id"].to_str().unwrap().to_string();

    let records = read_all(app.bootstrap.as_deref().unwrap(), &topic, events.len()).await;
    assert_eq!(
        records.len(),
        events.len(),
        "every acknowledged event is in Kafka exactly once"
    );

    let mut partition_of: HashMap<String, i32> = HashMap::new();
    let mut seqs: HashMap<String, Vec<i64>> = HashMap::new();
    let mut sorted = records.clone();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    for r in &sorted {
        let service = r.value["service"].as_str().unwrap().to_string();
        assert_eq!(
            r.key.as_deref(),
            Some(service.as_str()),
            "key = service by default"
        );
        assert_eq!(
            *partition_of.entry(service.clone()).or_insert(r.partition),
            r.partition,
            "one service, one partition"
        );
        seqs.entry(service)
            .or_default()
            .push(r.value["attributes"]["seq"].as_i64().unwrap());
        assert_eq!(r.header(headers::REQUEST_ID), Some(request_id.as_str()));
        let ingest: i64 = r.header(headers::INGEST_TIME_MS).unwrap().parse().unwrap();
        assert!(ingest >= before - 1000 && ingest <= chrono::Utc::now().timestamp_millis());
        assert_eq!(r.value["level"], "WARN", "canonical form");
        assert!(
            r.value["timestamp"].as_str().unwrap().ends_with('Z'),
            "timestamp filled in, UTC"
        );
        assert!(r.timestamp_ms.is_some());
    }
    for (service, seq) in &seqs {
        assert_eq!(
            seq,
            &(0..per_service as i64).collect::<Vec<_>>(),
            "{service} kept its order"
        );
    }
    let used: std::collections::HashSet<i32> = partition_of.values().copied().collect();
    assert!(
        used.len() > 3,
        "20 services spread over several of the 12 partitions, got {used:?}"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn key_strategies_trace_id_and_none() {
    for strategy in [KeyStrategy::TraceId, KeyStrategy::None] {
        let mut config = test_config("");
        config.producer.key = strategy;
        let topic = config.kafka.topic.clone();
        let app = start(config, Roles::All).await;
        let base = format!("http://{}", app.gateway_addr.unwrap());
        let events = vec![
            json!({"service": "a", "message": "with trace", "trace_id": "0af7651916cd43dd8448eb211c80319c"}),
            json!({"service": "a", "message": "without trace"}),
        ];
        assert_eq!(post_batch(&base, &events).await.0, 202);
        let records = read_all(app.bootstrap.as_deref().unwrap(), &topic, 2).await;
        assert_eq!(records.len(), 2);
        for r in records {
            let expected = match strategy {
                KeyStrategy::TraceId => r.value["trace_id"].as_str().map(str::to_string),
                _ => None,
            };
            assert_eq!(r.key, expected, "{strategy:?}");
        }
        app.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn split_mode_gateway_forwards_to_the_producer_service() {
    let config = test_config("");
    let topic = config.kafka.topic.clone();
    let producer = start(config.clone(), Roles::Producer).await;
    let mut gateway_config = config;
    gateway_config.gateway.producer_url = format!("http://{}", producer.producer_addr.unwrap());
    let gateway = start(gateway_config, Roles::Gateway).await;
    let base = format!("http://{}", gateway.gateway_addr.unwrap());

    let events: Vec<Value> = (0..50)
        .map(|i| json!({"service": "split", "message": format!("m{i}")}))
        .collect();
    let (status, body, _) = post_batch(&base, &events).await;
    assert_eq!(status, 202, "{body}");
    let records = read_all(producer.bootstrap.as_deref().unwrap(), &topic, 50).await;
    assert_eq!(records.len(), 50);

    // The producer goes away: the gateway answers 503 quickly, never hangs.
    producer.shutdown().await.unwrap();
    let started = Instant::now();
    let (status, body, headers_) = post_batch(&base, &events[..1]).await;
    assert_eq!(status, 503, "{body}");
    assert!(headers_.contains_key("retry-after"));
    assert!(started.elapsed() < Duration::from_secs(5));
    gateway.shutdown().await.unwrap();
}

#[tokio::test]
async fn broker_down_answers_503_with_retry_after_and_recovers() {
    let mut config = test_config("");
    config.producer.delivery_timeout = Duration::from_secs(2);
    config.gateway.request_timeout = Duration::from_secs(4);
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let broker = app.embedded().unwrap();
    broker.with_cluster(|c| c.broker_down(1)).unwrap().unwrap();

    let started = Instant::now();
    let (status, body, headers_) =
        post_batch(&base, &[json!({"service": "a", "message": "m"})]).await;
    assert_eq!(status, 503, "{body}");
    assert!(headers_.contains_key("retry-after"));
    assert!(
        ["kafka_unavailable", "delivery_failed", "timeout"]
            .contains(&body["error"]["code"].as_str().unwrap()),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by the delivery timeout"
    );

    broker.with_cluster(|c| c.broker_up(1)).unwrap().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _, _) = post_batch(&base, &[json!({"service": "a", "message": "back"})]).await;
        if status == 202 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not recover after the broker came back"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_in_flight_queue_is_backpressure_not_a_drop() {
    let mut config = test_config("");
    config.producer.max_in_flight = 10;
    config.gateway.max_batch_events = 10;
    config.producer.enqueue_timeout = Duration::from_millis(200);
    let topic = config.kafka.topic.clone();
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    // Slow acknowledgements: each produce request takes 1.5 s, so the first batch holds all permits.
    app.embedded()
        .unwrap()
        .with_cluster(|c| c.broker_round_trip_time(1, Duration::from_millis(1500)))
        .unwrap()
        .unwrap();
    let batch: Vec<Value> = (0..10)
        .map(|i| json!({"service": "bp", "message": format!("m{i}")}))
        .collect();
    let first = tokio::spawn({
        let base = base.clone();
        let batch = batch.clone();
        async move { post_batch(&base, &batch).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body, headers_) = post_batch(&base, &batch[..1]).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "saturated");
    assert!(headers_.contains_key("retry-after"));
    let (first_status, first_body, _) = first.await.unwrap();
    assert_eq!(first_status, 202, "{first_body}");
    app.embedded()
        .unwrap()
        .with_cluster(|c| c.broker_round_trip_time(1, Duration::ZERO))
        .unwrap()
        .unwrap();
    let records = read_all(app.bootstrap.as_deref().unwrap(), &topic, 10).await;
    assert_eq!(
        records.len(),
        10,
        "the accepted batch is there, the refused one is not"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn produce_errors_from_the_broker_are_retried_by_the_idempotent_producer() {
    let config = test_config("");
    let topic = config.kafka.topic.clone();
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    // Two transient errors on Produce: librdkafka retries, the request still succeeds, no duplicates.
    app.embedded()
        .unwrap()
        .with_cluster(|c| {
            c.request_errors(
                RDKafkaApiKey::Produce,
                &[
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                    RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                ],
            )
        })
        .unwrap();
    let events: Vec<Value> = (0..30)
        .map(|i| json!({"service": "retry", "message": format!("m{i}")}))
        .collect();
    let (status, body, _) = post_batch(&base, &events).await;
    assert_eq!(status, 202, "{body}");
    let records = read_all(app.bootstrap.as_deref().unwrap(), &topic, 30).await;
    assert_eq!(records.len(), 30, "no loss, no duplicates");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_is_prompt() {
    let app = start(test_config(""), Roles::All).await;
    let started = Instant::now();
    app.shutdown().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn a_refused_produce_is_503_naming_the_failed_items_by_request_position() {
    let app = start(test_config(""), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    app.embedded()
        .unwrap()
        .with_cluster(|c| {
            c.request_errors(
                RDKafkaApiKey::Produce,
                &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED; 4],
            )
        })
        .unwrap();
    let events = vec![
        json!({"service": "a"}),
        json!({"service": "a", "message": "one"}),
        json!({"service": "a", "message": "two"}),
    ];
    let (status, body, headers_) = post_batch(&base, &events).await;
    assert_eq!(status, 503, "{body}");
    assert!(headers_.contains_key("retry-after"));
    assert_eq!(body["error"]["code"], "delivery_failed", "{body}");
    let failed: Vec<u64> = body["failed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["index"].as_u64().unwrap_or_else(|| panic!("{body}")))
        .collect();
    assert_eq!(
        failed,
        vec![1, 2],
        "positions in the request, not in the valid subset: {body}"
    );
    app.shutdown().await.unwrap();
}
