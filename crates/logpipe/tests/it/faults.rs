//! Faults: broker faults injected through the embedded mock cluster
//! (request errors on Produce, Fetch, OffsetCommit, JoinGroup; the broker down and back) leave
//! every acknowledged event stored exactly once with exact aggregates; 10,000 malformed HTTP
//! requests are all answered 4xx with bounded memory; 1,000 poison records produced straight to
//! Kafka all reach the DLQ with their reasons.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use logpipe::app::{App, Roles};
use logpipe::config::Config;
use logpipe::consumer::{ConsumerMetrics, ConsumerService};
use logpipe::dlq::headers as dlq;
use logpipe::kafka::embedded::EmbeddedBroker;
use logpipe::telemetry::metrics::new_registry;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::ClientConfig;
use serde_json::{json, Value};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::consumer_flow::{all_logs, assert_exact, generate};
use crate::support::{eventually, gzip, metric, read_all, start, test_config, unique};

use RDKafkaRespErr::*;

// ---------------------------------------------------------------------------------------------
// Broker faults
// ---------------------------------------------------------------------------------------------

/// What the posting loop saw: events the gateway acknowledged (202) and events of batches it
/// refused with 503 (they may or may not be stored, but never twice).
#[derive(Default)]
struct Posted {
    acked: HashSet<u64>,
    maybe: HashSet<u64>,
    refused_batches: usize,
    /// When each answer came, and its status.
    answers: Vec<(Instant, u16)>,
}

/// Posts `events` in batches of `batch`, one request at a time, calling `fault(i)` before batch
/// `i` (so a test injects its fault while traffic flows). Only 202 and 503 are acceptable.
async fn post_through_faults(
    base: &str,
    events: &[Value],
    batch: usize,
    mut fault: impl FnMut(usize),
) -> Posted {
    let client = reqwest::Client::new();
    let mut posted = Posted::default();
    for (i, chunk) in events.chunks(batch).enumerate() {
        fault(i);
        let response = client
            .post(format!("{base}/api/v1/logs/batch"))
            .json(&chunk)
            .send()
            .await
            .expect("the gateway answers (no connection error)");
        let status = response.status().as_u16();
        posted.answers.push((Instant::now(), status));
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let seqs = chunk
            .iter()
            .map(|e| e["attributes"]["seq"].as_u64().unwrap());
        match status {
            202 => {
                assert_eq!(
                    body["accepted"].as_u64(),
                    Some(chunk.len() as u64),
                    "{body}"
                );
                posted.acked.extend(seqs);
            }
            503 => {
                posted.refused_batches += 1;
                posted.maybe.extend(seqs);
            }
            other => panic!("batch {i}: unexpected {other}: {body}"),
        }
    }
    posted
}

/// Waits for every acknowledged event, then checks: each stored once, nothing stored that was
/// not posted, every acknowledged one stored, and aggregates exact over what is stored.
async fn assert_recovered(base: &str, run: &str, events: &[Value], posted: &Posted, what: &str) {
    let acked = posted.acked.len();
    eventually(
        Duration::from_secs(40),
        &format!("{what}: {acked} acknowledged events stored"),
        || async { all_logs(base, run).await.len() >= acked },
    )
    .await;
    // Stragglers (a 503'd batch that did reach Kafka) get a moment to land too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let logs = all_logs(base, run).await;
    let seqs: Vec<u64> = logs
        .iter()
        .map(|l| l["attributes"]["seq"].as_u64().unwrap())
        .collect();
    let stored: HashSet<u64> = seqs.iter().copied().collect();
    assert_eq!(stored.len(), seqs.len(), "{what}: no duplicates");
    let lost: Vec<&u64> = posted.acked.difference(&stored).collect();
    assert!(lost.is_empty(), "{what}: acknowledged but lost: {lost:?}");
    let unexpected: Vec<&u64> = stored
        .iter()
        .filter(|s| !posted.acked.contains(s) && !posted.maybe.contains(s))
        .collect();
    assert!(unexpected.is_empty(), "{what}: stored, never posted");
    let refused_stored = stored.len() - acked;
    println!(
        "{what}: {} posted, {acked} acknowledged, {} refused with 503 in {} batches \
         ({refused_stored} of those stored anyway), {} stored",
        events.len(),
        posted.maybe.len(),
        posted.refused_batches,
        stored.len()
    );
    let stored_events: Vec<Value> = events
        .iter()
        .filter(|e| stored.contains(&e["attributes"]["seq"].as_u64().unwrap()))
        .cloned()
        .collect();
    assert_exact(base, run, &stored_events).await;
}

