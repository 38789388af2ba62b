//! The query API and the dashboard against hostile or careless input, through the router (no
//! server): time parameters that overflow are a 400 with a reason, never a 500; a `q` search is
//! bounded in time and length; the dashboard names a consumer that did not answer by a short
//! class and its URL with secrets masked. The stores are the embedded ones (but for
//! `external_a_text_search_through_the_trigram_index`: PostgreSQL with
//! `postgres.search_index = "trigram"`); the upstream is a producer URL nothing listens on, since
//! no test here ingests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use chrono::Utc;
use http_body_util::BodyExt;
use logpipe::app::{gateway_router, Stores};
use logpipe::config::Config;
use logpipe::gateway::QueryBackend;
use logpipe::producer::client::ProducerClient;
use logpipe::producer::Upstream;
use logpipe::telemetry::metrics::new_registry;
use logpipe_model::{enrich, LogEvent, RecordMeta};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::support::{test_config, unique};

struct Harness {
    router: Router,
    stores: Stores,
}

async fn harness(tune: impl FnOnce(&mut Config)) -> Harness {
    let mut config = test_config("");
    tune(&mut config);
    let stores = Stores::open(&config).await.unwrap();
    let query = QueryBackend::new(
        stores.store.clone(),
        stores.aggregates.clone(),
        &config.gateway,
    );
    let upstream = ProducerClient::new("http://127.0.0.1:9", Duration::from_secs(1), "").unwrap();
    let router = gateway_router(
        &config,
        Upstream::Remote(upstream),
        Some(query),
        new_registry(),
    );
    Harness { router, stores }
}

/// GETs `path` through the router as a client on the gateway's machine (keyless reads need one).
async fn get(router: &Router, path: &str) -> (StatusCode, Value) {
    let mut request = Request::get(path).body(Body::empty()).unwrap();
    let local: std::net::SocketAddr = "127.0.0.1:40000".parse().unwrap();
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(local));
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, body)
}

/// A 400 in the error shape with `code`, whose message contains `says`.
fn assert_refused(answer: &(StatusCode, Value), code: &str, says: &str, what: &str) {
    let (status, body) = answer;
    assert_eq!(*status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "{what}: {message}");
    assert!(body["error"]["request_id"].is_string(), "{what}: {body}");
}

