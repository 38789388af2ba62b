//! Real-time aggregates of processed logs: counts per minute by service and level, the top error
//! fingerprints, and all-time totals. Redis in production; an in-process store as the embedded
//! default. Both sit behind one API, [`Aggregates`], and keep the same promise.
//!
//! # The promise: a replayed record is never counted twice
//! Kafka delivers at least once. Every store keeps a per-(topic, partition) *applied-offset
//! watermark* next to the counters, and [`Aggregates::apply`] checks and moves the watermarks in
//! the same atomic step as the increments (one Lua script in Redis, one mutex-protected step in
//! memory). A [`BatchDelta`] says which offset range (after, through] of each partition it
//! covers; if any partition's stored watermark is not the delta's `after`, the whole apply is
//! refused with [`ApplyOutcome::Conflict`] and nothing is applied.
//!
//! The consumer's loop, per batch:
//! 1. [`Aggregates::watermarks`] for the batch's partitions (cache them; re-read after a
//!    rebalance);
//! 2. drop records at or below their partition's watermark; [`BatchDelta::cover`] each
//!    partition's range, [`BatchDelta::add`] each remaining record;
//! 3. [`Aggregates::apply`]:
//!    - `Applied` → commit offsets;
//!    - `Conflict` → take the actual watermarks it names (or re-read them), rebuild the delta
//!      from the records above them, apply again. A conflict whose actual watermark is at or past
//!      the batch's last offset means the batch is already counted (a replay, or a retry after an
//!      apply that timed out but ran): nothing left to count, commit;
//!    - `Err(e)` → pause and retry the same delta ([`AggError::is_outage`] says whether it is an
//!      outage or a configuration problem worth an alert; either way, do not commit).
//!
//! # Map
//! - `lib.rs` (here): [`Aggregates`] (the one API), [`AggOptions`], [`ApplyOutcome`],
//!   [`AggError`].
//! - `delta`: [`BatchDelta`], one batch's increments pre-aggregated in memory.
//! - `stats`: [`StatsQuery`] and [`Stats`]; range clamping and the fold from per-minute data to
//!   a `Stats`, shared by both backends.
//! - `redis`: [`RedisAggregates`]; its module header documents the key layout and the apply
//!   script's arguments; the script itself is `script.lua`.
//! - `memory`: [`MemoryAggregates`], the same semantics behind a mutex.
//! - `rebuild`: rebuilding the counts from the log store after the aggregates lost data: the
//!   lease ([`RebuildLease`]), [`Snapshot`], the correction ([`CorrectReport`]) and the
//!   reconciliation requests, dispatched to `redis_rebuild` (with its `rebuild_*.lua` scripts)
//!   and `memory_rebuild`; `correction` splits a correction into batches of whole minutes.
//!
//! Time buckets are the *event* timestamp's minute (UTC), not processing time.

mod correction;
mod delta;
mod memory;
mod rebuild;
mod redis;
mod stats;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::Duration;

pub use delta::{BatchDelta, Contribution};
pub use memory::MemoryAggregates;
pub use rebuild::{CorrectReport, RebuildLease, Snapshot};
pub use redis::RedisAggregates;
pub use stats::{MinuteCount, Stats, StatsQuery, TopError, Totals};

/// How the aggregates are kept. `Default` gives the production values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggOptions {
    /// Prefix of every Redis key (`{key_prefix}:m:...`), so several deployments or tests can
    /// share one Redis. Letters, digits and `: . _ -` only (it also becomes a SCAN pattern).
    /// Ignored by the in-memory store.
    pub key_prefix: String,
    /// How long a minute bucket lives after its last write. Also caps how far back a
    /// [`StatsQuery`] reaches (with at most 24 h of minutes per query).
    pub minute_ttl: Duration,
    /// How long a fingerprint's template is kept after the last record that carried it.
    pub fingerprint_ttl: Duration,
    /// Upper bound on every Redis call (connect, command, script), after which it fails as
    /// [`AggError::Unavailable`]. Bounded so an outage pauses the consumer quickly instead of
    /// hanging a batch. Ignored by the in-memory store.
    pub timeout: Duration,
    /// PEM file of the CA certificate(s) to trust for a `rediss://` server instead of the
    /// system's roots (a private CA). `redis.tls_ca_file` in the configuration.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) presented to a server that asks for one (Redis
    /// `tls-auth-clients yes`). Needs [`AggOptions::tls_key_file`] too.
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of [`AggOptions::tls_cert_file`].
    pub tls_key_file: Option<PathBuf>,
}

