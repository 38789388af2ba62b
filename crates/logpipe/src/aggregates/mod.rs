//! `logpipe aggregates verify|rebuild`: the aggregates are derived data, and the log store is
//! their source of truth. `verify` compares them minute by minute; `rebuild` corrects them from
//! the store while the consumers keep writing. The consumer's reconciler
//! ([`crate::consumer::reconcile`]) runs the same rebuild by itself after a loss.
//!
//! - `args`: the command line.
//! - `window`: the minutes covered, clamped to what both stores keep, and their chunks.
//! - `count`: one chunk counted on both sides at the same watermarks (why that is exact).
//! - `rebuild`: lease, count, correct; `verify`: count and compare.
//! - `print`: tables, summaries, JSON; `sources`: the stores a command opens, and its progress.

pub mod args;
pub mod count;
pub mod print;
pub mod rebuild;
pub mod sources;
pub mod verify;
pub mod window;

use std::fmt;

use chrono::Utc;

pub use args::{AggregatesCommand, RebuildArgs, VerifyArgs, WindowArgs};
use rebuild::{RebuildPlan, TotalsChoice};
use window::{Limits, Window};

use crate::config::Config;

/// `verify` found differences: exit status 3, apart from failures to verify (1).
#[derive(Debug)]
pub struct DifferencesFound;

impl fmt::Display for DifferencesFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the aggregates differ from the log store")
    }
}

impl std::error::Error for DifferencesFound {}

pub async fn run(config: &Config, command: &AggregatesCommand) -> anyhow::Result<()> {
    let (store, aggregates) = sources::open(config).await?;
    let limits = Limits {
        minute_ttl: config.redis.minute_ttl,
        retention_cutoff: store.retention_cutoff(Utc::now() + chrono::Duration::days(1)),
    };
    match command {
        AggregatesCommand::Verify(args) => {
            let window = window_of(&args.window, limits)?;
            let progress = sources::bar("checked", !args.window.json);
            let report = verify::verify(
                &store,
                &aggregates,
                window,
                args.window.service.as_deref(),
                args.window.chunk,
                &progress,
            )
            .await?;
            if args.window.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&print::verify_json(&report))?
                );
            } else {
                print!("{}", print::verify_text(&report, args.limit));
            }
            if report.agrees() {
                Ok(())
            } else {
                Err(DifferencesFound.into())
            }
        }
        AggregatesCommand::Rebuild(args) => {
            let plan = RebuildPlan {
                window: window_of(&args.window, limits)?,
                service: args.window.service.clone(),
                chunk: args.window.chunk,
                totals: if args.keep_totals {
                    TotalsChoice::Keep
                } else {
                    TotalsChoice::Adjust
                },
                holder: sources::holder("logpipe aggregates rebuild"),
            };
            let progress = sources::bar("counted", !args.window.json);
            let report = rebuild::rebuild(&store, &aggregates, &plan, &progress).await?;
            if args.window.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&print::rebuild_json(&report))?
                );
            } else {
                print!("{}", print::rebuild_text(&report));
            }
            Ok(())
        }
    }
}

fn window_of(args: &WindowArgs, limits: Limits) -> anyhow::Result<Window> {
    Window::new(Utc::now(), args.from(), args.until, limits).map_err(anyhow::Error::msg)
}
