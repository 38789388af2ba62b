//! The `logpipe dlq stats | show | replay` commands as the binary runs them: call the library
//! function, then print its report as JSON or as the text of [`super::print`].

use tokio_util::sync::CancellationToken;

use super::filter::{ReplayArgs, ShowArgs};
use super::print::{replay_text, show_summary, show_table, stats_text};
use super::replay::{replay, ReplayOptions};
use super::show::show;
use super::stats::stats;
use crate::config::Config;

/// `logpipe dlq stats [--json]`.
pub async fn run_stats(config: &Config, json: bool) -> anyhow::Result<()> {
    let s = stats(config).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", stats_text(&s));
    }
    Ok(())
}

/// `logpipe dlq show`.
pub async fn run_show(config: &Config, args: &ShowArgs) -> anyhow::Result<()> {
    let shown = show(config, &args.filter, args.limit).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&shown.records)?);
    } else if let Some(table) = show_table(&shown.records) {
        println!("{table}");
    }
    eprint!(
        "{}",
        show_summary(&shown, &config.kafka.dlq_topic, &args.filter.describe())
    );
    Ok(())
}

/// `logpipe dlq replay`.
pub async fn run_replay(
    config: &Config,
    args: &ReplayArgs,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let report = replay(config, &ReplayOptions::from(args), stop).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!(
            "{}",
            replay_text(
                &report,
                &config.kafka.dlq_topic,
                &config.kafka.parked_topic,
                &args.filter.describe()
            )
        );
    }
    if let Some(failure) = &report.failure {
        anyhow::bail!(
            "the replay stopped early: {failure}. Progress up to that point is committed to group `{}`; fix the cause \
             and run `logpipe dlq replay` again to continue from there",
            report.group
        );
    }
    Ok(())
}
