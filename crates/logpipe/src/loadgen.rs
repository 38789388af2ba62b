//! `logpipe loadgen`: drives a gateway with realistic log traffic at a fixed rate (open loop) and
//! reports what it saw: accepted and rejected events, throughput, and request latency
//! percentiles.
//!
//! Latency is measured from when each request was *scheduled* to go, not from when it actually
//! went, so a server that falls behind shows up in the percentiles instead of silently slowing
//! the generator down (the "coordinated omission" trap of closed-loop load tools).
//! Request bodies are generated up front and reused: events carry no timestamp (the gateway
//! stamps them on receipt), so reuse costs nothing in realism and keeps the generator's CPU off a
//! machine it shares with the system under test.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use tokio::sync::{Mutex, Semaphore};

use crate::commands::new_table;
use crate::telemetry::stats::{stats_url, ConsumerSnapshot};

/// What to send, how fast, for how long.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadgenArgs {
    /// Gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub target: String,
    /// Events per second in total; 0 sends as fast as the concurrency allows.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// How long to send.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Stop after sending this many events (whichever of --duration and --total comes first).
    #[arg(long)]
    pub total: Option<u64>,
    /// Events per request (1 uses the single-event route).
    #[arg(long, default_value_t = 500)]
    pub batch: usize,
    /// Fraction of events that are invalid (missing message, bad level, ...), 0.0 to 1.0.
    #[arg(long, default_value_t = 0.0)]
    pub invalid_ratio: f64,
    /// Number of distinct services (record keys).
    #[arg(long, default_value_t = 10)]
    pub services: usize,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Gzip request bodies.
    #[arg(long)]
    pub gzip: bool,
    /// API key (sent as `Authorization: Bearer`).
    #[arg(long, env = "LOGPIPE_LOADGEN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The consumer to read progress and end-to-end latency from, by its metrics URL: its
    /// `/stats` beside it is read (default: the target's, which has them under `logpipe run`; in
    /// split mode pass the consumer's, e.g. http://127.0.0.1:8082/metrics). `none` skips it.
    #[arg(long, value_name = "URL")]
    pub metrics_url: Option<String>,
    /// After sending, wait up to this long for the consumer to store what was accepted.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print nothing (callers that show their own progress, like `logpipe demo`).
    #[arg(skip)]
    pub quiet: bool,
}

/// What a run measured.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub requests: u64,
    pub events_sent: u64,
    pub events_accepted: u64,
    pub events_rejected: u64,
    /// Requests answered 5xx or not answered (network error, timeout).
    pub requests_failed: u64,
    /// Requests answered 4xx as a whole (all invalid, too large, unauthorized).
    pub requests_refused: u64,
    pub elapsed_s: f64,
    pub accepted_per_s: f64,
    pub latency_ms: Percentiles,
    /// Requests that started later than scheduled because all slots were busy.
    pub late_starts: u64,
    /// What the consumer stored during the run (and the settle wait), from its metrics.
    pub consumer: Option<ConsumerSide>,
}

/// The consumer's side of a run, read from its `/stats` before and after.
#[derive(Debug, Default, Serialize)]
pub struct ConsumerSide {
    pub metrics_url: String,
    /// Records the consumer stored (`log_consumer_success_total` delta).
    pub stored: u64,
    /// Records it sent to the dead-letter topic.
    pub dead_lettered: u64,
    /// Gateway receipt → stored, estimated from the histogram buckets of the run (as
    /// Prometheus' `histogram_quantile`), in ms. None when nothing was stored.
    pub e2e_latency_ms: Option<Percentiles>,
}

/// The consumer's figures now, from its `/stats` (beside `url`, its `/metrics`).
async fn consumer_snapshot(client: &reqwest::Client, url: &str) -> Option<ConsumerSnapshot> {
    let response = client.get(stats_url(url)).send().await.ok()?;
    response.error_for_status().ok()?.json().await.ok()
}

