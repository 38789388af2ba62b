//! The command line: `logpipe lag`'s flags, and the runner that samples once or keeps redrawing
//! with `--watch`.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::measure::{check_group_known, measure};
use super::print::print_report;
use super::probe::LAG_SECONDS_BUDGET;
use super::reader::LagReader;
use super::report::{build_report, threshold_reached};
use super::snapshot::Snapshot;
use super::status::Status;
use crate::config::Config;

/// `logpipe lag` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct LagArgs {
    /// Consumer group (default: consumer.group_id, log-processor-group).
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Topic to show (repeatable). Default: consumer.topics (kafka.topic) plus any topic the
    /// group's members are assigned.
    #[arg(long = "topic", value_name = "TOPIC")]
    pub topics: Vec<String>,
    /// Samples in the status window (at least 2).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub samples: u32,
    /// Time between samples (and between redraws with --watch).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Redraw every --interval until Ctrl-C, with statuses over the last --samples samples.
    #[arg(long)]
    pub watch: bool,
    /// Print JSON (with --watch: one JSON object per line per refresh).
    #[arg(long)]
    pub json: bool,
    /// Exit with status 3 when any partition is at or worse than STATUS
    /// (severity: OK < WARN < STOP < STALL < REWIND).
    #[arg(
        long,
        value_name = "STATUS",
        value_enum,
        ignore_case = true,
        conflicts_with = "watch"
    )]
    pub fail_on: Option<Status>,
}

/// `logpipe lag`.
pub async fn run(config: &Config, args: &LagArgs, stop: CancellationToken) -> anyhow::Result<()> {
    let group = args
        .group
        .clone()
        .unwrap_or_else(|| config.consumer.group_id.clone());
    let reader = LagReader::new(config, &group, &args.topics)?;
    let samples = args.samples as usize;
    if !args.watch {
        if !args.json {
            eprintln!(
                "sampling group `{group}` {samples} times, {} apart...",
                humantime::format_duration(args.interval)
            );
        }
        let report = tokio::select! {
            report = measure(&reader, samples, args.interval) => report?,
            _ = stop.cancelled() => return Ok(()),
        };
        print_report(&report, args.json)?;
        if let Some(threshold) = args.fail_on {
            if let Some(reached) = threshold_reached(&report, threshold) {
                return Err(reached.into());
            }
        }
        return Ok(());
    }
    let clear = std::io::stdout().is_terminal() && !args.json;
    let mut window: VecDeque<Snapshot> = VecDeque::with_capacity(samples);
    let mut ticker = tokio::time::interval(args.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return Ok(()),
        }
        let snapshot = reader.snapshot().await?;
        if window.is_empty() {
            check_group_known(&reader, &snapshot).await?;
        }
        if window.len() == samples {
            window.pop_front();
        }
        window.push_back(snapshot);
        let seconds = reader
            .lag_seconds(window.back().expect("just pushed"), LAG_SECONDS_BUDGET)
            .await;
        let report = build_report(&group, window.make_contiguous(), &seconds);
        if clear {
            print!("\x1b[2J\x1b[H");
        }
        print_report(&report, args.json)?;
        if !args.json {
            println!(
                "(refreshing every {}; Ctrl-C to stop)",
                humantime::format_duration(args.interval)
            );
        }
        std::io::stdout().flush()?;
    }
}