impl AggOptions {
    pub const DEFAULT_KEY_PREFIX: &'static str = "logpipe";
    pub const DEFAULT_MINUTE_TTL: Duration = Duration::from_secs(48 * 3600);
    pub const DEFAULT_FINGERPRINT_TTL: Duration = Duration::from_secs(48 * 3600);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

    /// Checks the cross-field rules; the error names the offending field.
    pub fn validate(&self) -> Result<(), AggError> {
        let prefix_ok = !self.key_prefix.is_empty()
            && self
                .key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'));
        if !prefix_ok {
            return Err(AggError::Other(format!(
                "aggregates key_prefix {:?} must be non-empty and contain only A-Z, a-z, 0-9, ':', '.', '_' and '-'",
                self.key_prefix
            )));
        }
        for (name, value) in [
            ("minute_ttl", self.minute_ttl),
            ("fingerprint_ttl", self.fingerprint_ttl),
            ("timeout", self.timeout),
        ] {
            if value < Duration::from_secs(1) {
                return Err(AggError::Other(format!(
                    "aggregates {name} must be at least 1s, got {value:?}"
                )));
            }
        }
        Ok(())
    }

    /// The rules of the TLS files for the aggregates at `url`: a client certificate comes with
    /// its key, and the files need a `rediss://` URL. Checked when the aggregates open, and by
    /// the configuration at load, so `logpipe config check` reports them without connecting.
    pub fn check_tls(&self, url: &str) -> Result<(), AggError> {
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(AggError::Other(
                "`redis.tls_cert_file` and `redis.tls_key_file` go together (a client certificate and its private key): set both, or neither"
                    .to_owned(),
            ));
        }
        if self.has_tls_files() && !url.starts_with("rediss://") {
            let shown = if url.is_empty() {
                "empty: in-process aggregates".to_owned()
            } else {
                redis::redact_url(url)
            };
            return Err(AggError::Other(format!(
                "`redis.tls_ca_file`, `redis.tls_cert_file` and `redis.tls_key_file` apply to TLS connections only, and `redis.url` ({shown}) is not one: use rediss://, or remove the TLS files"
            )));
        }
        Ok(())
    }

    /// Whether any TLS file is configured (they need a `rediss://` URL).
    pub fn has_tls_files(&self) -> bool {
        self.tls_ca_file.is_some() || self.tls_cert_file.is_some() || self.tls_key_file.is_some()
    }
}

