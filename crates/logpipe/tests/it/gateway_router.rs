//! Gateway behaviour through the router, no server: status codes, the error shape, per-item
//! rejections, limits, gzip, API keys, request ids, metrics. The upstream is the in-process
//! producer on an embedded broker, so acceptances are real Kafka acknowledgements.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use logpipe::config::Config;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::support::{gateway_harness, gzip, GatewayHarness};

type Harness = GatewayHarness;

impl GatewayHarness {
    /// POSTs `body` with `content_type` to `path` through the router.
    async fn post(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<Body>,
    ) -> (StatusCode, axum::http::HeaderMap, Value) {
        call(&self.router, post(path, content_type, body)).await
    }
}

async fn harness(tune: impl FnOnce(&mut Config)) -> Harness {
    gateway_harness(tune).await
}

/// Sends `request` through the router as a client on this machine would.
async fn call(
    router: &Router,
    request: Request<Body>,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    call_from(router, request, "127.0.0.1:40000").await
}

/// Sends `request` through the router as the client at `peer`.
async fn call_from(
    router: &Router,
    mut request: Request<Body>,
    peer: &str,
) -> (StatusCode, axum::http::HeaderMap, Value) {
    let peer: std::net::SocketAddr = peer.parse().unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(peer));
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, headers, body)
}

fn post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    Request::post(path)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

fn event(service: &str, message: &str) -> Value {
    json!({"service": service, "level": "info", "message": message})
}

#[tokio::test]
async fn single_event_is_accepted_after_kafka_acks() {
    let h = harness(|_| {}).await;
    let (status, headers, body) = h
        .post(
            "/api/v1/logs",
            "application/json",
            event("api", "hello").to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["accepted"], 1);
    let id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(body["request_id"], id);
}

#[tokio::test]
async fn client_request_id_is_kept_and_bad_ones_replaced() {
    let h = harness(|_| {}).await;
    let mut request = post(
        "/api/v1/logs",
        "application/json",
        event("api", "x").to_string(),
    );
    request
        .headers_mut()
        .insert("x-request-id", "client-abc-123".parse().unwrap());
    let (_, headers, body) = call(&h.router, request).await;
    assert_eq!(headers["x-request-id"], "client-abc-123");
    assert_eq!(body["request_id"], "client-abc-123");

    let mut request = post(
        "/api/v1/logs",
        "application/json",
        event("api", "x").to_string(),
    );
    request
        .headers_mut()
        .insert("x-request-id", "x".repeat(300).parse().unwrap());
    let (_, headers, _) = call(&h.router, request).await;
    assert_ne!(headers["x-request-id"].to_str().unwrap(), "x".repeat(300));
}

#[tokio::test]
async fn invalid_single_event_is_400_with_the_reason() {
    let h = harness(|_| {}).await;
    let cases = [
        (
            json!({"level": "info", "message": "m"}).to_string(),
            "missing_field",
        ),
        (
            json!({"service": "a b", "message": "m"}).to_string(),
            "invalid_service",
        ),
        (
            json!({"service": "a", "message": "m", "level": "loud"}).to_string(),
            "invalid_level",
        ),
        (
            "{\"service\": \"a\", \"message\": ".to_string(),
            "invalid_json",
        ),
        ("[1,2]".to_string(), "not_an_object"),
    ];
    for (body, code) in cases {
        let (status, headers, answer) = h
            .post("/api/v1/logs", "application/json", body.clone())
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().unwrap().len() > 5);
        assert_eq!(
            answer["error"]["request_id"],
            headers["x-request-id"].to_str().unwrap()
        );
    }
    let (status, _, answer) = h
        .post("/api/v1/logs", "application/json", vec![0xff, 0xfe, b'{'])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"]["code"], "invalid_utf8");
}