#[tokio::test]
async fn overflowing_times_are_400_with_a_reason_on_logs_and_stats() {
    let h = harness(|_| {}).await;
    for route in ["/api/v1/logs", "/api/v1/stats"] {
        for (query, name) in [
            ("since=1000000y", "`since`"),
            ("since=100000y", "`since`"),
            ("until=1000000y", "`until`"),
            ("since=99999999999999999999999999s", "`since`"),
            ("until=9999-12-31T23:00:00-05:00", "`until`"),
        ] {
            let path = format!("{route}?{query}");
            let answer = get(&h.router, &path).await;
            assert_refused(&answer, "time_out_of_range", name, &path);
            assert_refused(&answer, "time_out_of_range", "0000 to 9999", &path);
        }
        // Far, but within range: answered.
        let path = format!("{route}?since=2000y");
        let (status, body) = get(&h.router, &path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

/// Stores one event with `message` at `ago` before now, through the enrichment the consumer uses.
async fn store_event(stores: &Stores, offset: i64, ago: chrono::Duration, message: &str) {
    let now = Utc::now();
    let json = serde_json::json!({
        "timestamp": (now - ago).to_rfc3339(),
        "service": "abuse-query",
        "level": "INFO",
        "message": message,
    });
    let event = LogEvent::parse_str(&json.to_string(), &Default::default(), now).unwrap();
    let topic: Arc<str> = Arc::from("abuse-query");
    let meta = RecordMeta {
        topic: &topic,
        partition: 0,
        offset,
        index: 0,
        kafka_timestamp_ms: None,
        ingest_header: None,
        request_id_header: None,
    };
    let log = enrich(event, &meta, &Arc::new(BTreeMap::new()), now);
    stores.store.write(&[log]).await.unwrap();
}

fn messages(body: &Value) -> Vec<String> {
    body["logs"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|log| log["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_text_search_is_bounded_in_time_and_length() {
    let h = harness(|_| {}).await;
    let word = unique("needle");
    store_event(
        &h.stores,
        1,
        chrono::Duration::hours(1),
        &format!("{word} recent"),
    )
    .await;
    store_event(
        &h.stores,
        2,
        chrono::Duration::hours(48),
        &format!("{word} old"),
    )
    .await;

    // No `since`: the default 24 h only.
    let (status, body) = get(&h.router, &format!("/api/v1/logs?q={word}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(messages(&body), [format!("{word} recent")]);
    // A `since` within the maximum reaches further back.
    let (status, body) = get(&h.router, &format!("/api/v1/logs?q={word}&since=3d")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(messages(&body).len(), 2, "{body}");
    // Without `q` no range is needed.
    let (status, body) = get(&h.router, "/api/v1/logs?service=abuse-query").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(messages(&body).len(), 2, "{body}");

    // Wider than the maximum (7 days by default), by `since` or by a far `until`.
    for query in [
        format!("q={word}&since=8d"),
        format!("q={word}&since=2026-01-01T00:00:00Z&until=2026-03-01T00:00:00Z"),
        format!("q={word}&since=1h&until=9999-01-01T00:00:00Z"),
    ] {
        let path = format!("/api/v1/logs?{query}");
        let answer = get(&h.router, &path).await;
        assert_refused(&answer, "range_too_large", "at most 7days", &path);
    }

    // Longer than 200 characters.
    let long = "x".repeat(201);
    let answer = get(&h.router, &format!("/api/v1/logs?q={long}")).await;
    assert_refused(&answer, "q_too_long", "at most 200 characters", "201 chars");
    let (status, body) = get(&h.router, &format!("/api/v1/logs?q={}", "x".repeat(200))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_text_search_bounds_are_configurable() {
    let h = harness(|c| {
        c.gateway.query_default_range = Duration::from_secs(600);
        c.gateway.query_max_range = Duration::from_secs(3600);
        c.gateway.query_max_q_chars = 5;
    })
    .await;
    let word = unique("cfg");
    store_event(
        &h.stores,
        1,
        chrono::Duration::minutes(30),
        &format!("{word} x"),
    )
    .await;
    let (status, body) = get(&h.router, &format!("/api/v1/logs?q={}", &word[..5])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        messages(&body).is_empty(),
        "outside the 10-minute default: {body}"
    );
    let (status, body) = get(
        &h.router,
        &format!("/api/v1/logs?q={}&since=45m", &word[..5]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(messages(&body).len(), 1, "{body}");
    let answer = get(&h.router, "/api/v1/logs?q=cfg&since=2h").await;
    assert_refused(&answer, "range_too_large", "at most 1h", "2h");
    let answer = get(&h.router, "/api/v1/logs?q=123456").await;
    assert_refused(&answer, "q_too_long", "at most 5 characters", "6 chars");
}

/// `q` through the gateway on a PostgreSQL store with the trigram index: the index is built at
/// start, and searches (with LIKE wildcards as literals, and shorter than a trigram) answer as
/// without it.
#[tokio::test]
async fn external_a_text_search_through_the_trigram_index() {
    let url = crate::support::required_env("LOGPIPE_TEST_POSTGRES_URL");
    let schema = unique("it_trgm").replace('-', "_");
    let h = harness(|c| {
        c.postgres.url = url.clone();
        c.postgres.schema = schema.clone();
        c.postgres.search_index = logpipe::config::SearchIndex::Trigram;
    })
    .await;
    let logpipe_store::LogStore::Postgres(pg) = &*h.stores.store else {
        panic!("a PostgreSQL store");
    };
    assert!(pg.search_index_valid().await.unwrap());
    let word = unique("trgm");
    store_event(
        &h.stores,
        1,
        chrono::Duration::minutes(5),
        &format!("{word} 50% off"),
    )
    .await;
    store_event(
        &h.stores,
        2,
        chrono::Duration::minutes(6),
        &format!("{word} 50 off"),
    )
    .await;
    for (q, expected) in [
        (word.to_uppercase(), 2),
        ("50%25".to_string(), 1),
        (format!("{word}%20").to_uppercase(), 2),
        ("0%25".to_string(), 1),
    ] {
        let (status, body) = get(&h.router, &format!("/api/v1/logs?q={q}")).await;
        assert_eq!(status, StatusCode::OK, "{q}: {body}");
        assert_eq!(messages(&body).len(), expected, "{q}: {body}");
    }
    let admin = crate::support::postgres(&url).await;
    admin
        .batch_execute(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .await
        .unwrap();
}

/// A server on a free port: `/ok/stats` answers 200 with text that is no consumer's stats;
/// anything else is 404.
async fn odd_server(stop: CancellationToken) -> String {
    let routes = Router::new().route(
        "/ok/stats",
        axum::routing::get(|| async { "hello, I am not a consumer" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(logpipe::http::serve(listener, routes, stop));
    base
}

/// A listener that accepts connections and never answers.
async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (base, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_names_a_silent_consumer_by_class_and_masks_its_url() {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let odd = odd_server(stop.clone()).await;
    let (silent, silent_task) = silent_server().await;
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let urls = vec![
        format!("http://user:hunter2@{}/metrics", &dead[7..]),
        format!("{silent}/metrics"),
        format!("{odd}/ok/metrics"),
        format!("{odd}/missing/metrics"),
    ];
    let h = harness(|c| c.gateway.consumer_metrics_urls = urls.clone()).await;
    let (status, body) = get(&h.router, "/api/v1/dashboard").await;
    silent_task.abort();
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = body.to_string();
    assert!(!text.contains("hunter2"), "a password leaked: {text}");
    let instances = body["consumer"]["instances"].as_array().unwrap();
    let classes: Vec<&str> = instances
        .iter()
        .map(|i| i["error"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        classes,
        ["unreachable", "timeout", "bad_response", "bad_status"],
        "{body}"
    );
    assert_eq!(
        instances[0]["url"],
        format!("http://user:<redacted>@{}/metrics", &dead[7..])
    );
    assert!(instances.iter().all(|i| i["up"] == false), "{body}");
}
