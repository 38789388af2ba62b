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
//!
//! With `--run LABEL` the load is *marked* instead (`loadgen/marked.rs`): every event is unique and
//! carries a marker, and every request's outcome is written to a file, for scripts that check
//! afterwards that each accepted event was stored exactly once. `events.rs` makes the bodies,
//! `consumer_side.rs` reads the consumer's figures, `report.rs` holds what a run reports.

use std::sync::Arc;
use std::time::{Duration, Instant};

mod consumer_side;
mod events;
pub mod marked;
mod protocol;
mod report;

use anyhow::Context;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{Mutex, Semaphore};

use self::consumer_side::{consumer_side, consumer_snapshot};
use self::events::{bodies, encode};
use self::marked::Marked;
pub use self::marked::MarkedArgs;
use self::protocol::Outcome;
pub use self::protocol::Protocol;
pub use self::report::{ConsumerSide, Percentiles, Report};
use crate::commands::new_table;

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
    /// The ingest protocol: the same events as a logpipe JSON batch, an OTLP/HTTP export
    /// (protobuf or JSON), a Loki JSON push or an Elasticsearch bulk body.
    #[arg(long, value_enum, default_value_t = Protocol::Logpipe)]
    pub protocol: Protocol,
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
    /// No answer within this long fails a request (it is never retried).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub request_timeout: Duration,
    /// Marked load: unique markers and a record of every request (scripts' exactly-once checks).
    #[command(flatten)]
    pub marked: MarkedArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Print nothing (callers that show their own progress, like `logpipe demo`).
    #[arg(skip)]
    pub quiet: bool,
}

#[derive(Default)]
struct Tally {
    report: Report,
    latency_us: Option<Histogram<u64>>,
}

/// Why a request got no HTTP answer, in a word (marked load records it).
fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "Timeout"
    } else if e.is_connect() {
        "ConnectError"
    } else if e.is_body() || e.is_decode() {
        "BodyError"
    } else {
        "RequestError"
    }
}

/// Runs the load and returns the report (also printed unless `quiet`).
pub async fn run(args: LoadgenArgs) -> anyhow::Result<Report> {
    anyhow::ensure!(args.batch >= 1, "--batch must be at least 1");
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    anyhow::ensure!(
        (0.0..=1.0).contains(&args.invalid_ratio),
        "--invalid-ratio must be between 0 and 1"
    );
    anyhow::ensure!(
        args.protocol == Protocol::Logpipe || args.marked.run.is_none(),
        "--run (marked load) speaks logpipe's JSON API only; drop --protocol"
    );
    let bodies = Arc::new(bodies(
        args.protocol,
        args.batch,
        args.services,
        args.invalid_ratio,
        args.gzip,
    )?);
    let url = format!(
        "{}{}",
        args.target.trim_end_matches('/'),
        args.protocol.path(args.batch)
    );
    let protocol = args.protocol;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .tcp_nodelay(true)
        .timeout(args.request_timeout)
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
    let marked = Marked::new(&args.marked);
    let marked_progress = marked.as_ref().map(Marked::spawn_progress);
    let stop_file = args.marked.stop_file.as_deref();
    while started.elapsed() < args.duration
        && requests_cap.is_none_or(|cap| i < cap)
        && !stop_file.is_some_and(|f| f.exists())
    {
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
        let first = (i * args.batch) as u64;
        let (bytes, events) = match &marked {
            Some(m) => {
                let body = encode(protocol, &m.events(first, args.batch as u64), args.gzip)?;
                (body.bytes, body.events)
            }
            None => {
                let body = &bodies[i % bodies.len()];
                (body.bytes.clone(), body.events)
            }
        };
        let mut request = client
            .post(&url)
            .header("content-type", protocol.content_type())
            .body(bytes);
        if args.gzip {
            request = request.header("content-encoding", "gzip");
        }
        if let Some(key) = &args.api_key {
            request = request.bearer_auth(key);
        }
        let task_tally = tally.clone();
        let task_marked = marked.clone();
        tasks.spawn(async move {
            let outcome = request.send().await;
            let status = outcome.as_ref().map(|r| r.status().as_u16()).ok();
            let error = outcome.as_ref().err().map_or("", error_kind);
            let answer = match outcome {
                Ok(response) => response.bytes().await.ok(),
                Err(_) => None,
            };
            let micros = scheduled.elapsed().as_micros() as u64;
            drop(permit);
            if let Some(m) = task_marked {
                let json = answer
                    .as_deref()
                    .and_then(|a| serde_json::from_slice::<serde_json::Value>(a).ok());
                let answered = status.map(|s| (s, json.as_ref()));
                m.record(first, events, marked::status(answered, events, error));
            }
            let mut t = task_tally.lock().await;
            t.report.requests += 1;
            t.report.events_sent += events;
            if let Some(h) = t.latency_us.as_mut() {
                let _ = h.record(micros.max(1));
            }
            let outcome = match (status, answer) {
                (Some(s), Some(a)) => protocol.outcome(s, &a, events),
                _ => Outcome::Failed,
            };
            match outcome {
                Outcome::Accepted(accepted) => {
                    t.report.events_accepted += accepted;
                    t.report.events_rejected += events.saturating_sub(accepted);
                }
                Outcome::Refused => {
                    t.report.requests_refused += 1;
                    t.report.events_rejected += events;
                }
                Outcome::Failed => t.report.requests_failed += 1,
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
    if let (Some(m), Some(task)) = (&marked, marked_progress) {
        task.abort();
        m.finish()?;
    }
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
        ("protocol", format!("{:?}", args.protocol).to_lowercase()),
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