#[tokio::test]
async fn mixed_json_batch_accepts_valid_and_reports_invalid_by_index() {
    let h = harness(|_| {}).await;
    let batch = json!([
        event("a", "ok 0"),
        {"service": "a"},
        event("b", "ok 2"),
        {"service": "bad service!", "message": "m"},
        "not an object",
    ]);
    let (status, _, body) = h
        .post("/api/v1/logs/batch", "application/json", batch.to_string())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["accepted"], 2);
    let rejected = body["rejected"].as_array().unwrap();
    let indexes: Vec<u64> = rejected
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(indexes, vec![1, 3, 4]);
    assert_eq!(rejected[0]["code"], "missing_field");
    assert_eq!(rejected[1]["code"], "invalid_service");
    assert_eq!(rejected[2]["code"], "not_an_object");
}

#[tokio::test]
async fn ndjson_batch_reports_line_numbers_and_takes_gzip() {
    let h = harness(|_| {}).await;
    let body = format!("{}\n\n{{oops\n{}\r\n", event("a", "one"), event("a", "two"));
    let (status, _, answer) = h
        .post("/api/v1/logs/batch", "application/x-ndjson", body.clone())
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 2);
    assert_eq!(answer["rejected"][0]["line"], 3);
    assert_eq!(answer["rejected"][0]["code"], "invalid_json");

    let mut request = post(
        "/api/v1/logs/batch",
        "application/x-ndjson",
        gzip(body.as_bytes()),
    );
    request
        .headers_mut()
        .insert("content-encoding", "gzip".parse().unwrap());
    let (status, _, answer) = call(&h.router, request).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 2);
}

