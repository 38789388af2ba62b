//! Hostile and slow HTTP clients against the one serve path every logpipe listener uses
//! (`http::serve_with` + `http::with_common_layers`): half-sent headers, silent connections,
//! made-up methods, slow handlers, too many requests or connections, and a shutdown with a
//! connection left half open. The last test drives the real producer service (`App`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use logpipe::app::Roles;
use logpipe::config::HttpConfig;
use logpipe::http::{self, Ops};
use logpipe::telemetry::metrics::{new_registry, HttpMetrics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::{kafka_brokers, metrics_text, start, test_config};

/// Half a request: the request line and one header, never the blank line that ends it.
const HALF_HEADER: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: logpipe\r\n";

struct Server {
    base: String,
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Serves the shared layers plus `/slow` (sleeps 3 s) under `limits`, metrics prefixed `abuse`.
async fn serve(limits: HttpConfig) -> Server {
    let mut registry = new_registry();
    let metrics = HttpMetrics::register(&mut registry, "abuse");
    let ops = Ops {
        registry: Arc::new(registry),
        checks: Arc::new(Vec::new()),
    };
    let routes = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            "slept"
        }),
    );
    let router = http::with_common_layers(routes, ops, metrics, &limits);
    let listener = http::bind("127.0.0.1:0".parse().unwrap(), "the test server")
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(http::serve_with(listener, router, limits, stop.clone()));
    Server {
        base: format!("http://{addr}"),
        addr,
        stop,
        task,
    }
}

/// How long until the server closes `stream` (reads until EOF or reset, discarding bytes).
async fn closed_after(stream: &mut TcpStream, at_most: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(at_most, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the connection was still open after {at_most:?}"));
    started.elapsed()
}

#[tokio::test]
async fn a_half_sent_header_is_closed_after_the_header_read_timeout() {
    let server = serve(HttpConfig {
        header_read_timeout: Duration::from_millis(500),
        ..HttpConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(HALF_HEADER).await.unwrap();
    let after = closed_after(&mut stream, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(400),
        "closed too early: {after:?}"
    );
    // A complete request still works.
    let live = reqwest::get(format!("{}/health/live", server.base))
        .await
        .unwrap();
    assert_eq!(live.status(), 200);
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let server = serve(HttpConfig {
        header_read_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_millis(500),
        ..HttpConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let after = closed_after(&mut stream, Duration::from_secs(5)).await;
    assert!(
        after >= Duration::from_millis(400),
        "closed too early: {after:?}"
    );
}

#[tokio::test]
async fn made_up_methods_are_counted_under_other() {
    let server = serve(HttpConfig::default()).await;
    let client = reqwest::Client::new();
    for method in ["FOO1", "FOO2", "PROPFIND"] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let response = client
            .request(method, format!("{}/health/live", server.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
    }
    let text = metrics_text(&server.base).await;
    assert!(
        text.contains(
            r#"abuse_http_requests_total{route="/health/live",method="other",status="405"} 3"#
        ),
        "{text}"
    );
    for made_up in ["FOO1", "FOO2", "PROPFIND"] {
        assert!(!text.contains(made_up), "{made_up} became a label: {text}");
    }
}

#[tokio::test]
async fn a_slow_request_gets_503_request_timeout_in_the_error_shape() {
    let server = serve(HttpConfig {
        request_timeout: Duration::from_millis(500),
        ..HttpConfig::default()
    })
    .await;
    let started = Instant::now();
    let response = reqwest::get(format!("{}/slow", server.base)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert!(response.headers().contains_key(http::REQUEST_ID_HEADER));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "request_timeout", "{body}");
    let text = metrics_text(&server.base).await;
    assert!(
        text.contains(r#"abuse_http_requests_total{route="/slow",method="GET",status="503"} 1"#),
        "{text}"
    );
}

#[tokio::test]
async fn past_the_in_flight_limit_requests_get_503_overloaded_but_health_answers() {
    let server = serve(HttpConfig {
        max_in_flight_requests: 1,
        ..HttpConfig::default()
    })
    .await;
    let slow = tokio::spawn(reqwest::get(format!("{}/slow", server.base)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = reqwest::get(format!("{}/slow", server.base)).await.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "overloaded", "{body}");
    let live = reqwest::get(format!("{}/health/live", server.base))
        .await
        .unwrap();
    assert_eq!(
        live.status(),
        200,
        "health routes are exempt from the limit"
    );
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_waits_for_a_free_slot() {
    let server = serve(HttpConfig {
        max_connections: 2,
        ..HttpConfig::default()
    })
    .await;
    let first = TcpStream::connect(server.addr).await.unwrap();
    let _second = TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    third
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: logpipe\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let early = tokio::time::timeout(Duration::from_millis(500), third.read_to_end(&mut buf)).await;
    assert!(
        early.is_err(),
        "answered over the cap: {:?}",
        String::from_utf8_lossy(&buf)
    );
    drop(first);
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf))
        .await
        .expect("answered once a slot is free")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn shutdown_returns_within_the_deadline_with_a_half_open_connection() {
    let server = serve(HttpConfig {
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(60),
        shutdown_timeout: Duration::from_millis(500),
        ..HttpConfig::default()
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream.write_all(HALF_HEADER).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    server.stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("serve returns after the shutdown deadline")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "did not wait for the connection: {took:?}"
    );
    closed_after(&mut stream, Duration::from_secs(1)).await;
}

/// The real producer service: made-up methods land under `other`, and the app shuts down within
/// `http.shutdown_timeout` although a client holds a half-sent request open.
#[tokio::test]
async fn the_producer_service_counts_other_methods_and_shuts_down_past_a_half_open_request() {
    let mut config = test_config(&kafka_brokers());
    config.http.header_read_timeout = Duration::from_secs(60);
    config.http.shutdown_timeout = Duration::from_secs(1);
    let app = start(config, Roles::Producer).await;
    let base = format!("http://{}", app.producer_addr.unwrap());
    let foo = reqwest::Method::from_bytes(b"FOO1").unwrap();
    let response = reqwest::Client::new()
        .request(foo, format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    let text = metrics_text(&base).await;
    assert!(
        text.contains(
            r#"producer_http_requests_total{route="/health/ready",method="other",status="405"} 1"#
        ),
        "{text}"
    );
    let mut stream = TcpStream::connect(app.producer_addr.unwrap())
        .await
        .unwrap();
    stream.write_all(HALF_HEADER).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), app.shutdown())
        .await
        .expect("the app stops although a request is half sent")
        .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(8), "shutdown took {took:?}");
}