/// Starts the whole app on the embedded broker and waits until its consumer owns partitions.
async fn start_embedded(config: Config) -> App {
    let app = start(config, Roles::All).await;
    eventually(Duration::from_secs(30), "the consumer is assigned", || {
        let n = app.assigned_partitions();
        async move { n > 0 }
    })
    .await;
    app
}

fn inject(broker: &EmbeddedBroker, api: RDKafkaApiKey, errors: &'static [RDKafkaRespErr]) {
    broker
        .with_cluster(move |c| c.request_errors(api, errors))
        .unwrap();
}

/// Posts 400 events in 20 batches, injecting `errors` on `api` before the first and the
/// eleventh batch; everything is acknowledged (the errors are retriable) and stored once.
async fn transient_errors_flow(api: RDKafkaApiKey, errors: &'static [RDKafkaRespErr]) {
    let app = start_embedded(test_config("")).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let run = unique("fault");
    let events = generate(400, 8, &run);
    let broker = app.embedded().expect("embedded broker");
    let posted = post_through_faults(&base, &events, 20, |i| {
        if i == 0 || i == 10 {
            inject(broker, api, errors);
        }
    })
    .await;
    assert_recovered(&base, &run, &events, &posted, &format!("{api:?}")).await;
    assert_eq!(posted.acked.len(), 400, "retriable errors refuse nothing");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_request_errors_lose_and_duplicate_nothing() {
    transient_errors_flow(
        RDKafkaApiKey::Produce,
        &[
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_request_errors_lose_and_duplicate_nothing() {
    transient_errors_flow(
        RDKafkaApiKey::Fetch,
        &[
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
            RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_commit_errors_lose_and_duplicate_nothing() {
    // REBALANCE_IN_PROGRESS on a commit makes the member rejoin: records whose commit failed
    // are delivered again and must be recognised as stored.
    transient_errors_flow(
        RDKafkaApiKey::OffsetCommit,
        &[
            RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
        ],
    )
    .await;
}

const ASSIGNS: &str = "log_consumer_rebalance_events_total{kind=\"assign\"}";
const REVOKES: &str = "log_consumer_rebalance_events_total{kind=\"revoke\"}";

const JOIN_ERRORS: &[RDKafkaRespErr] = &[
    RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
    RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
    RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
];

/// Posts `events` slowly from a task, so they flow while a rebalance goes on.
fn post_in_background(base: &str, events: &[Value]) -> tokio::task::JoinHandle<Posted> {
    let (base, events) = (base.to_string(), events.to_vec());
    tokio::spawn(async move {
        post_through_faults(&base, &events, 20, |_| {
            std::thread::sleep(Duration::from_millis(100))
        })
        .await
    })
}

/// Real rebalances with JoinGroup errors: a second member joins the app's group (partitions move
/// to it), then leaves (they move back); each time the JoinGroup requests fail a few times first.
/// Events flow throughout and are stored by whichever member owns their partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_group_errors_during_rebalances_lose_and_duplicate_nothing() {
    let mut config = test_config("");
    // The mock coordinator waits up to the session timeout for members to rejoin.
    config.consumer.session_timeout = Duration::from_secs(6);
    config.consumer.drain_timeout = Duration::from_secs(3);
    let app = start_embedded(config.clone()).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let run = unique("fault");
    let events = generate(400, 8, &run);
    let broker = app.embedded().expect("embedded broker");
    let stores = app.stores.clone().unwrap();
    let mut posted = Posted::default();
    let mut merge = |p: Posted| {
        posted.acked.extend(p.acked);
        posted.maybe.extend(p.maybe);
        posted.refused_batches += p.refused_batches;
    };

    // A second member joins: the app's member gives up partitions.
    let revokes = metric(&base, REVOKES).await;
    inject(broker, RDKafkaApiKey::JoinGroup, JOIN_ERRORS);
    let poster = post_in_background(&base, &events[..200]);
    let stop = CancellationToken::new();
    let mut registry = new_registry();
    let second = ConsumerService::start(
        &config,
        app.bootstrap.as_deref().unwrap(),
        Arc::clone(&stores.store),
        stores.aggregates.clone(),
        Vec::new(),
        ConsumerMetrics::register(&mut registry),
        stop.clone(),
    )
    .unwrap();
    eventually(
        Duration::from_secs(40),
        "partitions moved to the second member",
        || {
            let base = base.clone();
            async move { metric(&base, REVOKES).await > revokes }
        },
    )
    .await;
    merge(poster.await.unwrap());

    // It leaves: the partitions come back.
    let assigns = metric(&base, ASSIGNS).await;
    inject(broker, RDKafkaApiKey::JoinGroup, JOIN_ERRORS);
    let poster = post_in_background(&base, &events[200..]);
    stop.cancel();
    second.wait().await;
    eventually(
        Duration::from_secs(40),
        "the partitions came back to the app's member",
        || {
            let base = base.clone();
            async move { metric(&base, ASSIGNS).await > assigns }
        },
    )
    .await;
    merge(poster.await.unwrap());

    assert_recovered(&base, &run, &events, &posted, "JoinGroup").await;
    assert_eq!(posted.acked.len(), 400, "retriable errors refuse nothing");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_down_and_back_is_503_meanwhile_then_no_loss_or_duplicates() {
    let mut config = test_config("");
    config.producer.delivery_timeout = Duration::from_secs(2);
    config.gateway.request_timeout = Duration::from_secs(3);
    let app = start_embedded(config).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let run = unique("fault");
    let events = generate(600, 8, &run);
    let broker = app.embedded().expect("embedded broker");
    // The single mock broker goes down after 5 batches and comes back 4 s later; batches go on
    // being posted meanwhile (each refused within the request timeout).
    let down_at = std::cell::Cell::new(None::<Instant>);
    let up_at = std::cell::Cell::new(None::<Instant>);
    let posted = post_through_faults(&base, &events, 20, |i| {
        if i == 5 {
            broker.with_cluster(|c| c.broker_down(1)).unwrap().unwrap();
            down_at.set(Some(Instant::now()));
        }
        if let Some(t) = down_at.get() {
            if t.elapsed() >= Duration::from_secs(4) {
                broker.with_cluster(|c| c.broker_up(1)).unwrap().unwrap();
                down_at.set(None);
                up_at.set(Some(Instant::now()));
            }
        }
    })
    .await;
    if down_at.get().is_some() {
        broker.with_cluster(|c| c.broker_up(1)).unwrap().unwrap();
        up_at.set(Some(Instant::now()));
    }
    assert!(
        posted.refused_batches > 0,
        "the gateway refused batches while the broker was down"
    );
    // After the broker is back the gateway accepts again.
    let tail = generate(620, 8, &run)[600..].to_vec();
    let mut tail_posted = Posted::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while tail_posted.acked.is_empty() {
        assert!(Instant::now() < deadline, "the gateway did not recover");
        tail_posted = post_through_faults(&base, &tail, 20, |_| {}).await;
        if tail_posted.acked.is_empty() {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let up_at = up_at.get().unwrap();
    let first_ack = posted
        .answers
        .iter()
        .chain(&tail_posted.answers)
        .find(|(t, status)| *t > up_at && *status == 202)
        .map(|(t, _)| *t)
        .unwrap();
    println!(
        "broker down: 503s while down, first 202 {:?} after the broker came back",
        first_ack - up_at
    );
    let mut all = posted;
    all.acked.extend(tail_posted.acked);
    all.maybe.extend(tail_posted.maybe);
    all.refused_batches += tail_posted.refused_batches;
    let mut events = events;
    events.extend(tail);
    assert_recovered(&base, &run, &events, &all, "broker down").await;
    app.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Bad input at volume
// ---------------------------------------------------------------------------------------------

const CATEGORIES: [&str; 10] = [
    "random_bytes",
    "invalid_utf8",
    "deep_nesting",
    "huge_fields",
    "wrong_types",
    "truncated_gzip",
    "malformed_ndjson",
    "empty_body",
    "wrong_content_type",
    "bad_batch_shape",
];

struct BadRequest {
    category: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    gzip: bool,
    body: Vec<u8>,
}

fn random_string(rng: &mut SmallRng, len: usize) -> String {
    (0..len)
        .map(|_| rng.random_range(b'a'..=b'z') as char)
        .collect()
}

/// One malformed request of `category`; none of them holds a single valid event.
fn bad_request(rng: &mut SmallRng, category: &'static str, max_body: usize) -> BadRequest {
    let path = if rng.random_bool(0.5) {
        "/api/v1/logs"
    } else {
        "/api/v1/logs/batch"
    };
    let batch = path.ends_with("batch");
    let wrap = |event: Vec<u8>| {
        if batch {
            let mut b = b"[".to_vec();
            b.extend(event);
            b.push(b']');
            b
        } else {
            event
        }
    };
    let mut req = BadRequest {
        category,
        path,
        content_type: Some("application/json"),
        gzip: false,
        body: Vec::new(),
    };
    match category {
        "random_bytes" => {
            let len = rng.random_range(1..4096);
            let mut body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Never a valid JSON document by accident.
            body[0] = b'\x01';
            req.body = body;
        }
        "invalid_utf8" => {
            let bad: &[u8] = [
                &b"\xff\xfe"[..],
                b"\xc3\x28",
                b"\xed\xa0\x80",
                b"\xf8\x88\x80",
            ][rng.random_range(0..4)];
            let mut event = b"{\"service\":\"svc\",\"message\":\"abc".to_vec();
            event.extend_from_slice(bad);
            event.extend_from_slice(b"def\"}");
            if rng.random_bool(0.3) {
                event = b"{\"service\":\"sv".to_vec();
                event.extend_from_slice(bad);
                event.extend_from_slice(b"\",\"message\":\"m\"}");
            }
            req.body = wrap(event);
        }
        "deep_nesting" => {
            let depth = rng.random_range(65..10_001);
            let body = if rng.random_bool(0.5) {
                // Nested arrays (the batch route's outer array, then more).
                format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
            } else {
                // A valid-looking event whose attributes nest deeply.
                let inner = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
                wrap(
                    format!(r#"{{"service":"svc","message":"m","attributes":{inner}}}"#)
                        .into_bytes(),
                )
            };
            req.body = body;
        }
        "huge_fields" => {
            let roll = rng.random_range(0..100);
            req.body = if roll < 2 {
                // The whole body over the limit.
                let event = format!(
                    r#"{{"service":"svc","message":"{}"}}"#,
                    "x".repeat(max_body + 1024)
                );
                wrap(event.into_bytes())
            } else if roll < 50 {
                let n = rng.random_range(64 * 1024 + 1..200 * 1024);
                wrap(format!(r#"{{"service":"svc","message":"{}"}}"#, "m".repeat(n)).into_bytes())
            } else if roll < 75 {
                let n = rng.random_range(300..20_000);
                wrap(format!(r#"{{"service":"{}","message":"m"}}"#, "s".repeat(n)).into_bytes())
            } else {
                // Too many or too big attributes.
                let keys = rng.random_range(200..2000);
                let attrs: serde_json::Map<String, Value> = (0..keys)
                    .map(|k| (format!("k{k}"), json!("v".repeat(100))))
                    .collect();
                wrap(
                    serde_json::to_vec(&json!({"service":"svc","message":"m","attributes":attrs}))
                        .unwrap(),
                )
            };
        }
        "wrong_types" => {
            let event = match rng.random_range(0..7) {
                0 => json!({"service": 42, "message": "m"}),
                1 => json!({"service": "svc", "message": ["m"]}),
                2 => json!({"service": "svc", "message": "m", "level": 7}),
                3 => json!({"service": "svc", "message": "m", "timestamp": true}),
                4 => json!({"service": "svc", "message": "m", "attributes": "not an object"}),
                5 => json!({"service": null, "message": {"nested": 1}}),
                _ => json!(rng.random::<u32>()),
            };
            req.body = wrap(serde_json::to_vec(&event).unwrap());
        }
        "truncated_gzip" => {
            let event = json!({"service": "svc", "message": random_string(rng, 200)});
            let full = gzip(&wrap(serde_json::to_vec(&event).unwrap()));
            let cut = rng.random_range(1..full.len() - 8);
            req.body = full[..cut].to_vec();
            req.gzip = true;
        }
        "malformed_ndjson" => {
            req.path = "/api/v1/logs/batch";
            req.content_type = Some("application/x-ndjson");
            let lines: Vec<String> = (0..rng.random_range(1..50))
                .map(|_| match rng.random_range(0..4) {
                    0 => format!("{{\"service\":\"svc\",\"mess{}", random_string(rng, 5)),
                    1 => "[1,2,3]".to_string(),
                    2 => format!("not json {}", random_string(rng, 10)),
                    _ => r#"{"service":"svc","message":"m"} trailing"#.to_string(),
                })
                .collect();
            req.body = lines.join("\n").into_bytes();
        }
        "empty_body" => {
            req.body = match rng.random_range(0..4) {
                0 => Vec::new(),
                1 => b"   \n\t ".to_vec(),
                2 => wrap(b"{}".to_vec()),
                _ => {
                    if batch {
                        b"[]".to_vec()
                    } else {
                        b"null".to_vec()
                    }
                }
            };
        }
        "wrong_content_type" => {
            req.content_type = [
                None,
                Some("text/plain"),
                Some("application/xml"),
                Some("multipart/form-data; boundary=x"),
                Some("application/x-www-form-urlencoded"),
            ][rng.random_range(0..5)];
            req.body = wrap(br#"{"service":"svc","message":"valid but mislabelled"}"#.to_vec());
        }
        "bad_batch_shape" => {
            req.path = "/api/v1/logs/batch";
            req.body = match rng.random_range(0..4) {
                0 => br#"{"service":"svc","message":"an object, not an array"}"#.to_vec(),
                1 => br#"[{"service":"svc","message":"m"},"#.to_vec(),
                2 => br#"[1, "two", null, true]"#.to_vec(),
                _ => br#"[{"service":"svc","message":"m"}] [1]"#.to_vec(),
            };
        }
        other => unreachable!("{other}"),
    }
    req
}

/// The test process's resident set size, in KiB (the app runs in this process).
fn vm_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_malformed_requests_are_all_4xx_with_bounded_memory() {
    let config = test_config("");
    let max_body = config.gateway.max_body_bytes;
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .build()
        .unwrap();
    let rss_before = vm_rss_kib();
    let started = Instant::now();
    // Generated as they are sent (one seeded RNG per request), so the test's own buffers stay
    // small and the RSS figures are the gateway's.
    let results: Vec<(&'static str, Result<u16, String>, Vec<u8>)> =
        futures::stream::iter((0..10_000u64).map(|i| {
            let mut rng = SmallRng::seed_from_u64(0x1095_7e57 ^ i);
            let r = bad_request(
                &mut rng,
                CATEGORIES[i as usize % CATEGORIES.len()],
                max_body,
            );
            let client = client.clone();
            let base = base.clone();
            async move {
                let mut request = client.post(format!("{base}{}", r.path));
                if let Some(ct) = r.content_type {
                    request = request.header("content-type", ct);
                }
                if r.gzip {
                    request = request.header("content-encoding", "gzip");
                }
                let sample: Vec<u8> = r.body.iter().take(120).copied().collect();
                let outcome = match request.body(r.body).send().await {
                    Ok(response) => Ok(response.status().as_u16()),
                    Err(e) => Err(format!("{e:?}")),
                };
                (r.category, outcome, sample)
            }
        }))
        .buffer_unordered(16)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let rss_after = vm_rss_kib();

    let mut histogram: BTreeMap<&str, BTreeMap<String, u32>> = BTreeMap::new();
    let mut failures = Vec::new();
    for (category, outcome, sample) in &results {
        let code = match outcome {
            Ok(code) => code.to_string(),
            Err(_) => "connection error".to_string(),
        };
        *histogram
            .entry(category)
            .or_default()
            .entry(code.clone())
            .or_default() += 1;
        if !matches!(outcome, Ok(c) if (400..500).contains(c)) {
            failures.push(format!(
                "{category}: {outcome:?} for {:?}",
                String::from_utf8_lossy(sample)
            ));
        }
    }
    println!("10,000 malformed requests in {elapsed:?}; status codes per category:");
    for (category, codes) in &histogram {
        println!("  {category:<20} {codes:?}");
    }
    println!(
        "VmRSS before {} MiB, after {} MiB, growth {} MiB",
        rss_before / 1024,
        rss_after / 1024,
        rss_after.saturating_sub(rss_before) / 1024
    );
    assert_eq!(results.len(), 10_000);
    assert!(
        failures.is_empty(),
        "{} requests not answered 4xx, e.g. {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    let live = client
        .get(format!("{base}/health/live"))
        .send()
        .await
        .expect("still serving");
    assert_eq!(live.status(), 200);
    assert!(
        rss_after.saturating_sub(rss_before) < 200 * 1024,
        "memory grew by more than 200 MiB"
    );
    app.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Poison records at volume
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_poison_records_all_reach_the_dlq_with_reasons() {
    let mut config = test_config("");
    config.limits.max_message_bytes = 1024;
    let app = start_embedded(config.clone()).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let bootstrap = app.bootstrap.clone().unwrap();
    let mut rng = SmallRng::seed_from_u64(0xdead_beef);
    let kinds = [
        "random_bytes",
        "invalid_utf8",
        "truncated_json",
        "wrong_type",
        "oversize",
        "empty",
        "not_an_object",
    ];
    let poison: Vec<(Vec<u8>, Vec<u8>)> = (0..1000)
        .map(|i| {
            let key = format!("k{}", i % 17).into_bytes();
            let value = match kinds[i % kinds.len()] {
                "random_bytes" => {
                    let mut v: Vec<u8> = (0..rng.random_range(1..512))
                        .map(|_| rng.random())
                        .collect();
                    v[0] = 0x01;
                    v
                }
                "invalid_utf8" => b"{\"service\":\"a\",\"message\":\"\xff\xfe\"}".to_vec(),
                "truncated_json" => {
                    let full = format!(
                        r#"{{"service":"a","message":"{}"}}"#,
                        random_string(&mut rng, 40)
                    );
                    full.as_bytes()[..rng.random_range(1..full.len() - 1)].to_vec()
                }
                "wrong_type" => {
                    br#"{"timestamp":"2026-11-25T10:00:00Z","service":42,"message":"x"}"#.to_vec()
                }
                "oversize" => serde_json::to_vec(&json!({
                    "timestamp": chrono::Utc::now().to_rfc3339(),
                    "service": "a",
                    "message": "x".repeat(2000),
                }))
                .unwrap(),
                "empty" => Vec::new(),
                _ => b"[1,2,3]".to_vec(),
            };
            (key, value)
        })
        .collect();

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let topic = config.kafka.topic.clone();
    let deliveries = futures::future::join_all(poison.iter().map(|(key, value)| {
        producer.send(
            FutureRecord::<[u8], [u8]>::to(&topic)
                .key(key.as_slice())
                .payload(value.as_slice()),
            Duration::from_secs(10),
        )
    }))
    .await;
    assert!(deliveries.iter().all(Result::is_ok), "all produced");

    let dead = read_all(&bootstrap, &config.kafka.dlq_topic, 1000).await;
    assert_eq!(dead.len(), 1000, "every poison record in the DLQ, once");
    let mut reasons: BTreeMap<String, u32> = BTreeMap::new();
    let mut seen = HashSet::new();
    for d in &dead {
        assert_eq!(d.header(dlq::ERROR_CLASS), Some("poison"), "{d:?}");
        let reason = d.header(dlq::ERROR_TYPE).unwrap_or_default();
        assert!(!reason.is_empty(), "a reason: {d:?}");
        assert!(!d.header(dlq::ERROR_MESSAGE).unwrap_or_default().is_empty());
        *reasons.entry(reason.to_string()).or_default() += 1;
        assert!(
            seen.insert((
                d.header(dlq::ORIGINAL_PARTITION).unwrap().to_string(),
                d.header(dlq::ORIGINAL_OFFSET).unwrap().to_string()
            )),
            "one DLQ record per original"
        );
    }
    println!("DLQ reasons: {reasons:?}");
    eventually(
        Duration::from_secs(20),
        "the DLQ metric counts 1000",
        || {
            let base = base.clone();
            async move {
                metric(&base, "log_consumer_dlq_records_total{class=\"poison\"}").await == 1000.0
            }
        },
    )
    .await;
    let mut by_value: HashMap<Vec<u8>, u32> = HashMap::new();
    for d in &dead {
        *by_value
            .entry(d.raw_value.clone().unwrap_or_default())
            .or_default() += 1;
    }
    for (_, value) in &poison {
        assert!(by_value.contains_key(value), "value bytes kept unchanged");
    }
    app.shutdown().await.unwrap();
}

/// Attributes are kept as raw text, so ingest does not hit serde_json's recursion limit, but the
/// stores do when they read rows back: the deepest accepted attributes must still be queryable,
/// and deeper ones are refused at the door.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deepest_accepted_attributes_can_still_be_queried() {
    let app = start_embedded(test_config("")).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let run = unique("deep");
    let client = reqwest::Client::new();
    let nested = |depth: usize| format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
    let post = |depth: usize| {
        let body = format!(
            r#"{{"service":"{run}-svc","message":"depth {depth}","attributes":{}}}"#,
            nested(depth)
        );
        client
            .post(format!("{base}/api/v1/logs"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let refused = post(65).await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_json", "{body}");
    assert_eq!(post(64).await.unwrap().status(), 202);
    eventually(
        Duration::from_secs(30),
        "the deep event is queryable",
        || {
            let (base, run) = (base.clone(), run.clone());
            async move {
                let page = reqwest::get(format!(
                    "{base}/api/v1/logs?limit=10&since=2000-01-01T00:00:00Z&service={run}-svc"
                ))
                .await
                .unwrap();
                assert_eq!(page.status(), 200, "the query API reads the row back");
                let page: Value = page.json().await.unwrap();
                page["logs"].as_array().is_some_and(|l| l.len() == 1)
            }
        },
    )
    .await;
    app.shutdown().await.unwrap();
}