/// Waits (up to `settle`) until the consumer stored what was accepted, then measures.
async fn consumer_side(
    client: &reqwest::Client,
    url: &str,
    before: &ConsumerSnapshot,
    accepted: u64,
    settle: Duration,
    progress: &ProgressBar,
) -> Option<ConsumerSide> {
    let deadline = Instant::now() + settle;
    let mut after = consumer_snapshot(client, url).await?;
    let stored = |after: &ConsumerSnapshot| after.stored.saturating_sub(before.stored);
    while stored(&after) < accepted && Instant::now() < deadline {
        progress.set_message(format!(
            "waiting for the consumer: {} / {accepted} stored",
            stored(&after)
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
        after = consumer_snapshot(client, url).await?;
    }
    let run = after.e2e_latency.since(&before.e2e_latency);
    let q = |p| run.quantile(p).map(|s| s * 1000.0);
    let e2e_latency_ms = match (q(0.5), q(0.95), q(0.99)) {
        (Some(p50), Some(p95), Some(p99)) => Some(Percentiles {
            p50,
            p95,
            p99,
            max: q(1.0).unwrap_or(p99),
        }),
        _ => None,
    };
    Some(ConsumerSide {
        metrics_url: url.to_string(),
        stored: stored(&after),
        dead_lettered: after
            .dead_lettered_total()
            .saturating_sub(before.dead_lettered_total()),
        e2e_latency_ms,
    })
}

#[derive(Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Default)]
struct Tally {
    report: Report,
    latency_us: Option<Histogram<u64>>,
}

const LEVELS: &[(&str, u32)] = &[
    ("DEBUG", 5),
    ("INFO", 70),
    ("WARN", 15),
    ("ERROR", 9),
    ("FATAL", 1),
];
const TEMPLATES: &[&str] = &[
    "GET /api/orders/{n} completed in {ms} ms",
    "payment failed for order {n}: card declined",
    "connection to 10.0.{a}.{b}:5432 reset after {ms} ms",
    "user {n} logged in from 192.168.{a}.{b}",
    "cache miss for key session:{hex}",
    "retrying request {hex} (attempt {a})",
    "slow query took {ms} ms: SELECT * FROM items WHERE id = {n}",
    "job {hex} finished: {n} rows processed",
];

/// One generated event (valid, or invalid in a realistic way).
fn event(rng: &mut SmallRng, services: usize, invalid_ratio: f64) -> serde_json::Value {
    let service = format!("svc-{}", rng.random_range(0..services.max(1)));
    let total: u32 = LEVELS.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total);
    let level = LEVELS
        .iter()
        .find(|(_, w)| {
            if pick < *w {
                true
            } else {
                pick -= w;
                false
            }
        })
        .map(|(l, _)| *l)
        .unwrap_or("INFO");
    let template = TEMPLATES[rng.random_range(0..TEMPLATES.len())];
    let message = template
        .replace("{n}", &rng.random_range(1..1_000_000u32).to_string())
        .replace("{ms}", &rng.random_range(1..5000u32).to_string())
        .replace("{a}", &rng.random_range(0..256u32).to_string())
        .replace("{b}", &rng.random_range(0..256u32).to_string())
        .replace("{hex}", &format!("{:016x}", rng.random::<u64>()));
    let trace_id = format!(
        "{:016x}{:016x}",
        rng.random::<u64>() | 1,
        rng.random::<u64>()
    );
    let region = ["eu", "us", "ap"][rng.random_range(0..3)];
    let build = rng.random_range(100..110);
    let mut event = json!({
        "level": level,
        "service": service,
        "message": message,
        "host": format!("host-{}", rng.random_range(0..8)),
        "trace_id": trace_id,
        "attributes": {"region": region, "build": build}
    });
    if invalid_ratio > 0.0 && rng.random_bool(invalid_ratio.clamp(0.0, 1.0)) {
        match rng.random_range(0..3) {
            0 => {
                event.as_object_mut().map(|o| o.remove("message"));
            }
            1 => event["level"] = json!("LOUD"),
            _ => event["service"] = json!("bad service name!"),
        }
    }
    event
}

/// A request body ready to send, with how many events it holds.
struct Body {
    bytes: Bytes,
    events: u64,
}

fn bodies(args: &LoadgenArgs) -> anyhow::Result<Vec<Body>> {
    let mut rng = SmallRng::seed_from_u64(0x1095_15e5 ^ args.services as u64);
    (0..64)
        .map(|_| {
            let events: Vec<_> = (0..args.batch.max(1))
                .map(|_| event(&mut rng, args.services, args.invalid_ratio))
                .collect();
            let json = if args.batch <= 1 {
                serde_json::to_vec(&events[0])?
            } else {
                serde_json::to_vec(&events)?
            };
            let bytes = if args.gzip {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                encoder.write_all(&json)?;
                encoder.finish()?
            } else {
                json
            };
            Ok(Body {
                bytes: Bytes::from(bytes),
                events: events.len() as u64,
            })
        })
        .collect()
}

/// Runs the load and returns the report (also printed unless `quiet`).
pub async fn run(args: LoadgenArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(args.batch >= 1, "--batch must be at least 1");
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.invalid_ratio),
        "--invalid-ratio must be between 0 and 1"
    );
    let bodies = Arc::new(bodies(&args)?);
    let url = if args.batch <= 1 {
        format!("{}/api/v1/logs", args.target.trim_end_matches('/'))
    } else {
        format!("{}/api/v1/logs/batch", args.target.trim_end_matches('/'))
    };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?;
    // Fail fast with a useful message when nothing listens there.
    client
        .get(format!("{}/health/live", args.target.trim_end_matches('/')))
        .send()
        .await
        .with_context(|| {
            format!(
                "no gateway answers at {}; start one with `logpipe run` or pass --target",
                args.target
            )
        })?;

    let metrics_url = match args.metrics_url.as_deref() {
        Some("none") => None,
        Some(url) => Some(url.to_string()),
        None => Some(format!("{}/metrics", args.target.trim_end_matches('/'))),
    };
    let before = match &metrics_url {
        Some(url) => consumer_snapshot(&client, url).await,
        None => None,
    };

    let interval =
        (args.rate > 0).then(|| Duration::from_secs_f64(args.batch as f64 / args.rate as f64));
    let tally = Arc::new(Mutex::new(Tally {
        latency_us: Some(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        ..Default::default()
    }));
    let slots = Arc::new(Semaphore::new(args.concurrency));
    let progress = progress_bar(args.duration, args.json || args.quiet);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut next = started;
    let mut i = 0usize;
    let requests_cap = args.total.map(|t| t.div_ceil(args.batch as u64) as usize);
    while started.elapsed() < args.duration && requests_cap.is_none_or(|cap| i < cap) {
        if interval.is_some() {
            let now = Instant::now();
            if next > now {
                tokio::time::sleep(next - now).await;
            }
        }
        let scheduled = if interval.is_some() {
            next
        } else {
            Instant::now()
        };
        let permit = slots.clone().acquire_owned().await?;
        if interval.is_some() && scheduled.elapsed() > Duration::from_millis(5) {
            tally.lock().await.report.late_starts += 1;
        }
        let body = &bodies[i % bodies.len()];
        let (bytes, events) = (body.bytes.clone(), body.events);
        let mut request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(bytes);
        if args.gzip {
            request = request.header("content-encoding", "gzip");
        }
        if let Some(key) = &args.api_key {
            request = request.bearer_auth(key);
        }
        let task_tally = tally.clone();
        tasks.spawn(async move {
            let outcome = request.send().await;
            let status = outcome.as_ref().map(|r| r.status().as_u16()).ok();
            let answer: Option<serde_json::Value> = match outcome {
                Ok(response) => response.json().await.ok(),
                Err(_) => None,
            };
            let micros = scheduled.elapsed().as_micros() as u64;
            drop(permit);
            let mut t = task_tally.lock().await;
            t.report.requests += 1;
            t.report.events_sent += events;
            if let Some(h) = t.latency_us.as_mut() {
                let _ = h.record(micros.max(1));
            }
            match (status, answer) {
                (Some(s), Some(a)) if (200..300).contains(&s) => {
                    let accepted = a["accepted"].as_u64().unwrap_or(0);
                    t.report.events_accepted += accepted;
                    t.report.events_rejected += events.saturating_sub(accepted);
                }
                (Some(s), _) if (400..500).contains(&s) => {
                    t.report.requests_refused += 1;
                    t.report.events_rejected += events;
                }
                _ => t.report.requests_failed += 1,
            }
        });
        // Reap finished tasks so the set does not grow with the run.
        while tasks.try_join_next().is_some() {}
        i += 1;
        if let Some(interval) = interval {
            next += interval;
        }
        if i % 16 == 0 {
            let t = tally.lock().await;
            let secs = started.elapsed().as_secs_f64().max(0.001);
            progress.set_position(started.elapsed().as_millis() as u64);
            progress.set_message(format!(
                "{:>9.0} events/s accepted   {} accepted   {} failed requests",
                t.report.events_accepted as f64 / secs,
                t.report.events_accepted,
                t.report.requests_failed
            ));
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = tally.lock().await.report.events_accepted;
    let consumer = match (&metrics_url, &before) {
        (Some(url), Some(before)) => {
            consumer_side(&client, url, before, accepted, args.settle, &progress).await
        }
        _ => None,
    };
    progress.finish_and_clear();
    let mut t = tally.lock().await;
    let h = t
        .latency_us
        .take()
        .unwrap_or_else(|| Histogram::new(3).expect("histogram"));
    let mut report = std::mem::take(&mut t.report);
    report.elapsed_s = elapsed;
    report.consumer = consumer;
    report.accepted_per_s = report.events_accepted as f64 / elapsed;
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    report.latency_ms = Percentiles {
        p50: ms(0.50),
        p95: ms(0.95),
        p99: ms(0.99),
        max: h.max() as f64 / 1000.0,
    };
    if args.quiet {
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&args, &report);
    }
    Ok(report)
}

fn progress_bar(duration: Duration, hidden: bool) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(duration.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {percent:>3}%  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    bar
}

fn print_report(args: &LoadgenArgs, r: &Report) {
    let mut table = new_table(&["METRIC", "VALUE"]);
    let rate = if args.rate == 0 {
        "unlimited".to_string()
    } else {
        format!("{} events/s", args.rate)
    };
    let rows: Vec<(&str, String)> = vec![
        ("target", args.target.clone()),
        ("offered rate", rate),
        (
            "batch",
            format!(
                "{} events/request{}",
                args.batch,
                if args.gzip { ", gzip" } else { "" }
            ),
        ),
        ("duration", format!("{:.1} s", r.elapsed_s)),
        ("requests", r.requests.to_string()),
        ("events sent", r.events_sent.to_string()),
        ("events accepted (2xx)", r.events_accepted.to_string()),
        ("events rejected (invalid)", r.events_rejected.to_string()),
        ("requests refused (4xx)", r.requests_refused.to_string()),
        (
            "requests failed (5xx/network)",
            r.requests_failed.to_string(),
        ),
        (
            "throughput",
            format!("{:.0} events/s accepted", r.accepted_per_s),
        ),
        ("request latency p50", format!("{:.2} ms", r.latency_ms.p50)),
        ("request latency p95", format!("{:.2} ms", r.latency_ms.p95)),
        ("request latency p99", format!("{:.2} ms", r.latency_ms.p99)),
        ("request latency max", format!("{:.2} ms", r.latency_ms.max)),
        ("late starts", r.late_starts.to_string()),
    ];
    let mut rows = rows;
    match &r.consumer {
        Some(c) => {
            rows.push(("stored by the consumer", c.stored.to_string()));
            rows.push(("sent to the dead-letter topic", c.dead_lettered.to_string()));
            if let Some(e) = &c.e2e_latency_ms {
                rows.push((
                    "end-to-end p50 / p95 / p99",
                    format!(
                        "{:.1} / {:.1} / {:.1} ms (from histogram buckets)",
                        e.p50, e.p95, e.p99
                    ),
                ));
            }
        }
        None => rows.push((
            "consumer side",
            "not measured (no consumer metrics at --metrics-url)".to_string(),
        )),
    }
    for (k, v) in rows {
        table.add_row(vec![k.to_string(), v]);
    }
    println!("{table}");
    if r.late_starts > 0 {
        println!(
            "{} requests started late (all {} slots busy): the target could not keep up with the offered rate; \
             latency above counts the wait.",
            r.late_starts, args.concurrency
        );
    }
}
