//! [`MemoryAggregates`]: the embedded store, used when no Redis is configured. The same
//! semantics as Redis (watermark check and increments in one step, per-minute buckets that
//! expire `minute_ttl` after their last write, templates that expire `fingerprint_ttl` after
//! theirs), kept in one mutex-protected state shared by every clone. Nothing survives a restart.
//! The rebuild side (lease, snapshot, correction, requests) is in `memory_rebuild.rs`, a child
//! module so it works on the same state.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use logpipe_model::{Fingerprint, Level};

use crate::delta::{BatchDelta, LEVELS};
use crate::stats::{MinuteRange, Stats, StatsBuilder, StatsQuery, Totals};
use crate::{AggOptions, ApplyOutcome};

#[path = "memory_rebuild.rs"]
mod rebuild;

/// The in-process aggregates. Clones share one state.
#[derive(Debug, Clone)]
pub struct MemoryAggregates {
    /// A `std` mutex, not tokio's: every critical section is short, synchronous and never held
    /// across an `.await`, which is the case the std mutex serves best (no async overhead, and
    /// a waiter blocks for microseconds). An apply takes one lock for check plus increments, so
    /// it is atomic exactly like the Redis script.
    state: Arc<Mutex<State>>,
    /// How long a minute bucket lives after its last write (Redis: `EXPIRE`).
    minute_ttl: Duration,
    /// How long a template lives after its last write (Redis: `SET ... EX`).
    fingerprint_ttl: Duration,
}

#[derive(Debug)]
struct State {
    /// topic → partition → applied-offset watermark.
    watermarks: HashMap<String, HashMap<i32, i64>>,
    /// Minute (epoch seconds) → its counts. Ordered, so a query reads one contiguous range.
    minutes: BTreeMap<i64, MinuteBucket>,
    /// Templates of error fingerprints.
    templates: HashMap<Fingerprint, Template>,
    /// All-time records per level; never expire.
    totals: [u64; LEVELS],
    /// When expired buckets are next dropped. Eviction runs at most once a minute (or once per
    /// TTL, if shorter) rather than on every apply; reads skip expired buckets meanwhile.
    next_eviction: Instant,
    /// The rebuild lease (Redis: `{p}:rb`), if one was taken; expired when `expires_at` passed.
    lease: Option<rebuild::HeldLease>,
    /// Reconciliation requests (Redis: `{p}:rb:requests`).
    requests: BTreeMap<String, String>,
}

impl State {
    fn empty() -> State {
        State {
            watermarks: HashMap::new(),
            minutes: BTreeMap::new(),
            templates: HashMap::new(),
            totals: [0; LEVELS],
            next_eviction: Instant::now(),
            lease: None,
            requests: BTreeMap::new(),
        }
    }
}

#[derive(Debug)]
struct MinuteBucket {
    /// service → count per level.
    counts: BTreeMap<String, [u64; LEVELS]>,
    /// service → fingerprint → count (ERROR and above).
    errors: BTreeMap<String, BTreeMap<Fingerprint, u64>>,
    /// Last write + `minute_ttl`.
    expires_at: Instant,
}

#[derive(Debug)]
struct Template {
    text: String,
    /// Last write + `fingerprint_ttl`.
    expires_at: Instant,
}

impl MemoryAggregates {
    pub fn new(options: &AggOptions) -> Self {
        MemoryAggregates {
            state: Arc::new(Mutex::new(State::empty())),
            minute_ttl: options.minute_ttl,
            fingerprint_ttl: options.fingerprint_ttl,
        }
    }

    /// The state. A panic while the lock was held cannot leave it half-updated in a way that
    /// matters (updates are plain additions and inserts), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Another view of the same state with other TTLs, as a second `Aggregates::open` on the
    /// same Redis prefix would be. Lets scenarios run unchanged on both backends.
    #[cfg(test)]
    pub(crate) fn with_options(&self, options: &AggOptions) -> Self {
        MemoryAggregates {
            state: Arc::clone(&self.state),
            minute_ttl: options.minute_ttl,
            fingerprint_ttl: options.fingerprint_ttl,
        }
    }

    /// Loses everything, watermarks and lease included, as a Redis `FLUSHDB` would.
    #[cfg(test)]
    pub(crate) fn flush(&self) {
        *self.lock() = State::empty();
    }

    pub(crate) fn watermarks(&self, topic: &str, partitions: &[i32]) -> Vec<(i32, i64)> {
        let state = self.lock();
        let stored = state.watermarks.get(topic);
        partitions
            .iter()
            .map(|&partition| {
                let watermark = stored.and_then(|wm| wm.get(&partition)).copied();
                (partition, watermark.unwrap_or(-1))
            })
            .collect()
    }

