//! The command line of `logpipe aggregates verify|rebuild`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};

use crate::time::parse_time;

#[derive(Debug, Subcommand)]
pub enum AggregatesCommand {
    /// Compare the aggregates with the log store, minute by minute; exit 3 on any difference.
    #[command(
        long_about = "Compares the aggregates (Redis) with the log store (PostgreSQL), minute by minute,\n\
        service by service, level by level, and error fingerprint by fingerprint, and prints a table of the differences.\n\
        Exact while the consumers write: the store is counted at the aggregates' watermarks, read in the same instant as\n\
        the counts. Reads only.\n\n\
        Exit status: 0 they agree; 3 differences found; 1 could not verify; 2 bad configuration.\n\n  \
        logpipe aggregates verify --since 2h\n  \
        logpipe aggregates verify --service checkout --json"
    )]
    Verify(VerifyArgs),
    /// Recount the aggregates from the log store and correct them, while the consumers keep writing.
    #[command(
        long_about = "Recounts a window of minutes (default: every minute the aggregates keep) from the log store and corrects\n\
        the aggregates to match: per-minute counts by service and level, top error fingerprints and their templates, and\n\
        the all-time totals by the same difference (left alone with --keep-totals, or when Redis has evicted keys). The\n\
        consumers keep running; no event is counted twice or missed. One rebuild at a time per key prefix (a lease in\n\
        Redis); the correction is applied in batches of whole minutes, so readers never see half a minute.\n\n  \
        logpipe aggregates rebuild\n  \
        logpipe aggregates rebuild --since 6h --service checkout"
    )]
    Rebuild(RebuildArgs),
}

/// Which minutes and services, and how to print.
#[derive(Debug, Args)]
pub struct WindowArgs {
    /// Start this long ago (`90m`, `6h`, `2d`) or at this time (RFC 3339). Default: as far back as
    /// the aggregates keep minutes (redis.minute_ttl), less a 15-minute margin.
    #[arg(long, value_name = "AGE|TIME", value_parser = parse_time, conflicts_with = "from")]
    pub since: Option<DateTime<Utc>>,
    /// Start at this time (RFC 3339) or this long ago.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<DateTime<Utc>>,
    /// End before this time (default: an hour from now).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    /// Only this service's counts.
    #[arg(long, value_name = "NAME")]
    pub service: Option<String>,
    /// Minutes per store statement and snapshot.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub chunk: Duration,
    /// Print JSON instead of tables (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

impl WindowArgs {
    pub fn from(&self) -> Option<DateTime<Utc>> {
        self.since.or(self.from)
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub window: WindowArgs,
    /// Rows per table at most.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

#[derive(Debug, Args)]
pub struct RebuildArgs {
    #[command(flatten)]
    pub window: WindowArgs,
    /// Leave the all-time totals as they are.
    #[arg(long)]
    pub keep_totals: bool,
}
