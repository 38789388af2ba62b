//! Rebuilding the counts from the log store after the aggregates lost data: the public types
//! ([`RebuildLease`], [`Snapshot`], [`CorrectReport`]) and the [`Aggregates`] methods, which
//! dispatch to `redis_rebuild` and `memory_rebuild`.
//!
//! # The method
//! 1. [`Aggregates::lease`]: one rebuild per key prefix at a time; [`Aggregates::renew`] it
//!    well within its TTL, [`Aggregates::release`] it at the end.
//! 2. Per chunk of minutes, [`Aggregates::snapshot`]: every watermark (as a [`Cut`]) and the
//!    chunk's cells, read atomically. Every stored row at or below a partition's cut is committed,
//!    and every apply after the snapshot counts only offsets above it.
//! 3. The caller counts the store's rows at or below the cuts into [`Cells`] (with templates).
//! 4. [`Aggregates::correct`] with `store − snapshot` ([`Cells::diff`]): adding it at any later
//!    moment leaves store(≤ cut) + everything applied since the snapshot, the exact counts,
//!    provided nothing but applies touched those keys in between. The lease is checked in the
//!    same atomic step as each batch of the correction, and a `FLUSHDB` in between deletes the
//!    lease, so a correction against lost data is refused ([`AggError::LeaseLost`]).
//!
//! Consumers that see data loss (a watermark gone) ask for a rebuild with
//! [`BatchDelta::request_rebuild`](crate::BatchDelta::request_rebuild); the rebuild takes the
//! requests ([`Aggregates::take_rebuild_requests`]) and hands them back if it fails.

use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use logpipe_model::{CellDiff, Cells, Cut, Fingerprint, LEVELS};

use crate::{AggError, Aggregates};

/// A held rebuild lease. Only the rebuild that took it can renew, release or correct with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RebuildLease {
    /// What the lease key holds: `{id} {start ms} {holder}`, unique per lease.
    value: String,
    holder: String,
    started_at: DateTime<Utc>,
    ttl: Duration,
}

impl RebuildLease {
    /// A new lease value for `holder`, started now, with a random id.
    pub(crate) fn new(holder: &str, ttl: Duration) -> Result<RebuildLease, AggError> {
        if ttl < Duration::from_millis(1) {
            return Err(AggError::Other(format!(
                "rebuild lease TTL must be at least 1ms, got {ttl:?}"
            )));
        }
        let started_at = Utc::now();
        let value = format!("{} {} {holder}", unique_id(), started_at.timestamp_millis());
        Ok(RebuildLease {
            value,
            holder: holder.to_owned(),
            started_at,
            ttl,
        })
    }

    /// Who took it (the text given to [`Aggregates::lease`]).
    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// When it was taken.
    pub fn started_at(&self) -> DateTime<Utc> {
        self.started_at
    }

    /// How long it lasts after being taken or renewed.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The value of the lease key while this lease holds it.
    pub(crate) fn value(&self) -> &str {
        &self.value
    }

    /// The TTL in whole milliseconds, rounded up (PEXPIRE takes milliseconds).
    pub(crate) fn ttl_millis(&self) -> u64 {
        let millis = self.ttl.as_millis();
        let rounded = millis + u128::from(self.ttl.as_nanos() % 1_000_000 > 0);
        u64::try_from(rounded).unwrap_or(u64::MAX)
    }
}

/// Describes a lease key's value for messages: `{holder} since {start}, {left} left`. A value
/// not written by [`RebuildLease`] is shown as it is.
pub(crate) fn describe_lease(value: &str, left: Option<Duration>) -> String {
    let mut parts = value.splitn(3, ' ');
    let (_, start, holder) = (parts.next(), parts.next(), parts.next());
    let started = start
        .and_then(|ms| ms.parse::<i64>().ok())
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    let who = match (holder, started) {
        (Some(holder), Some(started)) => format!("{holder:?} since {}", started.to_rfc3339()),
        _ => format!("{value:?}"),
    };
    match left {
        Some(left) => format!("{who}, {:.1}s left", left.as_secs_f64()),
        None => format!("{who}, no expiry"),
    }
}

