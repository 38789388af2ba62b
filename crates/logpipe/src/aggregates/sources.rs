//! What a `logpipe aggregates` command works on: the log store and the aggregates named by the
//! configuration, opened for a long read (no statement timeout, a patient Redis timeout), and how
//! it shows progress (a bar on a terminal, log lines in the consumer's reconciler).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use logpipe_aggregates::{AggOptions, Aggregates};
use logpipe_store::{LogStore, StoreOptions};

use super::rebuild::Progress;
use crate::config::Config;

/// A snapshot or a correction batch may take longer than an apply; an outage still fails it.
const REDIS_TIMEOUT: Duration = Duration::from_secs(30);

/// The store and the aggregates of `config`, or an error saying why this command cannot run.
pub async fn open(config: &Config) -> anyhow::Result<(LogStore, Aggregates)> {
    if config.redis.url.is_empty() {
        anyhow::bail!(
            "the aggregates are in-process (redis.url is empty): they live inside `logpipe run` and start empty with it, \
             like its embedded store. Point --redis-url (LOGPIPE_REDIS_URL) at the Redis the consumers write to"
        );
    }
    if config.postgres.url.is_empty() {
        anyhow::bail!(
            "no log store to count from: postgres.url is empty (the embedded store lives inside `logpipe run`). \
             Set --postgres-url (LOGPIPE_POSTGRES_URL) to the consumers' PostgreSQL"
        );
    }
    let store = open_store(config).await?;
    let aggregates = Aggregates::open(
        config.redis.connect_url().expose(),
        &command_agg_options(config),
    )
    .await
    .map_err(|e| anyhow::anyhow!("connecting to the aggregates: {e}"))?;
    Ok((store, aggregates))
}

/// The log store for counting: a small pool of its own, named `logpipe-aggregates` in
/// `pg_stat_activity`, without the query API's statement timeout.
pub async fn open_store(config: &Config) -> anyhow::Result<LogStore> {
    let options = StoreOptions {
        pool_size: 1,
        application_name: "logpipe-aggregates".into(),
        statement_timeout: None,
        ..config.postgres.store_options()
    };
    LogStore::open(config.postgres.connect_url().expose(), &options)
        .await
        .map_err(|e| anyhow::anyhow!("opening the log store: {e}"))
}

/// The aggregates' options for a command or the reconciler: a patient timeout.
pub fn command_agg_options(config: &Config) -> AggOptions {
    AggOptions {
        timeout: REDIS_TIMEOUT,
        ..config.redis.agg_options()
    }
}

/// Who runs a rebuild, for anyone who finds its lease taken.
pub fn holder(what: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{what} on {host}, pid {}", std::process::id())
}

/// A progress bar on stderr (hidden without a terminal, or when `wanted` is false).
pub struct Bar(ProgressBar);

pub fn bar(verb: &str, wanted: bool) -> Bar {
    if !wanted || !std::io::stderr().is_terminal() {
        return Bar(ProgressBar::hidden());
    }
    let bar = ProgressBar::new(0);
    let template = format!(
        "{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} chunks {verb}  {{msg}}"
    );
    bar.set_style(
        ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.enable_steady_tick(Duration::from_millis(250));
    Bar(bar)
}

impl Progress for Bar {
    fn start(&self, chunks: u64) {
        self.0.set_length(chunks);
    }
    fn chunk(&self, done: u64, rows: u64, rows_per_second: f64) {
        self.0.set_position(done);
        self.0
            .set_message(format!("{rows} rows, {rows_per_second:.0} rows/s"));
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// Progress as log lines, at most one every 10 seconds: for the consumer's reconciler.
pub struct LogLines {
    last: std::sync::Mutex<std::time::Instant>,
    chunks: std::sync::atomic::AtomicU64,
}

impl Default for LogLines {
    fn default() -> Self {
        LogLines {
            last: std::sync::Mutex::new(std::time::Instant::now()),
            chunks: Default::default(),
        }
    }
}

impl Progress for LogLines {
    fn start(&self, chunks: u64) {
        self.chunks
            .store(chunks, std::sync::atomic::Ordering::Relaxed);
    }
    fn chunk(&self, done: u64, rows: u64, rows_per_second: f64) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.elapsed() >= Duration::from_secs(10) {
            *last = std::time::Instant::now();
            let chunks = self.chunks.load(std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                done,
                chunks,
                rows,
                rows_per_second = rows_per_second as u64,
                "aggregates rebuild: counting the log store"
            );
        }
    }
    fn finish(&self) {}
}
