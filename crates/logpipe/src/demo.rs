//! `logpipe demo`: the whole pipeline on embedded defaults (or whatever is configured), with
//! realistic traffic sent through the gateway for a while and a live progress line, then a
//! summary of what arrived where, and the API left running to explore.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::app::{App, Roles};
use crate::commands::new_table;
use crate::config::Config;
use crate::http::wait_ready;
use crate::loadgen::{self, LoadgenArgs};

/// Demo options.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Events per second of generated traffic.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// How long to send traffic.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub traffic: Duration,
    /// Stop after this long in total (default: keep serving until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
    /// Gateway listen address. [config: gateway.listen]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

/// Runs the demo until Ctrl-C (`stop`) or `--duration`.
pub async fn run(
    config: Config,
    args: DemoArgs,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let app = App::start(config, Roles::All).await?;
    let gateway = app
        .gateway_addr
        .ok_or_else(|| anyhow::anyhow!("the demo has no gateway"))?;
    let base = format!("http://{}", local(gateway));
    let stores = app
        .stores
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the demo has no stores"))?;
    let stats = app
        .consumer_stats
        .clone()
        .ok_or_else(|| anyhow::anyhow!("the demo has no consumer"))?;
    wait_ready(&base, Duration::from_secs(30))
        .await
        .context("the pipeline did not start")?;
    // Traffic starts once the consumer owns its partitions, so the first events do not wait
    // for the group to form.
    let joined = Instant::now() + Duration::from_secs(30);
    while app.assigned_partitions() == 0 && Instant::now() < joined && !stop.is_cancelled() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "\nlogpipe demo: gateway on {base}; sending {} events/s for {}\n",
        args.rate,
        humantime::format_duration(args.traffic)
    );

    let load = tokio::spawn(loadgen::run(LoadgenArgs {
        target: base.clone(),
        rate: args.rate,
        duration: args.traffic,
        total: None,
        batch: 100,
        invalid_ratio: 0.01,
        services: 8,
        concurrency: 8,
        gzip: false,
        protocol: Default::default(),
        api_key: None,
        // The demo reads the consumer's figures in-process.
        metrics_url: Some("none".into()),
        settle: Duration::ZERO,
        request_timeout: Duration::from_secs(30),
        marked: Default::default(),
        json: false,
        quiet: true,
    }));
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while !load.is_finished() && !stop.is_cancelled() {
        tick.tick().await;
        let latency = stats
            .latency_ms()
            .map(|(p50, _, p99)| format!("e2e p50 {p50:.1} ms  p99 {p99:.1} ms"))
            .unwrap_or_default();
        eprint!(
            "\r  {:>5.1}s  stored {:>9}  {latency}        ",
            started.elapsed().as_secs_f64(),
            stats.stored()
        );
    }
    let report = load.await??;
    // Let the consumer catch up with what the gateway accepted.
    let deadline = Instant::now() + Duration::from_secs(15);
    while stats.stored() < report.events_accepted
        && Instant::now() < deadline
        && !stop.is_cancelled()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!();
    let stored = stores.store.count().await.unwrap_or(0);
    let aggregated = stores
        .aggregates
        .stats(&logpipe_aggregates::StatsQuery {
            since: chrono::Utc::now() - chrono::Duration::hours(1),
            until: chrono::Utc::now() + chrono::Duration::minutes(1),
            service: None,
            top_n: 3,
        })
        .await
        .map(|s| s.all_time.total)
        .unwrap_or(0);
    let (p50, p95, p99) = stats.latency_ms().unwrap_or_default();
    let mut table = new_table(&["DEMO SUMMARY", "VALUE"]);
    for (k, v) in [
        ("events sent", report.events_sent.to_string()),
        (
            "accepted by the gateway (Kafka acked)",
            report.events_accepted.to_string(),
        ),
        (
            "rejected as invalid (1% on purpose)",
            report.events_rejected.to_string(),
        ),
        ("stored in the log store", stored.to_string()),
        ("counted in the aggregates", aggregated.to_string()),
        (
            "throughput",
            format!("{:.0} events/s", report.accepted_per_s),
        ),
        (
            "end-to-end latency p50 / p95 / p99",
            format!("{p50:.1} / {p95:.1} / {p99:.1} ms"),
        ),
        (
            "gateway request latency p99",
            format!("{:.1} ms", report.latency_ms.p99),
        ),
    ] {
        table.add_row(vec![k.to_string(), v]);
    }
    println!("{table}");
    if stored != report.events_accepted || aggregated != report.events_accepted {
        println!("WARNING: stored or counted differs from accepted; see the log above.");
    }
    println!(
        "\nThe API keeps running. Try:\n  open {base}/dashboard in a browser (live charts)\n  curl -s '{base}/api/v1/logs?level=ERROR&limit=3'\n  curl -s '{base}/api/v1/stats?since=15m'\n  curl -s {base}/metrics | grep log_consumer_success\n"
    );
    match args.duration {
        Some(total) => {
            let left = total.saturating_sub(started.elapsed());
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(left) => {}
            }
        }
        None => {
            println!("Press Ctrl-C to stop.");
            stop.cancelled().await;
        }
    }
    app.shutdown().await
}

/// 0.0.0.0 is where we listen, not where we connect.
fn local(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}
