//! The producer's internal endpoint against callers other than a well-configured gateway: no or a
//! wrong internal token (401 before the body is read), a wide listen address without a token
//! (refused at start), a request above the event cap (413), a request larger than the whole
//! in-flight budget (answered at once, without holding back the others), and 503 bodies that
//! carry no internal address or error text.

use std::time::{Duration, Instant};

use logpipe::app::{App, Roles};
use logpipe::config::Config;
use serde_json::{json, Value};

use crate::support::{read_all, start, test_config};

const TOKEN: &str = "internal-token-0123456789";

/// `n` canonical events as NDJSON (what the gateway sends).
fn ndjson(n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({"timestamp": "2026-01-01T00:00:00Z", "service": "abuse", "level": "info",
                   "message": format!("m{i}")})
            .to_string()
                + "\n"
        })
        .collect()
}

async fn publish(base: &str, token: Option<&str>, body: String) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/internal/v1/publish"))
        .header("content-type", "application/x-ndjson")
        .header("x-request-id", "abuse-request")
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post_gateway(base: &str, n: usize) -> (u16, Value) {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"service": "abuse", "message": format!("g{i}")}))
        .collect();
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/logs/batch"))
        .json(&events)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn tokened(mut config: Config) -> Config {
    config.producer.internal_token = TOKEN.into();
    config
}

#[tokio::test]
async fn the_internal_endpoint_answers_401_without_the_token_and_the_gateway_sends_it() {
    let config = tokened(test_config(""));
    let topic = config.kafka.topic.clone();
    let max_body = config.gateway.max_body_bytes;
    let producer = start(config.clone(), Roles::Producer).await;
    let base = format!("http://{}", producer.producer_addr.unwrap());

    for token in [None, Some("internal-token-0123456780"), Some("")] {
        let (status, body) = publish(&base, token, ndjson(1)).await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(body["error"]["code"], "unauthorized", "{body}");
        assert_eq!(body["error"]["request_id"], "abuse-request", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("producer.internal_token"),
            "says what to do: {body}"
        );
    }
    // Refused before the body is read: an oversized body still gets 401, not 413.
    let (status, body) = publish(&base, None, "x".repeat(max_body + 1024)).await;
    assert_eq!(status, 401, "{body}");

    let (status, body) = publish(&base, Some(TOKEN), ndjson(3)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["delivered"], 3);

    // The gateway with the same setting sends the token: end to end as before.
    let mut gateway_config = config;
    gateway_config.gateway.producer_url = base.clone();
    let gateway = start(gateway_config, Roles::Gateway).await;
    let gateway_base = format!("http://{}", gateway.gateway_addr.unwrap());
    let (status, body) = post_gateway(&gateway_base, 2).await;
    assert_eq!(status, 202, "{body}");
    let records = read_all(producer.bootstrap.as_deref().unwrap(), &topic, 5).await;
    assert_eq!(records.len(), 5, "3 direct and 2 through the gateway");
    gateway.shutdown().await.unwrap();
    producer.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_wide_listen_address_without_a_token_is_refused_at_start() {
    let mut config = test_config("");
    config.producer.listen = "0.0.0.0:0".parse().unwrap();
    let error = match App::start(config.clone(), Roles::Producer).await {
        Ok(app) => {
            app.shutdown().await.unwrap();
            panic!("the producer started on 0.0.0.0 without a token");
        }
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("producer.internal_token"), "{error}");
    assert!(error.contains("loopback"), "{error}");

    // With a token the same address is fine.
    let app = App::start(tokened(config), Roles::Producer).await.unwrap();
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_above_the_event_cap_is_413() {
    let mut config = test_config("");
    config.gateway.max_batch_events = 5;
    config.producer.max_request_events = 5;
    let producer = start(config, Roles::Producer).await;
    let base = format!("http://{}", producer.producer_addr.unwrap());
    let (status, body) = publish(&base, None, ndjson(6)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_many_events", "{body}");
    assert_eq!(body["limit"], 5, "{body}");
    let (status, body) = publish(&base, None, ndjson(5)).await;
    assert_eq!(status, 200, "{body}");
    producer.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_request_larger_than_the_in_flight_budget_is_answered_at_once() {
    let mut config = test_config("");
    config.producer.max_in_flight = 10;
    config.gateway.max_batch_events = 5;
    config.producer.max_request_events = 1_000;
    // Long enough that waiting for permits would show.
    config.producer.enqueue_timeout = Duration::from_secs(5);
    let producer = start(config, Roles::Producer).await;
    let base = format!("http://{}", producer.producer_addr.unwrap());

    let started = Instant::now();
    let big = tokio::spawn({
        let base = base.clone();
        async move {
            let answer = publish(&base, None, ndjson(50)).await;
            (answer, started.elapsed())
        }
    });
    let normal = tokio::spawn({
        let base = base.clone();
        async move {
            let answer = publish(&base, None, ndjson(5)).await;
            (answer, started.elapsed())
        }
    });
    let ((status, body), big_took) = big.await.unwrap();
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_many_events", "{body}");
    assert_eq!(body["limit"], 10, "{body}");
    assert!(
        big_took < Duration::from_secs(2),
        "answered at once, not after enqueue_timeout: {big_took:?}"
    );
    let ((status, body), normal_took) = normal.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        normal_took < Duration::from_secs(4),
        "not held behind the big one: {normal_took:?}"
    );
    producer.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_503_names_no_internal_address_or_error() {
    let config = tokened(test_config(""));
    let producer = start(config.clone(), Roles::Producer).await;
    let producer_addr = producer.producer_addr.unwrap();

    // A gateway holding the wrong token is never ready (its probe of the producer is refused),
    // and the producer's 401 becomes a 503 whose cause is logged.
    let mut wrong = config.clone();
    wrong.producer.internal_token = "another-token-0123456789".into();
    wrong.gateway.producer_url = format!("http://{producer_addr}");
    let gateway = logpipe::app::App::start(wrong, Roles::Gateway)
        .await
        .expect("the gateway starts");
    let base = format!("http://{}", gateway.gateway_addr.unwrap());
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(3) {
        let ready = reqwest::get(format!("{base}/health/ready")).await.unwrap();
        assert_eq!(ready.status(), 503, "ready with a refused token");
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["checks"]["producer"], "down", "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let (status, body) = post_gateway(&base, 1).await;
    assert_eq!(status, 503, "{body}");
    assert_internal_free(&body, &producer_addr.to_string());

    // The producer goes away: "unreachable" and the connection error stay in the log.
    producer.shutdown().await.unwrap();
    let (status, body) = post_gateway(&base, 1).await;
    assert_eq!(status, 503, "{body}");
    assert_internal_free(&body, &producer_addr.to_string());
    gateway.shutdown().await.unwrap();
}

fn assert_internal_free(body: &Value, address: &str) {
    let text = body.to_string();
    assert!(body["error"]["code"].is_string(), "{text}");
    assert!(body["error"]["request_id"].is_string(), "{text}");
    for internal in [
        address,
        "127.0.0.1",
        "http://",
        "401",
        "unreachable",
        "error sending request",
    ] {
        assert!(!text.contains(internal), "leaks `{internal}`: {text}");
    }
}
