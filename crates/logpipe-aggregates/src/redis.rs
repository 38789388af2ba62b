//! [`RedisAggregates`]: the production store. One apply is one Lua script (`script.lua`), run
//! with EVALSHA, so the watermark check, the increments and the watermark moves are atomic.
//!
//! # Key layout (inspect with `redis-cli`; `{p}` = `AggOptions::key_prefix`, default `logpipe`)
//! | key | type | content | TTL |
//! |---|---|---|---|
//! | `{p}:m:{minute}:sl` | hash | field `service\|LEVEL` → records | `minute_ttl` after last write |
//! | `{p}:m:{minute}:err` | zset | member `service\|fingerprint` → records at ERROR+ | same |
//! | `{p}:fp:{fingerprint}` | string | the fingerprint's template | `fingerprint_ttl` after last write |
//! | `{p}:totals` | hash | `all` → records, `level:ERROR` → records | none |
//! | `{p}:wm:{topic}:{partition}` | string | applied-offset watermark (decimal) | none |
//! | `{p}:rb` | string | rebuild lease: `{id} {start ms} {holder}` | the lease's, renewed |
//! | `{p}:rb:requests` | hash | reconciliation requests: why a rebuild is wanted | none |
//!
//! `{minute}` is the event minute's start in epoch seconds (`1767225600`); `{fingerprint}` is 16
//! lower-case hex digits. Service names cannot contain `|`, so the fields split unambiguously.
//! The error member carries the service (rather than looking it up in `fp:`), so a service filter
//! never depends on a key that may have expired. For example:
//! `redis-cli HGETALL logpipe:m:1767225600:sl`,
//! `redis-cli ZREVRANGE logpipe:m:1767225600:err 0 9 WITHSCORES`,
//! `redis-cli --scan --pattern 'logpipe:wm:*'`.
//!
//! # The apply script's arguments
//! `KEYS` = the P watermark keys, then the keys written. `ARGV` = P, minute TTL (s), fingerprint
//! TTL (s), then (expected, new) watermark per partition, then ops of four arguments each
//! `op, key index, field, amount` with op `h` (HINCRBY), `z` (ZINCRBY), `s` (SET template EX
//! fingerprint TTL), `x` (EXPIRE minute TTL) or `q` (HSET a reconciliation request: the value in
//! the amount slot). Reply `{"ok"}` or
//! `{"conflict", index, actual, ...}`. `script.lua` repeats this next to the code that reads it.
//!
//! The rebuild (lease, snapshot, correction, requests) is in `redis_rebuild.rs`, a child module
//! so it shares the connection and the key builders. Opening the connection (TLS files, the
//! first commands, and what a failed handshake or password means) is in `redis_connect.rs`.
//!
//! # Not a goal: Redis Cluster
//! One apply touches keys of many hash slots (watermarks, minutes, totals), which a cluster
//! refuses in one script. Use a single primary (with replicas / Sentinel for failover).
//!
//! # Failures
//! Every call is bounded by `AggOptions::timeout`. [`classify`] is the one place that decides
//! which errors are an outage ([`AggError::Unavailable`]); a refused password or a failed TLS
//! handshake never is, even when it arrives as an I/O error (`redis_connect.rs` explains them).
//! An apply that timed out may still
//! have run; retrying it then returns a conflict whose watermark is already the delta's
//! `through`, which the consumer treats as done.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{ErrorKind, RedisError, Script, ServerErrorKind, Value};
use logpipe_model::{Fingerprint, Level};

use crate::delta::BatchDelta;
use crate::stats::{MinuteRange, Stats, StatsBuilder, StatsQuery, Totals};
use crate::{AggError, AggOptions, ApplyOutcome};

#[path = "redis_connect.rs"]
mod connect;
#[path = "redis_rebuild.rs"]
mod rebuild;

/// The apply script (see the module header for its arguments).
const APPLY_SCRIPT: &str = include_str!("script.lua");

/// Aggregates in Redis. Cheap to clone: clones share one reconnecting connection.
#[derive(Clone)]
pub struct RedisAggregates {
    /// Multiplexed, reconnects by itself after a connection error; cloning shares it.
    conn: ConnectionManager,
    /// Holds the script's SHA1, computed once; shared because the source is a few KB.
    script: Arc<Script>,
    keys: Keys,
    /// `minute_ttl` in whole seconds (rounded up), as EXPIRE takes it.
    minute_ttl_secs: u64,
    /// `fingerprint_ttl` in whole seconds (rounded up).
    fingerprint_ttl_secs: u64,
    /// Also caps the query range.
    minute_ttl: Duration,
    /// Bound on every call.
    timeout: Duration,
    /// The URL with any password masked, for logs.
    display_url: Arc<str>,
}