impl Default for AggOptions {
    fn default() -> Self {
        AggOptions {
            key_prefix: Self::DEFAULT_KEY_PREFIX.to_owned(),
            minute_ttl: Self::DEFAULT_MINUTE_TTL,
            fingerprint_ttl: Self::DEFAULT_FINGERPRINT_TTL,
            timeout: Self::DEFAULT_TIMEOUT,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

/// What [`Aggregates::apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Every increment and every watermark was applied.
    Applied { records: u64 },
    /// Nothing was applied: these partitions' stored watermarks differ from what the delta
    /// expected. Each entry is (topic, partition, actual watermark; -1 = none).
    Conflict { partitions: Vec<(String, i32, i64)> },
}

/// Why an aggregates call failed. Callers branch on [`AggError::is_outage`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum AggError {
    /// The store cannot be reached or cannot serve right now (connection refused or reset,
    /// timeout, Redis `LOADING`, `BUSY`, `OOM`, failover): an outage. Pause and retry; an apply
    /// that failed this way may or may not have happened, and the watermark makes the retry safe.
    #[error("aggregates store unavailable: {0}")]
    Unavailable(String),
    /// Anything else: misconfiguration (bad URL, bad options, wrong password, a TLS certificate
    /// that does not verify, TLS on one side only, Redis older than 7) or a bug.
    /// Retrying the same call will not help.
    #[error("aggregates error: {0}")]
    Other(String),
    /// Another rebuild holds the rebuild lease of this key prefix; the text says who, since
    /// when, and how long the lease has left. Not an outage: wait for it, or for the lease to
    /// expire.
    #[error("aggregates rebuild busy: {0}")]
    Busy(String),
    /// This rebuild's lease is gone (expired, taken over, or deleted with the data by a
    /// `FLUSHDB`): whatever it was about to write was refused. Not an outage: start over.
    #[error("aggregates rebuild lease lost: {0}")]
    LeaseLost(String),
}

impl AggError {
    /// True when the failure is the store being down or overloaded, not the request.
    pub fn is_outage(&self) -> bool {
        matches!(self, AggError::Unavailable(_))
    }
}

/// The aggregates store: Redis, or in-process memory. Cheap to clone; clones share the store
/// (one Redis connection manager, or one in-memory state), so the consumer and the HTTP stats API
/// in one process see the same data.
///
/// An enum rather than a trait object: two known backends, no `async_trait` boxing, and callers
/// can still match on the variant when they need backend-specific access.
#[derive(Debug, Clone)]
pub enum Aggregates {
    Redis(RedisAggregates),
    Memory(MemoryAggregates),
}

impl Aggregates {
    /// Opens the store named by `url`: `""` → in-memory; `redis://`, `rediss://` (TLS),
    /// `redis+unix://` or `unix://` → Redis, through a connection manager that reconnects by
    /// itself. Connects eagerly and loads the apply script, so a wrong address or a Redis older
    /// than 7 is reported here; an unreachable server is [`AggError::Unavailable`] (retry it).
    /// A wrong password, a certificate that does not verify, or TLS on one side only is
    /// [`AggError::Other`], saying which setting to fix. The TLS files of `options` need a
    /// `rediss://` URL.
    pub async fn open(url: &str, options: &AggOptions) -> Result<Aggregates, AggError> {
        options.validate()?;
        options.check_tls(url)?;
        if url.is_empty() {
            // Debug, not info: the application's startup log says which stores are embedded.
            tracing::debug!(
                "aggregates: in-process store (embedded; counts are lost when the process exits)"
            );
            return Ok(Aggregates::Memory(MemoryAggregates::new(options)));
        }
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        match scheme {
            Some("redis" | "rediss" | "redis+unix" | "unix") => {
                let redis = RedisAggregates::open(url, options).await?;
                tracing::debug!(url = %redis.display_url(), "aggregates: Redis");
                Ok(Aggregates::Redis(redis))
            }
            _ => Err(AggError::Other(format!(
                "aggregates URL {:?} is not supported: use \"\" (in-process) or redis://, rediss://, redis+unix://",
                redis::redact_url(url)
            ))),
        }
    }

    /// `"redis"` or `"memory"`, for startup logs and health output.
    pub fn kind(&self) -> &'static str {
        match self {
            Aggregates::Redis(_) => "redis",
            Aggregates::Memory(_) => "memory",
        }
    }

    /// The applied-offset watermark of each partition, in the order asked; -1 when nothing has
    /// been applied for it yet.
    pub async fn watermarks(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i64)>, AggError> {
        match self {
            Aggregates::Redis(redis) => redis.watermarks(topic, partitions).await,
            Aggregates::Memory(memory) => Ok(memory.watermarks(topic, partitions)),
        }
    }

    /// Applies a delta atomically: all of it, or (on a watermark conflict) none of it. In Redis
    /// one round trip (EVALSHA; the script is loaded again if the server lost it). An empty
    /// delta is `Applied { records: 0 }` without touching the store.
    pub async fn apply(&self, delta: &BatchDelta) -> Result<ApplyOutcome, AggError> {
        if delta.is_empty() {
            return Ok(ApplyOutcome::Applied { records: 0 });
        }
        let outcome = match self {
            Aggregates::Redis(redis) => redis.apply(delta).await?,
            Aggregates::Memory(memory) => memory.apply(delta),
        };
        if let ApplyOutcome::Conflict { partitions } = &outcome {
            // Debug: a conflict is routine (replay, rebalance) and the consumer logs its own line.
            tracing::debug!(
                ?partitions,
                records = delta.records(),
                "aggregates: delta refused, watermark moved (replay or another consumer applied first)"
            );
        }
        Ok(outcome)
    }

    /// Counts for a time range (minute resolution); see [`StatsQuery`] for the range rules.
    pub async fn stats(&self, query: &StatsQuery) -> Result<Stats, AggError> {
        match self {
            Aggregates::Redis(redis) => redis.stats(query).await,
            Aggregates::Memory(memory) => Ok(memory.stats(query)),
        }
    }

    /// Whether the store answers (Redis `PING` within the timeout); always true in memory.
    pub async fn ping(&self) -> bool {
        match self {
            Aggregates::Redis(redis) => redis.ping().await,
            Aggregates::Memory(_) => true,
        }
    }
}
