//! OTLP/HTTP logs (`POST /v1/logs`) through the gateway's router, no server: answers in the
//! request's encoding, `partial_success`, `google.rpc.Status` failures (400, 413, 415, 503 with
//! `Retry-After`), dropped attributes, the OTLP-only port, and an ignored measurement of the
//! ingest rate against the JSON batch API. The upstream is the in-process producer on an
//! embedded broker, so a 200 is a real Kafka acknowledgement.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use logpipe::app::Roles;
use logpipe::config::Config;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;
use tower::ServiceExt;

use crate::ingest_otlp::counter;
use crate::support::{gateway_harness, gzip, start, test_config, wait_ready, GatewayHarness};

async fn harness(tune: impl FnOnce(&mut Config)) -> GatewayHarness {
    gateway_harness(tune).await
}

async fn call(
    router: &Router,
    mut request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let peer: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, bytes)
}

fn post(content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post("/v1/logs")
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

fn otlp_request(
    records: usize,
    body: impl Fn(usize) -> Option<&'static str>,
) -> ExportLogsServiceRequest {
    let text = |s: &str| {
        Some(AnyValue {
            value: Some(Any::StringValue(s.into())),
        })
    };
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: text("router-test"),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: (0..records)
                    .map(|i| LogRecord {
                        severity_number: 13,
                        body: body(i).and_then(text),
                        attributes: vec![KeyValue {
                            key: "i".into(),
                            value: Some(AnyValue {
                                value: Some(Any::IntValue(i as i64)),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The google.rpc.Status of a failure, as the OTLP spec shapes it.
#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[tokio::test]
async fn answers_in_the_request_encoding_with_partial_success() {
    let h = harness(|_| {}).await;
    let request = otlp_request(3, |i| (i != 1).then_some("hello"));
    let (status, headers, body) = call(
        &h.router,
        post("application/x-protobuf", request.encode_to_vec()),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-protobuf");
    let answer = ExportLogsServiceResponse::decode(body.as_slice()).unwrap();
    let partial = answer.partial_success.unwrap();
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("empty_message"),
        "{}",
        partial.error_message
    );

    // JSON, gzip-compressed, all accepted: no partial_success at all.
    let json = serde_json::to_vec(&otlp_request(2, |_| Some("hi"))).unwrap();
    let mut request = post("application/json; charset=utf-8", gzip(&json));
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, "gzip".parse().unwrap());
    let (status, headers, body) = call(&h.router, request).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    // `null` is how opentelemetry-proto writes an absent message; protobuf JSON parsers read it
    // as not set.
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert!(answer["partialSuccess"].is_null(), "{answer}");
}

#[tokio::test]
async fn attributes_over_the_limit_are_dropped_reported_and_counted() {
    let h = harness(|c| c.limits.max_attributes = 2).await;
    let mut request = otlp_request(2, |_| Some("m"));
    for record in &mut request.resource_logs[0].scope_logs[0].log_records {
        for key in ["a", "b", "c"] {
            record.attributes.push(KeyValue {
                key: key.into(),
                value: Some(AnyValue {
                    value: Some(Any::BoolValue(true)),
                }),
                ..Default::default()
            });
        }
    }
    let (status, _, body) = call(
        &h.router,
        post("application/x-protobuf", request.encode_to_vec()),
    )
    .await;
    assert_eq!(status, 200);
    let partial = ExportLogsServiceResponse::decode(body.as_slice())
        .unwrap()
        .partial_success
        .expect("a warning");
    assert_eq!(partial.rejected_log_records, 0, "the records are kept");
    assert!(
        partial.error_message.starts_with("4 attributes dropped"),
        "{}",
        partial.error_message
    );
    let (_, _, metrics) = call(
        &h.router,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    let metrics = String::from_utf8(metrics).unwrap();
    assert_eq!(
        counter(
            &metrics,
            "gateway_attributes_dropped_total{protocol=\"otlp\"}"
        ),
        4
    );
}

#[tokio::test]
async fn failures_carry_a_status_body_in_the_request_encoding() {
    let h = harness(|c| c.gateway.max_batch_events = 5).await;
    let (status, headers, body) = call(
        &h.router,
        post("application/x-protobuf", vec![0xffu8, 0xff, 0xff]),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-protobuf");
    let s = Status::decode(body.as_slice()).unwrap();
    assert_eq!(s.code, 3);
    assert!(s.message.starts_with("invalid_otlp"), "{}", s.message);

    let (status, _, body) =
        call(&h.router, post("application/json", "{\"resourceLogs\": 7}")).await;
    assert_eq!(status, 400);
    let s: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        s["message"].as_str().unwrap().contains("invalid_otlp"),
        "{s}"
    );

    let six = otlp_request(6, |_| Some("m")).encode_to_vec();
    let (status, _, body) = call(&h.router, post("application/x-protobuf", six)).await;
    assert_eq!(status, 413);
    let s = Status::decode(body.as_slice()).unwrap();
    assert!(
        s.message.contains("more than the limit of 5"),
        "{}",
        s.message
    );

    let (status, _, body) = call(&h.router, post("text/plain", "hello")).await;
    assert_eq!(status, 415);
    let s: Value = serde_json::from_slice(&body).unwrap();
    assert!(
        s["message"]
            .as_str()
            .unwrap()
            .contains("application/x-protobuf"),
        "{s}"
    );

    let mut request = post("application/x-protobuf", "x");
    request
        .headers_mut()
        .insert(header::CONTENT_ENCODING, "br".parse().unwrap());
    let (status, _, _) = call(&h.router, request).await;
    assert_eq!(status, 415);
}

#[tokio::test]
async fn an_unavailable_upstream_is_a_retryable_503_with_retry_after() {
    let h = harness(|c| c.gateway.retry_after = Duration::from_secs(3)).await;
    // What the producer's broker probe reports when Kafka stops answering.
    h.producer.health().set(false);
    let (status, headers, body) = call(
        &h.router,
        post(
            "application/x-protobuf",
            otlp_request(1, |_| Some("m")).encode_to_vec(),
        ),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(headers[header::RETRY_AFTER], "3");
    let s = Status::decode(body.as_slice()).unwrap();
    assert_eq!(s.code, 14, "UNAVAILABLE");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_otlp_port_serves_only_v1_logs_and_health() {
    let mut config = test_config("");
    config.gateway.otlp_listen = Some("127.0.0.1:0".parse().unwrap());
    let app = start(config, Roles::All).await;
    let otlp = format!("http://{}", app.otlp_addr.expect("the OTLP listener"));
    wait_ready(&otlp).await;
    let client = reqwest::Client::new();
    let answer = client
        .post(format!("{otlp}/v1/logs"))
        .header("content-type", "application/x-protobuf")
        .body(otlp_request(1, |_| Some("via 4318")).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let answer = client
        .get(format!("{otlp}/api/v1/logs"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    let answer = client
        .post(format!("{otlp}/api/v1/logs"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 404);
    app.shutdown().await.unwrap();
}