impl fmt::Debug for RedisAggregates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisAggregates")
            .field("url", &self.display_url)
            .field("key_prefix", &self.keys.prefix)
            .finish_non_exhaustive()
    }
}

/// Builds every key name, so the layout above is written down in one place.
#[derive(Debug, Clone)]
struct Keys {
    prefix: Arc<str>,
}

impl Keys {
    fn minute_counts(&self, minute: i64) -> String {
        format!("{}:m:{minute}:sl", self.prefix)
    }
    fn minute_errors(&self, minute: i64) -> String {
        format!("{}:m:{minute}:err", self.prefix)
    }
    fn template(&self, fingerprint: Fingerprint) -> String {
        format!("{}:fp:{fingerprint}", self.prefix)
    }
    fn totals(&self) -> String {
        format!("{}:totals", self.prefix)
    }
    fn watermark(&self, topic: &str, partition: i32) -> String {
        format!("{}:wm:{topic}:{partition}", self.prefix)
    }
}

impl RedisAggregates {
    pub(crate) async fn open(url: &str, options: &AggOptions) -> Result<Self, AggError> {
        let display_url: Arc<str> = redact_url(url).into();
        let (conn, script) = connect::open(url, options, &display_url).await?;
        Ok(RedisAggregates {
            conn,
            script: Arc::new(script),
            keys: Keys {
                prefix: options.key_prefix.as_str().into(),
            },
            minute_ttl_secs: whole_seconds(options.minute_ttl),
            fingerprint_ttl_secs: whole_seconds(options.fingerprint_ttl),
            minute_ttl: options.minute_ttl,
            timeout: options.timeout,
            display_url,
        })
    }

    /// The URL with any password masked.
    pub fn display_url(&self) -> &str {
        &self.display_url
    }

    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, AggError> {
        bounded(self.timeout, what, call).await
    }