#[tokio::test]
async fn all_invalid_batch_is_400_and_lists_every_item() {
    let h = harness(|_| {}).await;
    let (status, _, body) = h
        .post(
            "/api/v1/logs/batch",
            "application/json",
            "[{}, {\"service\": \"a\"}]",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "all_events_invalid");
    assert_eq!(body["rejected"].as_array().unwrap().len(), 2);
    assert_eq!(body["accepted"], 0);

    let (status, _, body) = h.post("/api/v1/logs/batch", "application/json", "[]").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "empty_batch");

    let (status, _, body) = h
        .post(
            "/api/v1/logs/batch",
            "application/json",
            "{\"service\":\"a\"}",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn limits_answer_413() {
    let h = harness(|c| {
        c.gateway.max_body_bytes = 4096;
        c.gateway.max_batch_events = 3;
        c.producer.max_in_flight = 10;
        c.limits.max_message_bytes = 1000;
    })
    .await;
    let too_many = json!([
        event("a", "1"),
        event("a", "2"),
        event("a", "3"),
        event("a", "4")
    ]);
    let (status, _, body) = h
        .post(
            "/api/v1/logs/batch",
            "application/json",
            too_many.to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "too_many_events");

    let big = event("a", &"x".repeat(5000)).to_string();
    let (status, _, body) = h
        .post("/api/v1/logs", "application/json", big.clone())
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");

    // A gzip bomb: small on the wire, larger than the limit once decompressed.
    let bomb = gzip(
        format!(
            "[{}]",
            vec![event("a", "yyyyyyyyyy").to_string(); 300].join(",")
        )
        .as_bytes(),
    );
    assert!(bomb.len() < 4096);
    let mut request = post("/api/v1/logs/batch", "application/json", bomb);
    request
        .headers_mut()
        .insert("content-encoding", "gzip".parse().unwrap());
    let (status, _, body) = call(&h.router, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    // Without Content-Length (streamed), the limit still holds.
    let stream = futures::stream::iter((0..10).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1000])));
    let request = post(
        "/api/v1/logs",
        "application/json",
        Body::from_stream(stream),
    );
    let (status, _, _) = call(&h.router, request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn wrong_content_type_or_encoding_is_415_and_bad_gzip_400() {
    let h = harness(|_| {}).await;
    let (status, _, body) = h
        .post("/api/v1/logs", "text/plain", event("a", "m").to_string())
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    let (status, _, _) = h
        .post(
            "/api/v1/logs",
            "application/x-ndjson",
            event("a", "m").to_string(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "NDJSON is for the batch route"
    );

    let mut request = post(
        "/api/v1/logs",
        "application/json",
        event("a", "m").to_string(),
    );
    request
        .headers_mut()
        .insert("content-encoding", "br".parse().unwrap());
    assert_eq!(
        call(&h.router, request).await.0,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    let mut truncated = gzip(event("a", "m").to_string().as_bytes());
    truncated.truncate(truncated.len() / 2);
    let mut request = post("/api/v1/logs", "application/json", truncated);
    request
        .headers_mut()
        .insert("content-encoding", "gzip".parse().unwrap());
    let (status, _, body) = call(&h.router, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_gzip");
}

#[tokio::test]
async fn api_keys_guard_the_api_but_not_health() {
    let key = "0123456789abcdef-key";
    let h = harness(|c| c.gateway.api_keys = vec![key.into()]).await;
    let (status, headers, body) = h
        .post(
            "/api/v1/logs",
            "application/json",
            event("a", "m").to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(headers.contains_key("x-request-id"));

    let mut wrong = post(
        "/api/v1/logs",
        "application/json",
        event("a", "m").to_string(),
    );
    wrong
        .headers_mut()
        .insert("x-api-key", "0123456789abcdef-kez".parse().unwrap());
    assert_eq!(call(&h.router, wrong).await.0, StatusCode::UNAUTHORIZED);

    let mut bearer = post(
        "/api/v1/logs",
        "application/json",
        event("a", "m").to_string(),
    );
    bearer
        .headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    assert_eq!(call(&h.router, bearer).await.0, StatusCode::ACCEPTED);

    let mut header = post(
        "/api/v1/logs",
        "application/json",
        event("a", "m").to_string(),
    );
    header
        .headers_mut()
        .insert("x-api-key", key.parse().unwrap());
    assert_eq!(call(&h.router, header).await.0, StatusCode::ACCEPTED);

    let live = Request::get("/health/live").body(Body::empty()).unwrap();
    assert_eq!(call(&h.router, live).await.0, StatusCode::OK);
}

fn with_key(mut request: Request<Body>, key: &str) -> Request<Body> {
    request
        .headers_mut()
        .insert("x-api-key", key.parse().unwrap());
    request
}

fn read_logs() -> Request<Body> {
    Request::get("/api/v1/logs?since=1h")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn without_keys_ingest_is_open_and_stored_logs_are_served_only_to_this_machine() {
    let h = harness(|_| {}).await;
    let ingest = post(
        "/api/v1/logs",
        "application/json",
        event("a", "m").to_string(),
    );
    assert_eq!(
        call_from(&h.router, ingest, "10.1.2.3:5000").await.0,
        StatusCode::ACCEPTED
    );
    let (status, _, body) = call_from(&h.router, read_logs(), "10.1.2.3:5000").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gateway.keys"),
        "says what to configure: {body}"
    );
    let dashboard = Request::get("/api/v1/dashboard")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        call_from(&h.router, dashboard, "[2001:db8::1]:5000")
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    // From this machine the read passes the check (this harness has no stores: 503).
    let (status, _, _) = call_from(&h.router, read_logs(), "[::1]:5000").await;
    assert_ne!(status, StatusCode::FORBIDDEN);

    let open = harness(|c| c.gateway.public_reads_without_keys = true).await;
    let (status, _, _) = call_from(&open.router, read_logs(), "10.1.2.3:5000").await;
    assert_ne!(
        status,
        StatusCode::FORBIDDEN,
        "the explicit opt-in serves everyone"
    );
}

#[tokio::test]
async fn scoped_keys_open_only_their_routes() {
    use logpipe::config::{ApiKeyConfig, Scope};
    let digest = |key: &str| {
        use sha2::Digest;
        sha2::Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let (ingest_key, read_key, admin_key) = (
        "shipper-0123456789abcdef",
        "grafana-0123456789abcdef",
        "operator-0123456789abcdef",
    );
    let h = harness(|c| {
        c.gateway.keys = vec![
            ApiKeyConfig {
                name: "shipper".into(),
                sha256: digest(ingest_key),
                scopes: vec![Scope::Ingest],
            },
            ApiKeyConfig {
                name: "grafana".into(),
                sha256: digest(read_key),
                scopes: vec![Scope::Read],
            },
            ApiKeyConfig {
                name: "operator".into(),
                sha256: digest(admin_key),
                scopes: vec![Scope::Admin],
            },
        ]
    })
    .await;
    let ingest = || {
        post(
            "/api/v1/logs",
            "application/json",
            event("a", "m").to_string(),
        )
    };
    let status = |(s, _, _): (StatusCode, axum::http::HeaderMap, Value)| s;

    assert_eq!(
        status(call(&h.router, with_key(ingest(), ingest_key)).await),
        StatusCode::ACCEPTED
    );
    let (s, _, body) = call(&h.router, with_key(read_logs(), ingest_key)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "an ingest key cannot read");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`read`"));

    let (s, _, body) = call(&h.router, with_key(ingest(), read_key)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a read key cannot ingest");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`ingest`"));
    assert_ne!(
        status(call_from(&h.router, with_key(read_logs(), read_key), "10.1.2.3:5000").await),
        StatusCode::FORBIDDEN
    );

    assert_eq!(
        status(call(&h.router, with_key(ingest(), admin_key)).await),
        StatusCode::ACCEPTED
    );
    assert_ne!(
        status(call(&h.router, with_key(read_logs(), admin_key)).await),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        status(call(&h.router, read_logs()).await),
        StatusCode::UNAUTHORIZED,
        "with keys configured, even this machine needs one"
    );
    assert_eq!(
        status(call(&h.router, with_key(read_logs(), "nobody-0123456789abcdef")).await),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn unknown_routes_share_the_error_shape() {
    let h = harness(|_| {}).await;
    let (status, _, body) = call(
        &h.router,
        Request::get("/nope").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status() {
    let h = harness(|_| {}).await;
    h.post(
        "/api/v1/logs",
        "application/json",
        event("a", "m").to_string(),
    )
    .await;
    h.post("/api/v1/logs", "application/json", "{}").await;
    let (status, _, text) = call(
        &h.router,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let text = text.as_str().unwrap().to_string();
    for needle in [
        r#"gateway_http_requests_total{route="/api/v1/logs",method="POST",status="202"} 1"#,
        r#"gateway_http_requests_total{route="/api/v1/logs",method="POST",status="400"} 1"#,
        r#"gateway_events_accepted_total{protocol="logpipe"} 1"#,
        r#"gateway_events_rejected_total{protocol="logpipe",reason="missing_field"} 1"#,
        r#"gateway_events_accepted_total{protocol="otlp"} 0"#,
        "log_producer_sent_total 1",
        "log_producer_queue_depth 0",
        "logpipe_build_info{",
    ] {
        assert!(text.contains(needle), "metrics lack `{needle}`:\n{text}");
    }
    assert!(
        text.lines().any(
            |l| l.starts_with("gateway_http_request_duration_seconds_bucket{")
                && l.contains(r#"route="/api/v1/logs""#)
        ),
        "no latency histogram for the route:\n{text}"
    );
}

#[tokio::test]
async fn the_openapi_document_is_served_without_a_key_and_states_the_configured_limits() {
    let h = harness(|c| {
        c.gateway.api_keys = vec!["doc-reader-key-0123456789".into()];
        c.gateway.max_batch_events = 77;
    })
    .await;
    let get = Request::get("/api/v1/openapi.json")
        .body(Body::empty())
        .unwrap();
    let (status, headers, doc) = call_from(&h.router, get, "203.0.113.9:40000").await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["components"]["schemas"]["Batch"]["maxItems"], 77);
    assert!(doc["security"].is_array(), "keys configured: {doc}");
    for path in [
        "/api/v1/logs",
        "/api/v1/logs/batch",
        "/api/v1/stats",
        "/health/ready",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}

#[tokio::test]
async fn an_unsupported_method_is_405_in_the_error_shape_with_allow() {
    let h = harness(|_| {}).await;
    let delete = Request::delete("/api/v1/logs/batch")
        .body(Body::empty())
        .unwrap();
    let (status, headers, body) = call(&h.router, delete).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(headers["allow"], "POST");
    assert_eq!(body["error"]["code"], "method_not_allowed");
    assert!(body["error"]["request_id"].is_string(), "{body}");
}
