//! The rebuild in Redis (see `rebuild.rs` for the method): the lease `{p}:rb` (taken with
//! `rebuild_lease.lua`, kept with `rebuild_renew.lua`, given up with `rebuild_release.lua`), the
//! atomic snapshot (one MULTI/EXEC), the correction (`rebuild_correct.lua`, one run per batch of
//! whole minutes) and the reconciliation requests `{p}:rb:requests`. A child module of `redis`,
//! so it shares the connection, the deadline and the key builders.
//!
//! # The correction script's arguments
//! `KEYS` = the lease, the totals, then the keys written. `ARGV` = the lease value, minute TTL
//! (s), fingerprint TTL (s), then ops of four arguments each `op, key index, field, amount`:
//! `h` (count cell), `z` (error cell), `t` (a level's total), `x` (EXPIRE if no TTL), `s` (SET
//! template NX). Reply `{1, cells, clamped, added per t op...}` or `{0}` (lease not held).
//! `rebuild_correct.lua` repeats this next to the code that reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use ::redis::{Script, Value};
use logpipe_model::{CellDiff, Cells, Cut, Fingerprint, Level, LEVELS};

use super::{Keys, RedisAggregates};
use crate::correction::{self, Batch, BATCH_CELLS};
use crate::rebuild::{describe_lease, CorrectReport, RebuildLease, Snapshot};
use crate::AggError;

static LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("rebuild_lease.lua")));
static RENEW: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("rebuild_renew.lua")));
static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("rebuild_release.lua")));
static CORRECT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("rebuild_correct.lua")));

/// Snapshots taken before giving up when new watermark keys keep appearing between the SCAN and
/// the MULTI (a new partition's first apply each time).
const SNAPSHOT_TRIES: usize = 5;

impl Keys {
    pub(super) fn rebuild_lease(&self) -> String {
        format!("{}:rb", self.prefix)
    }
    pub(super) fn rebuild_requests(&self) -> String {
        format!("{}:rb:requests", self.prefix)
    }
    /// What every watermark key starts with; the topic and partition follow.
    fn watermark_prefix(&self) -> String {
        format!("{}:wm:", self.prefix)
    }
}

impl RedisAggregates {
    pub(crate) async fn lease(&self, lease: &RebuildLease) -> Result<(), AggError> {
        let mut invocation = LEASE.key(self.keys.rebuild_lease());
        invocation.arg(lease.value()).arg(lease.ttl_millis());
        let mut conn = self.conn.clone();
        let reply: Vec<String> = self
            .bounded("rebuild lease", invocation.invoke_async(&mut conn))
            .await?;
        match reply.as_slice() {
            [ok] if ok == "ok" => Ok(()),
            [busy, value, pttl] if busy == "busy" => {
                let left = pttl.parse::<i64>().ok().and_then(left_of);
                Err(AggError::Busy(format!(
                    "another rebuild holds {}: {}",
                    self.keys.rebuild_lease(),
                    describe_lease(value, left)
                )))
            }
            _ => Err(AggError::Other(format!(
                "rebuild lease script: unexpected reply {reply:?}"
            ))),
        }
    }

    pub(crate) async fn renew(&self, lease: &RebuildLease) -> Result<(), AggError> {
        let mut invocation = RENEW.key(self.keys.rebuild_lease());
        invocation.arg(lease.value()).arg(lease.ttl_millis());
        let mut conn = self.conn.clone();
        let renewed: i64 = self
            .bounded("rebuild lease renew", invocation.invoke_async(&mut conn))
            .await?;
        if renewed == 1 {
            Ok(())
        } else {
            Err(self.lease_lost("renew").await)
        }
    }

    pub(crate) async fn release(&self, lease: &RebuildLease) -> Result<(), AggError> {
        let mut invocation = RELEASE.key(self.keys.rebuild_lease());
        invocation.arg(lease.value());
        let mut conn = self.conn.clone();
        let _released: i64 = self
            .bounded("rebuild lease release", invocation.invoke_async(&mut conn))
            .await?;
        Ok(())
    }