    pub(crate) async fn watermarks(
        &self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<Vec<(i32, i64)>, AggError> {
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let mut mget = ::redis::cmd("MGET");
        for &partition in partitions {
            mget.arg(self.keys.watermark(topic, partition));
        }
        let mut conn = self.conn.clone();
        let stored: Vec<Option<String>> = self
            .bounded("MGET watermarks", mget.query_async(&mut conn))
            .await?;
        partitions
            .iter()
            .zip(stored)
            .map(|(&partition, text)| Ok((partition, parse_watermark(text.as_deref())?)))
            .collect()
    }

    pub(crate) async fn apply(&self, delta: &BatchDelta) -> Result<ApplyOutcome, AggError> {
        let (keys, args, partitions) = self.script_arguments(delta);
        let mut invocation = self.script.prepare_invoke();
        for key in &keys {
            invocation.key(key);
        }
        for arg in &args {
            invocation.arg(arg);
        }
        let mut conn = self.conn.clone();
        let reply: Vec<String> = self
            .bounded("apply script", invocation.invoke_async(&mut conn))
            .await?;
        match reply.split_first() {
            Some((tag, [])) if tag == "ok" => Ok(ApplyOutcome::Applied {
                records: delta.records(),
            }),
            Some((tag, pairs))
                if tag == "conflict" && !pairs.is_empty() && pairs.len() % 2 == 0 =>
            {
                let mut conflicts = Vec::with_capacity(pairs.len() / 2);
                for pair in pairs.chunks_exact(2) {
                    let (topic, partition) = pair[0]
                        .parse::<usize>()
                        .ok()
                        .and_then(|index| partitions.get(index.wrapping_sub(1)))
                        .ok_or_else(|| unexpected_reply(&reply))?;
                    let actual = parse_watermark(Some(&pair[1]))?;
                    conflicts.push(((*topic).to_owned(), *partition, actual));
                }
                Ok(ApplyOutcome::Conflict {
                    partitions: conflicts,
                })
            }
            _ => Err(unexpected_reply(&reply)),
        }
    }

    /// KEYS, ARGV and the partition of each watermark key, as the module header describes.
    fn script_arguments<'d>(
        &self,
        delta: &'d BatchDelta,
    ) -> (Vec<String>, Vec<String>, Vec<(&'d str, i32)>) {
        let partitions: Vec<(&str, i32)> = delta.ranges().map(|(t, p, _, _)| (t, p)).collect();
        let mut keys: Vec<String> = partitions
            .iter()
            .map(|&(topic, partition)| self.keys.watermark(topic, partition))
            .collect();
        let mut args = vec![
            partitions.len().to_string(),
            self.minute_ttl_secs.to_string(),
            self.fingerprint_ttl_secs.to_string(),
        ];
        for (_, _, after, through) in delta.ranges() {
            args.push(after.to_string());
            args.push(through.to_string());
        }
        // Adds a key and returns its 1-based index, as Lua's KEYS counts.
        let mut key = |name: String| {
            keys.push(name);
            keys.len().to_string()
        };
        let mut op = |code: &str, key_index: &str, field: &str, amount: &str| {
            args.extend([code, key_index, field, amount].map(str::to_owned));
        };

        let level_totals = delta.level_totals();
        if delta.records() > 0 {
            let totals = key(self.keys.totals());
            let all = level_totals.iter().sum::<u64>().to_string();
            op("h", &totals, "all", &all);
            for (level, count) in Level::ALL.iter().zip(level_totals) {
                if count > 0 {
                    let field = format!("level:{}", level.as_str());
                    op("h", &totals, &field, &count.to_string());
                }
            }
        }
        for (&minute, services) in &delta.counts {
            let counts_key = key(self.keys.minute_counts(minute));
            for (service, slots) in services {
                for (level, &count) in Level::ALL.iter().zip(slots) {
                    if count > 0 {
                        let field = format!("{service}|{}", level.as_str());
                        op("h", &counts_key, &field, &count.to_string());
                    }
                }
            }
            op("x", &counts_key, "", "");
            // Expired together with the counts even when this delta has no errors for the
            // minute, so both keys of a minute live equally long (EXPIRE on no key is a no-op).
            let errors_key = key(self.keys.minute_errors(minute));
            for (service, fingerprints) in delta.errors.get(&minute).into_iter().flatten() {
                for (fingerprint, count) in fingerprints {
                    let member = format!("{service}|{fingerprint}");
                    op("z", &errors_key, &member, &count.to_string());
                }
            }
            op("x", &errors_key, "", "");
        }
        for (&fingerprint, template) in &delta.templates {
            let template_key = key(self.keys.template(fingerprint));
            op("s", &template_key, template, "");
        }
        if !delta.requests.is_empty() {
            let requests_key = key(self.keys.rebuild_requests());
            for (field, value) in &delta.requests {
                op("q", &requests_key, field, value);
            }
        }
        (keys, args, partitions)
    }

    /// One round trip for the counts (2 commands per minute, pipelined), one for the templates
    /// of the top errors.
    pub(crate) async fn stats(&self, query: &StatsQuery) -> Result<Stats, AggError> {
        let range = MinuteRange::of(query, self.minute_ttl);
        let mut pipe = ::redis::pipe();
        pipe.cmd("HGETALL").arg(self.keys.totals());
        for minute in range.minutes() {
            pipe.cmd("HGETALL").arg(self.keys.minute_counts(minute));
            pipe.cmd("ZRANGE")
                .arg(self.keys.minute_errors(minute))
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES");
        }
        let mut conn = self.conn.clone();
        let replies: Vec<Value> = self.bounded("stats", pipe.query_async(&mut conn)).await?;
        if replies.len() != 1 + 2 * range.len() {
            return Err(AggError::Other(format!(
                "stats: expected {} replies from Redis, got {}",
                1 + 2 * range.len(),
                replies.len()
            )));
        }
        let mut replies = replies.into_iter();
        let totals: HashMap<String, u64> = decode(replies.next())?;

        let mut builder = StatsBuilder::new(query, range);
        for minute in range.minutes() {
            let counts: Vec<(String, u64)> = decode(replies.next())?;
            for (field, count) in &counts {
                match field.split_once('|') {
                    Some((service, level)) => builder.count(service, level, *count),
                    None => {
                        tracing::warn!(field, minute, "aggregates: malformed count field, ignored")
                    }
                }
            }
            let errors: Vec<(String, f64)> = decode(replies.next())?;
            for (member, count) in &errors {
                let parsed = member
                    .split_once('|')
                    .and_then(|(service, fp)| Some((service, Fingerprint::from_str(fp).ok()?)));
                match parsed {
                    // Scores are integer counts, exact in a double up to 2^53.
                    Some((service, fingerprint)) => {
                        builder.error(service, fingerprint, *count as u64)
                    }
                    None => tracing::warn!(
                        member,
                        minute,
                        "aggregates: malformed error member, ignored"
                    ),
                }
            }
            builder.end_minute(minute);
        }

        let top = builder.top_errors();
        let templates: Vec<Option<String>> = if top.is_empty() {
            Vec::new()
        } else {
            let mut mget = ::redis::cmd("MGET");
            for (fingerprint, _, _) in &top {
                mget.arg(self.keys.template(*fingerprint));
            }
            self.bounded("stats templates", mget.query_async(&mut conn))
                .await?
        };
        let top = top
            .into_iter()
            .zip(templates.into_iter().chain(std::iter::repeat(None)))
            .map(|((fingerprint, service, count), template)| {
                (fingerprint, service, count, template.unwrap_or_default())
            })
            .collect();
        Ok(builder.finish(top, totals_of(totals)))
    }

    pub(crate) async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        let pong: Result<String, _> = self
            .bounded("PING", ::redis::cmd("PING").query_async(&mut conn))
            .await;
        matches!(pong.as_deref(), Ok("PONG"))
    }