/// 16 hex digits, different for every lease of every process: a hasher with a randomly seeded
/// state over the time, the process id and a counter.
fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    hasher.write_u128(nanos);
    format!("{:016x}", hasher.finish())
}

/// The aggregates at one instant: every applied-offset watermark and the cells of a range of
/// minutes, read atomically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// One per watermark of the key prefix, sorted by topic and partition.
    pub cuts: Vec<Cut>,
    /// The minutes' counts and errors; `templates` is left empty.
    pub cells: Cells,
}

/// What [`Aggregates::correct`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorrectReport {
    /// Atomic steps run (batches of whole minutes; an empty correction is one, checking the
    /// lease only).
    pub batches: usize,
    /// Count and error cells corrected.
    pub cells: usize,
    /// Cells, and totals, that would have gone below 0 and were removed (or set to 0) instead.
    pub clamped: usize,
    /// What was added to each level's all-time total ([`logpipe_model::Level::ALL`] order), after
    /// clamping; all 0 when the totals were not asked for.
    pub totals: [i64; LEVELS],
}

/// Checks a snapshot's minute range: whole minutes, `from <= until`.
pub(crate) fn check_minutes(from: i64, until: i64) -> Result<(), AggError> {
    if from.rem_euclid(60) != 0 || until.rem_euclid(60) != 0 || from > until {
        return Err(AggError::Other(format!(
            "snapshot minutes [{from}, {until}) must be multiples of 60 with from <= until"
        )));
    }
    Ok(())
}

impl Aggregates {
    /// Takes the rebuild lease of this key prefix for `ttl` (Redis: `SET {p}:rb NX PX`), or
    /// fails with [`AggError::Busy`] saying who holds it, since when and how long is left.
    /// `holder` is free text for those messages (host, pid, command).
    pub async fn lease(&self, holder: &str, ttl: Duration) -> Result<RebuildLease, AggError> {
        let lease = RebuildLease::new(holder, ttl)?;
        match self {
            Aggregates::Redis(redis) => redis.lease(&lease).await?,
            Aggregates::Memory(memory) => memory.lease(&lease)?,
        }
        Ok(lease)
    }

    /// Extends the lease by its TTL from now, if it is still held; [`AggError::LeaseLost`] if
    /// the key is gone (expired, flushed) or holds another lease.
    pub async fn renew(&self, lease: &RebuildLease) -> Result<(), AggError> {
        match self {
            Aggregates::Redis(redis) => redis.renew(lease).await,
            Aggregates::Memory(memory) => memory.renew(lease),
        }
    }

    /// Gives the lease up if it is still held (compare and delete). A lease already lost has
    /// nothing to release: `Ok`, and another holder's lease is left alone.
    pub async fn release(&self, lease: &RebuildLease) -> Result<(), AggError> {
        match self {
            Aggregates::Redis(redis) => redis.release(lease).await,
            Aggregates::Memory(memory) => {
                memory.release(lease);
                Ok(())
            }
        }
    }

    /// Who holds the rebuild lease, for messages: `"{holder}" since {start}, {n}s left`; `None`
    /// when nobody does.
    pub async fn lease_holder(&self) -> Result<Option<String>, AggError> {
        match self {
            Aggregates::Redis(redis) => redis.lease_holder().await,
            Aggregates::Memory(memory) => Ok(memory.lease_holder()),
        }
    }

    /// Every watermark as a [`Cut`] and the cells of minutes [`from`, `until`) (epoch seconds,
    /// multiples of 60), read atomically. Expired minutes are absent.
    pub async fn snapshot(&self, from: i64, until: i64) -> Result<Snapshot, AggError> {
        check_minutes(from, until)?;
        match self {
            Aggregates::Redis(redis) => redis.snapshot(from, until).await,
            Aggregates::Memory(memory) => Ok(memory.snapshot(from, until)),
        }
    }