    pub(crate) async fn lease_holder(&self) -> Result<Option<String>, AggError> {
        let key = self.keys.rebuild_lease();
        let mut pipe = ::redis::pipe();
        pipe.atomic().get(&key).cmd("PTTL").arg(&key);
        let mut conn = self.conn.clone();
        let (value, pttl): (Option<String>, i64) = self
            .bounded("rebuild lease holder", pipe.query_async(&mut conn))
            .await?;
        Ok(value.map(|value| describe_lease(&value, left_of(pttl))))
    }

    /// The `LeaseLost` error, naming the current holder if there is one.
    async fn lease_lost(&self, what: &str) -> AggError {
        let now = match self.lease_holder().await {
            Ok(Some(holder)) => format!("it is now held by {holder}"),
            Ok(None) => "the key is gone (expired, or deleted with the data)".to_owned(),
            Err(err) => format!("its holder could not be read: {err}"),
        };
        AggError::LeaseLost(format!(
            "{what}: this rebuild no longer holds {}; {now}",
            self.keys.rebuild_lease()
        ))
    }

    /// SCAN for the watermark keys, then one MULTI/EXEC reading them and the minutes; redone if
    /// a second SCAN finds keys the first did not (a partition applied for the first time in
    /// between would otherwise be missing from the cuts).
    pub(crate) async fn snapshot(&self, from: i64, until: i64) -> Result<Snapshot, AggError> {
        let minutes: Vec<i64> = (from..until).step_by(60).collect();
        let mut keys = self.watermark_keys().await?;
        for _ in 0..SNAPSHOT_TRIES {
            let mut pipe = ::redis::pipe();
            pipe.atomic();
            if !keys.is_empty() {
                pipe.cmd("MGET").arg(&keys);
            }
            for &minute in &minutes {
                pipe.cmd("HGETALL").arg(self.keys.minute_counts(minute));
                pipe.cmd("ZRANGE")
                    .arg(self.keys.minute_errors(minute))
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES");
            }
            let mut conn = self.conn.clone();
            let replies: Vec<Value> = self
                .bounded("snapshot", pipe.query_async(&mut conn))
                .await?;
            let again = self.watermark_keys().await?;
            if again.is_subset(&keys) {
                return self.decode_snapshot(&keys, &minutes, replies);
            }
            keys = again;
        }
        Err(AggError::Other(format!(
            "snapshot: new watermark keys kept appearing in {SNAPSHOT_TRIES} tries"
        )))
    }

    /// Every `{p}:wm:*` key (SCAN, so Redis is never blocked by a KEYS).
    async fn watermark_keys(&self) -> Result<BTreeSet<String>, AggError> {
        let pattern = format!("{}*", self.keys.watermark_prefix());
        let mut conn = self.conn.clone();
        let mut keys = BTreeSet::new();
        let mut cursor: u64 = 0;
        loop {
            let mut scan = ::redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000);
            let (next, batch): (u64, Vec<String>) = self
                .bounded("SCAN watermarks", scan.query_async(&mut conn))
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }

