//! The live dashboard: `/dashboard` is self-contained (no external URL, a CSP that allows this
//! origin only), `/api/v1/dashboard` has every figure the page draws, a split-mode gateway sums
//! its consumers' `/stats` and says which did not answer, and in headless Chromium (Debian's
//! `chromium`, installed by `scripts/test.sh`) the page shows exactly what was posted. The
//! Chromium test keeps a screenshot at `artifacts/dashboard.png`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use logpipe::app::{gateway_router, Roles};
use logpipe::consumer::stats_routes;
use logpipe::consumer::ConsumerMetrics;
use logpipe::http::{ops_routes, Ops};
use logpipe::kafka::admin::TopicSpec;
use logpipe::kafka::embedded::EmbeddedBroker;
use logpipe::producer::{Producer, ProducerMetrics, Upstream};
use logpipe::telemetry::metrics::new_registry;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::consumer_flow::{all_logs, generate, post_all};
use crate::support::{on_path, repo_root, start, test_config, unique};

const EVENTS: usize = 600;
const API_KEY: &str = "dashboard-test-key-0123456789";

async fn get_json(url: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The partitions of the records of `run`, from the query API.
async fn partitions_with_records(base: &str, run: &str) -> Vec<i64> {
    let mut partitions: Vec<i64> = all_logs(base, run)
        .await
        .iter()
        .map(|log| log["kafka"]["partition"].as_i64().unwrap())
        .collect();
    partitions.sort();
    partitions.dedup();
    partitions
}

fn lag_partitions(snapshot: &Value) -> Vec<i64> {
    snapshot["consumer"]["lag"]
        .as_array()
        .map(|lag| lag.iter().filter_map(|p| p["partition"].as_i64()).collect())
        .unwrap_or_default()
}

/// Waits until the snapshot shows `n` stored and lag for every partition that holds records of
/// `run` (the consumer reports lag every 5 s, and only for partitions with a committed offset),
/// and returns it with those partitions.
async fn settled(base: &str, run: &str, n: u64) -> (Value, Vec<i64>) {
    let url = format!("{base}/api/v1/dashboard");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut expected = None;
    loop {
        let (_, snapshot) = get_json(&url, None).await;
        if expected.is_none() && snapshot["consumer"]["stored"] == n {
            expected = Some(partitions_with_records(base, run).await);
        }
        if let Some(expected) = &expected {
            if lag_partitions(&snapshot) == *expected {
                return (snapshot, expected.clone());
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the dashboard data did not show {n} stored and lag for the partitions {expected:?} within 60 s: {snapshot}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_page_is_self_contained_and_the_data_has_every_figure() {
    let app = start(test_config(""), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let run = unique("dash-http");
    // Many services (the record key), so the records spread over the partitions.
    let events = generate(100, 50, &run);
    assert_eq!(post_all(&base, &events, 50).await, 100);

    let response = reqwest::get(format!("{base}/dashboard")).await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let html = response.text().await.unwrap();
    // No external URL at all; the one `http://` is the SVG namespace, an identifier the
    // browser never fetches (and the CSP would refuse any fetch elsewhere).
    let without_svg_ns = html.replace("\"http://www.w3.org/2000/svg\"", "");
    for needle in ["http://", "https://", "//cdn", "src=\"//", "@import"] {
        assert!(
            !without_svg_ns.contains(needle),
            "the page must not reference `{needle}`"
        );
    }
    assert!(!html.contains("<script src"), "all script is inline");
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .expect("script nonce in the CSP");
    assert!(html.contains(&format!("<script nonce=\"{nonce}\">")));
    assert!(html.contains("/api/v1/dashboard"));

    let (snapshot, with_records) = settled(&base, &run, 100).await;
    assert!(snapshot["generated_at"].as_str().unwrap().ends_with('Z'));
    assert!(snapshot["generated_at_ms"].as_i64().unwrap() > 0);
    assert_eq!(snapshot["gateway"]["accepted"], 100);
    assert_eq!(snapshot["gateway"]["rejected"], 0);
    assert!(snapshot["gateway"]["rejected_by_reason"].is_object());
    let c = &snapshot["consumer"];
    assert_eq!(c["available"], true);
    assert_eq!(c["source"], "in-process");
    for field in ["duplicates", "retries", "dlq_total", "assigned_partitions"] {
        assert!(c[field].is_u64(), "consumer.{field}: {c}");
    }
    assert_eq!(c["dlq_total"], 0);
    assert_eq!(c["dlq"]["poison"], 0);
    assert_eq!(c["dlq"]["exhausted"], 0);
    assert_eq!(c["assigned_partitions"], 12);
    assert!(c["rebalances"]["assign"].as_u64().unwrap() >= 1, "{c}");
    assert!(with_records.len() > 1, "{with_records:?}");
    assert_eq!(lag_partitions(&snapshot), with_records);
    for p in c["lag"].as_array().unwrap() {
        assert!(p["lag"].as_i64().unwrap() >= 0, "{p}");
    }
    let latency = &c["latency"];
    assert_eq!(latency["count"], 100);
    let (p50, p95, p99) = (
        latency["p50_ms"].as_f64().unwrap(),
        latency["p95_ms"].as_f64().unwrap(),
        latency["p99_ms"].as_f64().unwrap(),
    );
    assert!(0.0 < p50 && p50 <= p95 && p95 <= p99, "{latency}");
    let buckets = latency["buckets"].as_array().unwrap();
    assert!(buckets.last().unwrap()["le"].is_null(), "ends with +Inf");
    assert_eq!(buckets.last().unwrap()["count"], 100);

    // generate() cycles DEBUG, INFO, WARN, ERROR, FATAL: 40 of 100 are errors.
    let recent = &snapshot["recent_errors"];
    assert_eq!(recent["available"], true);
    let rows = recent["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 10);
    for row in rows {
        assert!(["ERROR", "FATAL"].contains(&row["level"].as_str().unwrap()));
        assert!(row["service"].as_str().unwrap().starts_with(&run));
        for field in ["timestamp", "message", "fingerprint"] {
            assert!(row[field].is_string(), "{row}");
        }
    }
    let stamps: Vec<&str> = rows
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap())
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] >= w[1]), "newest first");
    let top = &snapshot["top_errors"];
    assert_eq!(top["available"], true);
    assert!(!top["rows"].as_array().unwrap().is_empty());
    assert!(top["rows"][0]["count"].as_u64().unwrap() >= 1);
    app.shutdown().await.unwrap();
}

/// Serves a consumer's real metrics at `/metrics` and `/stats`, as `logpipe consumer` does, and
/// returns its `/metrics` URL (what `gateway.consumer_metrics_urls` lists).
async fn fake_consumer(stored: u64, partitions: &[(i32, i64)], stop: CancellationToken) -> String {
    let mut registry = new_registry();
    let metrics = ConsumerMetrics::register(&mut registry);
    metrics.success.inc_by(stored);
    metrics.dead_lettered("poison");
    metrics.rebalance("assign");
    for (partition, lag) in partitions {
        metrics.set_partition_lag("app", *partition, *lag);
    }
    metrics.e2e_latency.observe(0.02);
    let ops = Ops {
        registry: Arc::new(registry),
        checks: Arc::new(Vec::new()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/metrics", listener.local_addr().unwrap());
    let routes = ops_routes(ops).merge(stats_routes(metrics));
    tokio::spawn(logpipe::http::serve(listener, routes, stop));
    url
}

/// A split-mode gateway: no consumer in-process, figures from the consumers' `/stats`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_gateway_sums_its_consumers_metrics_and_names_the_missing_ones() {
    let stop = CancellationToken::new();
    let _stop = stop.clone().drop_guard();
    let a = fake_consumer(7, &[(0, 3), (1, 0)], stop.clone()).await;
    let b = fake_consumer(5, &[(2, 4)], stop.clone()).await;
    // A port nothing listens on (bound, then closed).
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/metrics", l.local_addr().unwrap())
    };

    let snapshot = |urls: Vec<String>| async move {
        let mut config = test_config("");
        config.gateway.consumer_metrics_urls = urls;
        let broker = EmbeddedBroker::start(1, &TopicSpec::from_config(&config.kafka)).unwrap();
        let mut registry = new_registry();
        let metrics = ProducerMetrics::register(&mut registry);
        let producer =
            Arc::new(Producer::new(&config, broker.bootstrap_servers(), metrics).unwrap());
        let router = gateway_router(&config, Upstream::InProcess(producer), None, registry);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let server = tokio::spawn(logpipe::http::serve(listener, router, stop.clone()));
        let (status, body) = get_json(&format!("{base}/api/v1/dashboard"), None).await;
        stop.cancel();
        server.await.unwrap().unwrap();
        assert_eq!(status, 200, "{body}");
        body
    };

    let s = snapshot(vec![a.clone(), b.clone(), dead.clone()]).await;
    let c = &s["consumer"];
    assert_eq!(c["available"], true, "{s}");
    assert_eq!(c["source"], "remote");
    assert_eq!(c["stored"], 12, "summed over both consumers");
    assert_eq!(c["dlq"]["poison"], 2);
    assert_eq!(c["rebalances"]["assign"], 2);
    assert_eq!(c["lag_total"], 7);
    assert_eq!(c["lag_max"], 4);
    assert_eq!(c["lag"].as_array().unwrap().len(), 3);
    assert_eq!(c["latency"]["count"], 2);
    let instances = c["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 3);
    assert_eq!(instances[0]["up"], true);
    assert_eq!(instances[2]["url"], dead.as_str());
    assert_eq!(instances[2]["up"], false);
    assert!(instances[2]["error"].as_str().unwrap().len() > 3);
    // No shared stores on this gateway: the error tables say so.
    assert_eq!(s["recent_errors"]["available"], false);
    assert!(s["recent_errors"]["message"]
        .as_str()
        .unwrap()
        .contains("no shared stores"));

    let s = snapshot(vec![dead.clone()]).await;
    assert_eq!(s["consumer"]["available"], false, "{s}");
    assert!(s["consumer"]["message"]
        .as_str()
        .unwrap()
        .contains("gateway.consumer_metrics_urls"));
    assert!(s["consumer"].get("stored").is_none(), "no made-up zeros");

    let s = snapshot(Vec::new()).await;
    assert_eq!(s["consumer"]["available"], false);
    assert_eq!(s["consumer"]["source"], "none");
}

// ---------------------------------------------------------------------------------------------
// Headless Chromium
// ---------------------------------------------------------------------------------------------

fn chromium() -> PathBuf {
    on_path(&["chromium", "chromium-browser", "google-chrome"]).unwrap_or_else(|| {
        panic!(
            "Chromium is not installed: this test drives the dashboard in headless Chromium. Run the \
             suite with `scripts/test.sh` (it installs Debian's `chromium`), or `apt-get install -y chromium`"
        )
    })
}

/// Headless Chromium in a test: no GPU, no sandbox (root in CI), nothing from the user profile.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--disable-gpu",
    "--no-sandbox",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--hide-scrollbars",
];

/// Runs headless Chromium on `url` with `extra` arguments (a profile of its own, so tests can run
/// side by side) and returns its stdout.
async fn headless(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(chromium());
    command
        .args(CHROMIUM_FLAGS)
        .arg("--virtual-time-budget=6000")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .expect("chromium finished within 90 s")
        .expect("chromium runs");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The opening tag of the element with `id`.
fn tag_with_id<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id} in the page"));
    let start = dom[..at].rfind('<').unwrap();
    let end = at + dom[at..].find('>').unwrap();
    &dom[start..=end]
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let at = tag.find(&key)? + key.len();
    Some(&tag[at..at + tag[at..].find('"')?])
}

/// `data-value` of the element with `id`, as a number.
fn shown(dom: &str, id: &str) -> f64 {
    let tag = tag_with_id(dom, id);
    attr(tag, "data-value")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("#{id} shows no number: {tag}"))
}

/// The inner HTML of the element with `id` (no nested element of the same tag name inside).
fn inner<'a>(dom: &'a str, id: &str, tag_name: &str) -> &'a str {
    let open = tag_with_id(dom, id);
    let start = dom.find(open).unwrap() + open.len();
    let end = start + dom[start..].find(&format!("</{tag_name}>")).unwrap();
    &dom[start..end]
}