    pub(crate) fn apply(&self, delta: &BatchDelta) -> ApplyOutcome {
        let now = Instant::now();
        let mut state = self.lock();
        let state = &mut *state;

        let mut conflicts = Vec::new();
        for (topic, partition, after, _) in delta.ranges() {
            let actual = state
                .watermarks
                .get(topic)
                .and_then(|wm| wm.get(&partition))
                .copied()
                .unwrap_or(-1);
            if actual != after {
                conflicts.push((topic.to_owned(), partition, actual));
            }
        }
        if !conflicts.is_empty() {
            return ApplyOutcome::Conflict {
                partitions: conflicts,
            };
        }

        for (topic, partition, _, through) in delta.ranges() {
            let partitions = match state.watermarks.get_mut(topic) {
                Some(partitions) => partitions,
                None => state.watermarks.entry(topic.to_owned()).or_default(),
            };
            partitions.insert(partition, through);
        }
        let minute_expiry = now + self.minute_ttl;
        for (&minute, services) in &delta.counts {
            let bucket = state.minutes.entry(minute).or_insert_with(|| MinuteBucket {
                counts: BTreeMap::new(),
                errors: BTreeMap::new(),
                expires_at: minute_expiry,
            });
            if bucket.expires_at <= now {
                // Expired but not yet evicted: Redis would have dropped the key, so start over.
                bucket.counts.clear();
                bucket.errors.clear();
            }
            bucket.expires_at = minute_expiry;
            for (service, slots) in services {
                let stored = match bucket.counts.get_mut(service) {
                    Some(stored) => stored,
                    None => bucket.counts.entry(service.clone()).or_default(),
                };
                for (stored, added) in stored.iter_mut().zip(slots) {
                    *stored += added;
                }
            }
            if let Some(errors) = delta.errors.get(&minute) {
                for (service, fingerprints) in errors {
                    let stored = match bucket.errors.get_mut(service) {
                        Some(stored) => stored,
                        None => bucket.errors.entry(service.clone()).or_default(),
                    };
                    for (&fingerprint, count) in fingerprints {
                        *stored.entry(fingerprint).or_default() += count;
                    }
                }
            }
        }
        let template_expiry = now + self.fingerprint_ttl;
        for (&fingerprint, text) in &delta.templates {
            state.templates.insert(
                fingerprint,
                Template {
                    text: text.clone(),
                    expires_at: template_expiry,
                },
            );
        }
        for (total, added) in state.totals.iter_mut().zip(delta.level_totals()) {
            *total += added;
        }
        for (field, value) in &delta.requests {
            state.requests.insert(field.clone(), value.clone());
        }

        if now >= state.next_eviction {
            state.minutes.retain(|_, bucket| bucket.expires_at > now);
            state
                .templates
                .retain(|_, template| template.expires_at > now);
            state.next_eviction = now + self.minute_ttl.min(Duration::from_secs(60));
        }
        ApplyOutcome::Applied {
            records: delta.records(),
        }
    }

    /// Runs under the lock: at most 1,440 buckets of a few dozen entries, a few milliseconds at
    /// worst, which an apply can wait for.
    pub(crate) fn stats(&self, query: &StatsQuery) -> Stats {
        let now = Instant::now();
        let range = MinuteRange::of(query, self.minute_ttl);
        let state = self.lock();
        let mut builder = StatsBuilder::new(query, range);
        for (&minute, bucket) in state.minutes.range(range.first..range.end) {
            if bucket.expires_at <= now {
                continue;
            }
            for (service, slots) in &bucket.counts {
                for (level, &count) in Level::ALL.iter().zip(slots) {
                    builder.count(service, level.as_str(), count);
                }
            }
            for (service, fingerprints) in &bucket.errors {
                for (&fingerprint, &count) in fingerprints {
                    builder.error(service, fingerprint, count);
                }
            }
            builder.end_minute(minute);
        }
        let top = builder
            .top_errors()
            .into_iter()
            .map(|(fingerprint, service, count)| {
                let template = state
                    .templates
                    .get(&fingerprint)
                    .filter(|template| template.expires_at > now)
                    .map(|template| template.text.clone())
                    .unwrap_or_default();
                (fingerprint, service, count, template)
            })
            .collect();
        let all_time = totals_of(&state.totals);
        drop(state);
        builder.finish(top, all_time)
    }
}

/// Level counts as [`Totals`], leaving out levels never seen (as Redis would: no hash field).
fn totals_of(levels: &[u64; LEVELS]) -> Totals {
    Totals {
        total: levels.iter().sum(),
        by_level: Level::ALL
            .iter()
            .zip(levels)
            .filter(|(_, &count)| count > 0)
            .map(|(level, &count)| (level.as_str().to_owned(), count))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::support::{base_time, record};

    fn options(ttl: Duration) -> AggOptions {
        AggOptions {
            minute_ttl: ttl,
            fingerprint_ttl: ttl,
            ..AggOptions::default()
        }
    }

    /// Minute 0 only: a TTL under a minute clamps queries to one minute.
    fn query() -> StatsQuery {
        StatsQuery {
            since: base_time(),
            until: base_time() + chrono::Duration::minutes(1),
            service: None,
            top_n: 5,
        }
    }

    #[test]
    fn buckets_and_templates_expire_after_their_ttl() {
        let store = MemoryAggregates::new(&options(Duration::from_millis(50)));
        let mut delta = BatchDelta::new();
        delta.cover("t", 0, -1, 0);
        delta.add(&record("svc", Level::Error, 0, 1, "t", 0, 0));
        store.apply(&delta);
        assert_eq!(store.stats(&query()).total, 1);
        std::thread::sleep(Duration::from_millis(80));
        let stats = store.stats(&query());
        assert_eq!(stats.total, 0, "expired minute no longer counted");
        assert!(stats.top_errors.is_empty());
        assert_eq!(stats.all_time.total, 1, "all-time totals never expire");

        // The next apply evicts the expired bucket and starts the minute afresh.
        let mut delta = BatchDelta::new();
        delta.cover("t", 0, 0, 1);
        delta.add(&record("svc", Level::Error, 0, 1, "t", 0, 1));
        store.apply(&delta);
        assert_eq!(store.stats(&query()).total, 1);
        assert_eq!(store.lock().minutes.len(), 1);
    }

    #[test]
    fn clones_share_state() {
        let store = MemoryAggregates::new(&AggOptions::default());
        let other = store.clone();
        let mut delta = BatchDelta::new();
        delta.cover("t", 3, -1, 0);
        delta.add(&record("svc", Level::Info, 0, 1, "t", 3, 0));
        store.apply(&delta);
        assert_eq!(other.watermarks("t", &[3, 4]), vec![(3, 0), (4, -1)]);
        assert_eq!(other.stats(&query()).total, 1);
    }
}