    /// The shared connection, for tests that inspect keys or kill the connection.
    #[cfg(test)]
    pub(crate) fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

/// Runs a Redis call with a deadline. The library has its own connect and response timeouts;
/// this one also bounds the reconnect retries inside a call.
async fn bounded<T>(
    timeout: Duration,
    what: &str,
    call: impl Future<Output = Result<T, RedisError>>,
) -> Result<T, AggError> {
    deadline(timeout, what, call)
        .await?
        .map_err(|err| classify(what, &err))
}

/// The deadline of [`bounded`] alone: its expiry is an outage, the call's own error is left to
/// the caller.
async fn deadline<T>(
    timeout: Duration,
    what: &str,
    call: impl Future<Output = Result<T, RedisError>>,
) -> Result<Result<T, RedisError>, AggError> {
    tokio::time::timeout(timeout, call).await.map_err(|_| {
        AggError::Unavailable(format!("{what}: no answer from Redis within {timeout:?}"))
    })
}

/// The one place that decides whether a Redis error is an outage (pause and retry) or not.
/// Authentication and TLS failures are configuration errors, whatever layer reports them
/// (a failed certificate check arrives as an I/O error): retrying cannot fix them.
fn classify(what: &str, err: &RedisError) -> AggError {
    if let Some(explained) = connect::explain(err) {
        return AggError::Other(format!("{what}: {explained}"));
    }
    let outage = err.is_io_error()
        || matches!(
            err.kind(),
            ErrorKind::Server(
                ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::ClusterDown
                    | ServerErrorKind::ReadOnly
            )
        )
        // Not known to the library: BUSY (a script or function running too long), OOM (Redis at
        // maxmemory: the consumer must pause, not drop counts).
        || matches!(err.code(), Some("BUSY" | "OOM"));
    let message = format!("{what}: {err}");
    if outage {
        AggError::Unavailable(message)
    } else {
        AggError::Other(message)
    }
}

fn with_context(err: AggError, url: &str) -> AggError {
    match err {
        AggError::Unavailable(detail) => AggError::Unavailable(format!("Redis at {url}: {detail}")),
        AggError::Other(detail) => AggError::Other(format!("Redis at {url}: {detail}")),
        lease @ (AggError::Busy(_) | AggError::LeaseLost(_)) => lease,
    }
}

fn decode<T: ::redis::FromRedisValue>(reply: Option<Value>) -> Result<T, AggError> {
    let reply = reply.ok_or_else(|| AggError::Other("stats: reply missing".to_owned()))?;
    ::redis::from_redis_value(reply)
        .map_err(|err| AggError::Other(format!("stats: unexpected reply from Redis: {err}")))
}

fn parse_watermark(text: Option<&str>) -> Result<i64, AggError> {
    match text {
        None => Ok(-1),
        Some(text) => text
            .parse()
            .map_err(|_| AggError::Other(format!("watermark key holds {text:?}, not an offset"))),
    }
}

fn unexpected_reply(reply: &[String]) -> AggError {
    AggError::Other(format!("apply script: unexpected reply {reply:?}"))
}

/// The `totals` hash as [`Totals`].
fn totals_of(hash: HashMap<String, u64>) -> Totals {
    let mut totals = Totals::default();
    for (field, count) in hash {
        if field == "all" {
            totals.total = count;
        } else if let Some(level) = field.strip_prefix("level:") {
            totals.by_level.insert(level.to_owned(), count);
        }
    }
    totals
}

/// A TTL in whole seconds, rounded up (EXPIRE takes seconds; 0 would delete the key).
fn whole_seconds(ttl: Duration) -> u64 {
    ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0)
}

/// The URL with the password (anything before `@` in the authority) masked, for logs and errors.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_url_masks_credentials_only() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(
            redact_url("rediss://user:s3cret@cache.example:6380/2"),
            "rediss://***@cache.example:6380/2"
        );
        assert_eq!(redact_url("redis://:pw@h"), "redis://***@h");
    }

    #[test]
    fn whole_seconds_rounds_up() {
        assert_eq!(whole_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(whole_seconds(Duration::from_secs(60)), 60);
    }
}