    fn decode_snapshot(
        &self,
        keys: &BTreeSet<String>,
        minutes: &[i64],
        replies: Vec<Value>,
    ) -> Result<Snapshot, AggError> {
        let wanted = usize::from(!keys.is_empty()) + 2 * minutes.len();
        if replies.len() != wanted {
            return Err(AggError::Other(format!(
                "snapshot: expected {wanted} replies from Redis, got {}",
                replies.len()
            )));
        }
        let mut replies = replies.into_iter();
        let mut cuts = Vec::with_capacity(keys.len());
        if !keys.is_empty() {
            let values: Vec<Option<String>> = decode(replies.next())?;
            let prefix = self.keys.watermark_prefix();
            for (key, value) in keys.iter().zip(values) {
                let Some((topic, partition)) = key
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.rsplit_once(':'))
                    .and_then(|(topic, p)| Some((topic, p.parse::<i32>().ok()?)))
                else {
                    tracing::warn!(key, "aggregates: malformed watermark key, ignored");
                    continue;
                };
                cuts.push(Cut {
                    topic: topic.to_owned(),
                    partition,
                    through: super::parse_watermark(value.as_deref())?,
                });
            }
        }
        cuts.sort();
        let mut cells = Cells::default();
        for &minute in minutes {
            let counts: Vec<(String, i64)> = decode(replies.next())?;
            for (field, count) in counts {
                let parsed = field.split_once('|').and_then(|(service, level)| {
                    let level = Level::ALL.into_iter().find(|l| l.as_str() == level)?;
                    Some((service, level))
                });
                match (parsed, u64::try_from(count)) {
                    (Some((service, level)), Ok(count)) if count > 0 => {
                        cells.add_count(minute, service, level, count)
                    }
                    _ => tracing::warn!(field, count, minute, "aggregates: odd count, ignored"),
                }
            }
            let errors: Vec<(String, f64)> = decode(replies.next())?;
            for (member, score) in errors {
                let parsed = member
                    .split_once('|')
                    .and_then(|(service, fp)| Some((service, Fingerprint::from_str(fp).ok()?)));
                match parsed {
                    // Scores are integer counts, exact in a double up to 2^53.
                    Some((service, fingerprint)) if score >= 1.0 => {
                        cells.add_error(minute, service, fingerprint, score as u64)
                    }
                    _ => tracing::warn!(member, score, minute, "aggregates: odd error, ignored"),
                }
            }
        }
        Ok(Snapshot { cuts, cells })
    }

    pub(crate) async fn correct(
        &self,
        lease: &RebuildLease,
        correction: &CellDiff,
        templates: &BTreeMap<Fingerprint, String>,
        totals: bool,
    ) -> Result<CorrectReport, AggError> {
        let batches = correction::plan(correction, templates, BATCH_CELLS);
        let count = batches.len();
        let mut report = CorrectReport::default();
        for (index, batch) in batches.iter().enumerate() {
            let (keys, args, levels) = self.correct_arguments(lease, batch, totals);
            let mut invocation = CORRECT.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            for arg in &args {
                invocation.arg(arg);
            }
            let mut conn = self.conn.clone();
            let reply: Vec<i64> = self
                .bounded("correct script", invocation.invoke_async(&mut conn))
                .await?;
            match reply.as_slice() {
                [0] => {
                    let what = format!(
                        "correction batch {} of {count} refused ({index} applied before it)",
                        index + 1
                    );
                    return Err(self.lease_lost(&what).await);
                }
                [1, cells, clamped, added @ ..] if added.len() == levels.len() => {
                    report.batches += 1;
                    report.cells += usize::try_from(*cells).unwrap_or_default();
                    report.clamped += usize::try_from(*clamped).unwrap_or_default();
                    for (&level, &amount) in levels.iter().zip(added) {
                        report.totals[level] += amount;
                    }
                }
                _ => {
                    return Err(AggError::Other(format!(
                        "correct script: unexpected reply {reply:?}"
                    )))
                }
            }
        }
        Ok(report)
    }

    /// KEYS, ARGV and the level of each `t` op, as the module header describes.
    fn correct_arguments(
        &self,
        lease: &RebuildLease,
        batch: &Batch<'_>,
        totals: bool,
    ) -> (Vec<String>, Vec<String>, Vec<usize>) {
        let mut keys = vec![self.keys.rebuild_lease(), self.keys.totals()];
        let mut args = vec![
            lease.value().to_owned(),
            self.minute_ttl_secs.to_string(),
            self.fingerprint_ttl_secs.to_string(),
        ];
        // Adds a key and returns its 1-based index, as Lua's KEYS counts.
        let mut key = |name: String| {
            keys.push(name);
            keys.len().to_string()
        };
        let mut op = |code: &str, key_index: &str, field: &str, amount: &str| {
            args.extend([code, key_index, field, amount].map(str::to_owned));
        };
        for minute in &batch.minutes {
            if !minute.counts.is_empty() {
                let counts_key = key(self.keys.minute_counts(minute.minute));
                for (service, level, delta) in &minute.counts {
                    let field = format!("{service}|{}", level.as_str());
                    op("h", &counts_key, &field, &delta.to_string());
                }
                op("x", &counts_key, "", "");
            }
            if !minute.errors.is_empty() {
                let errors_key = key(self.keys.minute_errors(minute.minute));
                for (service, fingerprint, delta) in &minute.errors {
                    let member = format!("{service}|{fingerprint}");
                    op("z", &errors_key, &member, &delta.to_string());
                }
                op("x", &errors_key, "", "");
            }
        }
        for (fingerprint, template) in &batch.templates {
            let template_key = key(self.keys.template(*fingerprint));
            op("s", &template_key, template, "");
        }
        let mut levels = Vec::new();
        if totals {
            for (index, delta) in batch.level_totals().into_iter().enumerate() {
                if delta != 0 {
                    let field = format!("level:{}", Level::ALL[index].as_str());
                    op("t", "2", &field, &delta.to_string());
                    levels.push(index);
                }
            }
        }
        debug_assert!(levels.iter().all(|&level| level < LEVELS));
        (keys, args, levels)
    }

    pub(crate) async fn evicted_keys(&self) -> Result<u64, AggError> {
        let mut conn = self.conn.clone();
        let info: String = self
            .bounded(
                "INFO stats",
                ::redis::cmd("INFO").arg("stats").query_async(&mut conn),
            )
            .await?;
        info.lines()
            .find_map(|line| line.strip_prefix("evicted_keys:"))
            .and_then(|count| count.trim().parse().ok())
            .ok_or_else(|| AggError::Other("INFO stats has no evicted_keys line".to_owned()))
    }

    pub(crate) async fn rebuild_requests(&self) -> Result<BTreeMap<String, String>, AggError> {
        let mut conn = self.conn.clone();
        self.bounded(
            "HGETALL rebuild requests",
            ::redis::cmd("HGETALL")
                .arg(self.keys.rebuild_requests())
                .query_async(&mut conn),
        )
        .await
    }

    pub(crate) async fn take_rebuild_requests(&self) -> Result<BTreeMap<String, String>, AggError> {
        let key = self.keys.rebuild_requests();
        let mut pipe = ::redis::pipe();
        pipe.atomic().hgetall(&key).del(&key).ignore();
        let mut conn = self.conn.clone();
        let (requests,): (BTreeMap<String, String>,) = self
            .bounded("take rebuild requests", pipe.query_async(&mut conn))
            .await?;
        Ok(requests)
    }

    /// HSETNX per field, in one MULTI: a field requested again since keeps its newer value.
    pub(crate) async fn put_rebuild_requests(
        &self,
        requests: &BTreeMap<String, String>,
    ) -> Result<(), AggError> {
        if requests.is_empty() {
            return Ok(());
        }
        let key = self.keys.rebuild_requests();
        let mut pipe = ::redis::pipe();
        pipe.atomic();
        for (field, value) in requests {
            pipe.hset_nx(&key, field, value).ignore();
        }
        let mut conn = self.conn.clone();
        self.bounded("put rebuild requests", pipe.query_async(&mut conn))
            .await
    }
}

/// A PTTL reply as time left; `None` for a key without expiry (-1) or none at all (-2).
fn left_of(pttl: i64) -> Option<Duration> {
    u64::try_from(pttl).ok().map(Duration::from_millis)
}

fn decode<T: ::redis::FromRedisValue>(reply: Option<Value>) -> Result<T, AggError> {
    let reply = reply.ok_or_else(|| AggError::Other("snapshot: reply missing".to_owned()))?;
    ::redis::from_redis_value(reply)
        .map_err(|err| AggError::Other(format!("snapshot: unexpected reply from Redis: {err}")))
}