    /// Adds `correction` (typically `store − snapshot`) to the live counts, in batches of whole
    /// minutes, each atomic and each refused with [`AggError::LeaseLost`] (nothing of it
    /// written) unless `lease` still holds the lease; batches before a refused one stay applied,
    /// and a new snapshot and correction repair that. A cell that ends at 0 or below is removed
    /// (below 0 also counts as clamped). A minute key without a TTL gets `minute_ttl`; one with a
    /// TTL keeps it. The templates of the fingerprints the correction touches are set where
    /// absent. With `totals`, each level's all-time total changes by the correction's sum for
    /// that level, and `all` by what the levels changed by (neither below 0).
    pub async fn correct(
        &self,
        lease: &RebuildLease,
        correction: &CellDiff,
        templates: &BTreeMap<Fingerprint, String>,
        totals: bool,
    ) -> Result<CorrectReport, AggError> {
        let report = match self {
            Aggregates::Redis(redis) => redis.correct(lease, correction, templates, totals).await?,
            Aggregates::Memory(memory) => memory.correct(lease, correction, templates, totals)?,
        };
        tracing::debug!(?report, "aggregates: correction applied");
        Ok(report)
    }

    /// Keys Redis evicted since it started (`INFO stats` `evicted_keys`): above 0, minute keys may
    /// have gone while the all-time totals stayed. Always 0 in memory.
    pub async fn evicted_keys(&self) -> Result<u64, AggError> {
        match self {
            Aggregates::Redis(redis) => redis.evicted_keys().await,
            Aggregates::Memory(_) => Ok(0),
        }
    }

    /// The pending reconciliation requests (field → value), as written by
    /// [`BatchDelta::request_rebuild`](crate::BatchDelta::request_rebuild).
    pub async fn rebuild_requests(&self) -> Result<BTreeMap<String, String>, AggError> {
        match self {
            Aggregates::Redis(redis) => redis.rebuild_requests().await,
            Aggregates::Memory(memory) => Ok(memory.rebuild_requests()),
        }
    }

    /// Reads and deletes the pending requests in one atomic step, so a request written later is
    /// kept for the next rebuild.
    pub async fn take_rebuild_requests(&self) -> Result<BTreeMap<String, String>, AggError> {
        match self {
            Aggregates::Redis(redis) => redis.take_rebuild_requests().await,
            Aggregates::Memory(memory) => Ok(memory.take_rebuild_requests()),
        }
    }

    /// Hands taken requests back (after a failed rebuild). A field requested again meanwhile
    /// keeps its newer value.
    pub async fn put_rebuild_requests(
        &self,
        requests: &BTreeMap<String, String>,
    ) -> Result<(), AggError> {
        match self {
            Aggregates::Redis(redis) => redis.put_rebuild_requests(requests).await,
            Aggregates::Memory(memory) => {
                memory.put_rebuild_requests(requests);
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_values_are_unique_and_describe_their_holder() {
        let ttl = Duration::from_secs(30);
        let a = RebuildLease::new("host-a pid 7", ttl).unwrap();
        let b = RebuildLease::new("host-a pid 7", ttl).unwrap();
        assert_ne!(a.value(), b.value());
        let text = describe_lease(a.value(), Some(Duration::from_millis(12_340)));
        assert!(text.starts_with("\"host-a pid 7\" since 20"), "{text}");
        assert!(text.ends_with(", 12.3s left"), "{text}");
        assert_eq!(describe_lease("odd", None), "\"odd\", no expiry");
        assert!(RebuildLease::new("x", Duration::ZERO).is_err());
        let micro = RebuildLease::new("x", Duration::from_micros(1500)).unwrap();
        assert_eq!(micro.ttl_millis(), 2);
    }

    #[test]
    fn snapshot_minutes_must_be_whole() {
        assert!(check_minutes(60, 180).is_ok());
        assert!(check_minutes(-120, -60).is_ok());
        assert!(check_minutes(60, 60).is_ok());
        assert!(check_minutes(61, 180).is_err());
        assert!(check_minutes(180, 60).is_err());
    }
}