/// The page from the element with id `from` up to the element with id `to`.
fn region<'a>(dom: &'a str, from: &str, to: &str) -> &'a str {
    let start = dom.find(tag_with_id(dom, from)).unwrap();
    let end = dom.find(tag_with_id(dom, to)).unwrap();
    &dom[start..end]
}

/// Opening tags inside `html` that carry attribute `name`.
fn tags_with<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    let key = format!(" {name}=\"");
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&key) {
        let start = rest[..at].rfind('<').unwrap();
        let end = at + rest[at..].find('>').unwrap();
        out.push(&rest[start..=end]);
        rest = &rest[end..];
    }
    out
}

/// Headless Chromium driven over the DevTools protocol, in real time (unlike `--dump-dom` with a
/// virtual time budget, where the page's polls all happen within a few real milliseconds): a
/// minimal WebSocket client, enough for CDP's request/response messages.
struct Browser {
    ws: tokio::net::TcpStream,
    next_id: u64,
    child: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn launch(width: u32, height: u32) -> Browser {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
        let profile = tempfile::tempdir().unwrap();
        let mut child = tokio::process::Command::new(chromium())
            .args(CHROMIUM_FLAGS)
            .arg("--remote-debugging-port=0")
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("chromium starts");
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID" on stderr.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(url) = line.split("DevTools listening on ws://").nth(1) {
                    return url.split(['/', ':']).nth(1).unwrap().to_string();
                }
            }
            panic!("chromium exited before opening its DevTools port");
        })
        .await
        .expect("chromium opens its DevTools port within 30 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

        let targets: Value = reqwest::get(format!("http://127.0.0.1:{port}/json/list"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let page = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .expect("a page target");
        let ws_url = page["webSocketDebuggerUrl"].as_str().unwrap();
        let path = &ws_url[ws_url.find("/devtools/").unwrap()..];
        let mut ws = tokio::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()))
            .await
            .unwrap();
        let handshake = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        ws.write_all(handshake.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        while !response.ends_with(b"\r\n\r\n") {
            response.push(ws.read_u8().await.unwrap());
        }
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 101"), "{response}");
        Browser {
            ws,
            next_id: 0,
            child,
            _profile: profile,
        }
    }

    async fn send_frame(&mut self, text: &str) {
        use tokio::io::AsyncWriteExt;
        let payload = text.as_bytes();
        let mask = [0x5a, 0x17, 0xc3, 0x9e];
        let mut frame = vec![0x81u8]; // FIN, text
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend((n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend((n as u64).to_be_bytes());
            }
        }
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.ws.write_all(&frame).await.unwrap();
    }

    async fn recv_message(&mut self) -> String {
        use tokio::io::AsyncReadExt;
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.ws.read_exact(&mut head).await.unwrap();
            let (fin, opcode) = (head[0] & 0x80 != 0, head[0] & 0x0f);
            let len = match head[1] & 0x7f {
                126 => self.ws.read_u16().await.unwrap() as usize,
                127 => self.ws.read_u64().await.unwrap() as usize,
                n => n as usize,
            };
            let mut mask = [0u8; 4];
            if head[1] & 0x80 != 0 {
                self.ws.read_exact(&mut mask).await.unwrap();
            }
            let mut payload = vec![0u8; len];
            self.ws.read_exact(&mut payload).await.unwrap();
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
            match opcode {
                0x8 => panic!("chromium closed the DevTools connection"),
                0x9 | 0xA => continue, // ping, pong
                _ => message.extend(payload),
            }
            if fin {
                return String::from_utf8(message).unwrap();
            }
        }
    }

    /// One CDP command; its `result` (events in between are skipped).
    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let request = serde_json::json!({"id": id, "method": method, "params": params});
        self.send_frame(&request.to_string()).await;
        let reply = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let message: Value = serde_json::from_str(&self.recv_message().await).unwrap();
                if message["id"] == id {
                    return message;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} within 30 s"));
        assert!(reply.get("error").is_none(), "{method}: {reply}");
        reply["result"].clone()
    }

    /// Evaluates `expression` in the page and returns its value.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                serde_json::json!({"expression": expression, "returnByValue": true}),
            )
            .await;
        assert!(result.get("exceptionDetails").is_none(), "{result}");
        result["result"]["value"].clone()
    }

    async fn updates(&mut self) -> u64 {
        // The body is null until the navigation has committed the new document.
        self.eval("Number((document.body && document.body.getAttribute('data-updates')) || 0)")
            .await
            .as_u64()
            .unwrap_or(0)
    }

    /// Waits until the page has taken `n` snapshots in all (1.5 s apart).
    async fn wait_updates(&mut self, n: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(45);
        while self.updates().await < n {
            assert!(
                std::time::Instant::now() < deadline,
                "the page did not take {n} snapshots within 45 s"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn dom(&mut self) -> String {
        self.eval("document.documentElement.outerHTML")
            .await
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The whole page, not only the viewport.
    async fn screenshot(&mut self, path: &Path) {
        let metrics = self
            .call("Page.getLayoutMetrics", serde_json::json!({}))
            .await;
        let size = &metrics["cssContentSize"];
        let clip = serde_json::json!({
            "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1,
        });
        let shot = self
            .call(
                "Page.captureScreenshot",
                serde_json::json!({"format": "png", "clip": clip, "captureBeyondViewport": true}),
            )
            .await;
        std::fs::write(path, base64_decode(shot["data"].as_str().unwrap())).unwrap();
    }

    async fn close(mut self) {
        let _ = self.child.kill().await;
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let digits: Vec<u8> = text.bytes().filter(|&c| c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &d)| n | (d as u32) << (18 - 6 * i));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn headless_chromium_shows_what_was_posted_and_live_rates() {
    chromium();
    let app = start(test_config(""), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let run = unique("dash");
    // 120 services (the record key): the records reach every partition but by a rare chance.
    let events = generate(EVENTS, 120, &run);
    assert_eq!(post_all(&base, &events, 100).await, EVENTS as u64);
    let (snapshot, with_records) = settled(&base, &run, EVENTS as u64).await;

    let mut browser = Browser::launch(1400, 1000).await;
    browser
        .call(
            "Page.navigate",
            serde_json::json!({"url": format!("{base}/dashboard")}),
        )
        .await;
    browser.wait_updates(2).await;
    let dom = browser.dom().await;

    let updated = tag_with_id(&dom, "last-update");
    assert_ne!(attr(updated, "data-generated-at"), Some(""), "{updated}");
    let body_tag = &dom[dom.find("<body").unwrap()..];
    let body_tag = &body_tag[..=body_tag.find('>').unwrap()];
    assert_eq!(attr(body_tag, "data-state"), Some("live"), "{body_tag}");
    assert!(
        tag_with_id(&dom, "error-banner").contains(" hidden"),
        "no error banner"
    );
    assert!(tag_with_id(&dom, "consumer-banner").contains(" hidden"));

    // The tiles show the counts.
    assert_eq!(shown(&dom, "stat-accepted"), EVENTS as f64);
    assert_eq!(shown(&dom, "stat-stored"), EVENTS as f64);
    assert_eq!(shown(&dom, "stat-dlq"), 0.0);
    assert_eq!(shown(&dom, "stat-rejected"), 0.0);
    assert_eq!(shown(&dom, "stat-assigned"), 12.0);
    assert!(inner(&dom, "stat-stored", "div").contains("600"));
    let (p50, p99) = (shown(&dom, "stat-p50"), shown(&dom, "stat-p99"));
    assert!(0.0 < p50 && p50 <= p99, "p50 {p50} p99 {p99}");
    assert_eq!(
        p50,
        snapshot["consumer"]["latency"]["p50_ms"].as_f64().unwrap()
    );
    assert_eq!(shown(&dom, "stat-latency-count"), EVENTS as f64);
    // Nothing moves: the rates are zero.
    assert_eq!(shown(&dom, "rate-accepted"), 0.0);
    assert_eq!(shown(&dom, "rate-stored"), 0.0);

    // One lag bar per partition with records (all 12, but by a rare chance), summing to the
    // lag tile.
    let bars = tags_with(region(&dom, "lag-bars", "lag-labels"), "data-partition");
    let mut partitions: Vec<i32> = bars
        .iter()
        .map(|t| attr(t, "data-partition").unwrap().parse().unwrap())
        .collect();
    partitions.sort();
    let expected: Vec<i32> = with_records.iter().map(|&p| p as i32).collect();
    assert_eq!(partitions, expected, "{bars:?}");
    assert!(partitions.len() >= 10, "{partitions:?}");
    let lag_sum: f64 = bars
        .iter()
        .map(|t| attr(t, "data-lag").unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(lag_sum, shown(&dom, "stat-lag"));

    // Rebalances: the group's assignment shows.
    let kinds = tags_with(
        region(&dom, "rebalance-bars", "rebalance-labels"),
        "data-kind",
    );
    let assign = kinds
        .iter()
        .find(|t| attr(t, "data-kind") == Some("assign"))
        .expect("an assign bar");
    assert!(attr(assign, "data-count").unwrap().parse::<u64>().unwrap() >= 1);

    // Recent errors: ten rows, all ERROR/FATAL of this run; the top fingerprints table is filled.
    let recent = inner(&dom, "recent-errors", "tbody");
    let rows = tags_with(recent, "data-level");
    assert_eq!(rows.len(), 10, "{recent}");
    for row in &rows {
        assert!(["ERROR", "FATAL"].contains(&attr(row, "data-level").unwrap()));
        assert!(attr(row, "data-service").unwrap().starts_with(&run));
    }
    assert!(recent.contains("failed after"), "messages are shown");
    let top = inner(&dom, "top-errors", "tbody");
    assert!(!tags_with(top, "data-fingerprint").is_empty(), "{top}");

    // Live: with traffic flowing for ~12 s the charts show rates and recent latency.
    let trickle_stop = CancellationToken::new();
    let trickle = {
        let (base, stop, run) = (base.clone(), trickle_stop.clone(), run.clone());
        tokio::spawn(async move {
            let mut posted = 0;
            while !stop.is_cancelled() {
                let batch = generate(40, 20, &format!("{run}-live{posted}"));
                post_all(&base, &batch, 40).await;
                posted += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            posted * 40
        })
    };
    let now = browser.updates().await;
    browser.wait_updates(now + 8).await;
    let dom = browser.dom().await;
    let artifacts = repo_root().join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = artifacts.join("dashboard.png");
    browser.screenshot(&png).await;
    browser.close().await;
    trickle_stop.cancel();
    let live = trickle.await.unwrap();

    assert!(shown(&dom, "rate-accepted") > 0.0, "accepted rate shown");
    assert!(shown(&dom, "stat-accepted") > EVENTS as f64);
    let legend = inner(&dom, "throughput-legend", "div");
    for series in ["accepted", "stored"] {
        let tag = tags_with(legend, "data-series")
            .into_iter()
            .find(|t| attr(t, "data-series") == Some(series))
            .unwrap();
        let last: f64 = attr(tag, "data-last").unwrap().parse().unwrap();
        assert!(last > 0.0, "{series} rate on the chart: {tag}");
    }
    let throughput = tag_with_id(&dom, "chart-throughput");
    let points: u32 = attr(throughput, "data-points").unwrap().parse().unwrap();
    assert!(points >= 10, "{throughput}");
    for series in ["accepted", "stored", "DLQ"] {
        assert!(
            inner(&dom, "chart-throughput", "svg").contains(&format!("data-series=\"{series}\""))
        );
    }
    let latency = tag_with_id(&dom, "chart-latency");
    let points: u32 = attr(latency, "data-points").unwrap().parse().unwrap();
    assert!(points > 0, "recent-latency points: {latency}");

    let bytes = std::fs::read(&png).expect("the screenshot was written");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    assert!(bytes.len() > 20_000, "a page, not a blank image");
    eprintln!("screenshot: {} ({live} live events)", png.display());
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_api_keys_the_page_asks_for_the_key_and_shows_data_with_it() {
    chromium();
    let mut config = test_config("");
    config.gateway.api_keys = vec![API_KEY.into()];
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let (status, _) = get_json(&format!("{base}/api/v1/dashboard"), None).await;
    assert_eq!(status, 401, "the data shows log messages: it needs the key");
    let page = reqwest::get(format!("{base}/dashboard")).await.unwrap();
    assert_eq!(page.status(), 200, "the page itself holds no data");

    let dom = headless(&format!("{base}/dashboard"), &["--dump-dom".into()]).await;
    let banner = tag_with_id(&dom, "error-banner");
    assert!(!banner.contains(" hidden"), "{banner}");
    assert!(
        inner(&dom, "error-banner", "div").contains("requires an API key"),
        "{}",
        inner(&dom, "error-banner", "div")
    );
    assert!(dom.contains("data-state=\"error\""));

    let dom = headless(
        &format!("{base}/dashboard#key={API_KEY}"),
        &["--dump-dom".into()],
    )
    .await;
    assert!(
        dom.contains("data-state=\"live\""),
        "the key in the fragment is sent"
    );
    assert_eq!(shown(&dom, "stat-accepted"), 0.0);
    assert!(tag_with_id(&dom, "error-banner").contains(" hidden"));
    app.shutdown().await.unwrap();
}
