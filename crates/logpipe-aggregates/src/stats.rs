//! The read side: [`StatsQuery`] in, [`Stats`] out. Range clamping and the fold from per-minute
//! data into a `Stats` live here, so both backends answer a query the same way; each backend
//! only fetches the minutes ([`MinuteRange`]) and feeds a [`StatsBuilder`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use logpipe_model::Fingerprint;
use serde::Serialize;

/// Most minutes one query reads: 24 h. Bounds the work of a query (in Redis, 2 lookups per
/// minute, pipelined in one round trip).
pub(crate) const MAX_QUERY_MINUTES: i64 = 24 * 60;

/// A stats request. Minute resolution: the minutes counted are those whose start lies in
/// [`since` rounded down to the minute, `until`). The range is clamped to the most recent
/// `min(minute_ttl, 24 h)` of it (`since` moves up); [`Stats::since`] says where it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatsQuery {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Only this service's counts and errors (the all-time totals are never filtered).
    pub service: Option<String>,
    /// Length of the top-errors list.
    pub top_n: usize,
}

/// Counts for a range of minutes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Start of the range actually counted (rounded down to the minute, after clamping).
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Records in range.
    pub total: u64,
    /// Level name ("ERROR") → records in range.
    pub by_level: BTreeMap<String, u64>,
    /// Service → level name → records in range.
    pub by_service: BTreeMap<String, BTreeMap<String, u64>>,
    /// Records per minute, ascending, only minutes with records.
    pub per_minute: Vec<MinuteCount>,
    /// The `top_n` (fingerprint, service) pairs at ERROR or above with the most records in range,
    /// most first (ties: by fingerprint, then service).
    pub top_errors: Vec<TopError>,
    /// Since the store was created: no TTL, never filtered by service.
    pub all_time: Totals,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MinuteCount {
    pub minute: DateTime<Utc>,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TopError {
    /// 16 hex digits.
    pub fingerprint: String,
    pub count: u64,
    /// The masked message; empty if its template has expired (it outlives the minutes that
    /// mention it except for events arriving long after their timestamp).
    pub template: String,
    pub service: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Totals {
    pub total: u64,
    /// Level name → records.
    pub by_level: BTreeMap<String, u64>,
}

/// The minutes a query reads, after clamping: epoch seconds, `first` inclusive, `end` exclusive,
/// both multiples of 60.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MinuteRange {
    pub first: i64,
    pub end: i64,
}

impl MinuteRange {
    /// Clamps `query` to at most `min(minute_ttl, 24 h)` of minutes ending at `until`.
    pub fn of(query: &StatsQuery, minute_ttl: Duration) -> MinuteRange {
        let ttl_minutes = i64::try_from(minute_ttl.as_secs() / 60).unwrap_or(i64::MAX);
        let max_minutes = ttl_minutes.clamp(1, MAX_QUERY_MINUTES);
        let first = query.since.timestamp().div_euclid(60) * 60;
        // Minutes starting before `until`: `until` rounded up to the minute.
        let until_floor = query.until.timestamp().div_euclid(60) * 60;
        let end = if epoch(until_floor) == query.until {
            until_floor
        } else {
            until_floor + 60
        };
        let first = first.max(end - max_minutes * 60);
        MinuteRange {
            first,
            end: end.max(first),
        }
    }

    /// Each minute's start, ascending.
    pub fn minutes(self) -> impl Iterator<Item = i64> {
        (self.first..self.end).step_by(60)
    }

    pub fn len(self) -> usize {
        usize::try_from((self.end - self.first) / 60).unwrap_or(0)
    }
}

/// Accumulates per-minute data into a [`Stats`], applying the service filter. Feed minutes in
/// ascending order.
pub(crate) struct StatsBuilder<'q> {
    query: &'q StatsQuery,
    since: DateTime<Utc>,
    total: u64,
    by_level: BTreeMap<String, u64>,
    by_service: BTreeMap<String, BTreeMap<String, u64>>,
    per_minute: Vec<MinuteCount>,
    /// Errors in range: fingerprint → service → count.
    errors: HashMap<Fingerprint, HashMap<String, u64>>,
    /// Records of the minute being fed.
    minute_count: u64,
}

impl<'q> StatsBuilder<'q> {
    pub fn new(query: &'q StatsQuery, range: MinuteRange) -> Self {
        StatsBuilder {
            query,
            since: epoch(range.first),
            total: 0,
            by_level: BTreeMap::new(),
            by_service: BTreeMap::new(),
            per_minute: Vec::new(),
            errors: HashMap::new(),
            minute_count: 0,
        }
    }

    fn wanted(&self, service: &str) -> bool {
        self.query
            .service
            .as_deref()
            .is_none_or(|wanted| wanted == service)
    }

    /// Adds `count` records of `service` at `level` to the current minute.
    pub fn count(&mut self, service: &str, level: &str, count: u64) {
        if count == 0 || !self.wanted(service) {
            return;
        }
        self.total += count;
        self.minute_count += count;
        add_to(&mut self.by_level, level, count);
        let levels = match self.by_service.get_mut(service) {
            Some(levels) => levels,
            None => self.by_service.entry(service.to_owned()).or_default(),
        };
        add_to(levels, level, count);
    }

    /// Adds `count` error records of `service` with `fingerprint` to the range.
    pub fn error(&mut self, service: &str, fingerprint: Fingerprint, count: u64) {
        if count == 0 || !self.wanted(service) {
            return;
        }
        let services = self.errors.entry(fingerprint).or_default();
        match services.get_mut(service) {
            Some(total) => *total += count,
            None => {
                services.insert(service.to_owned(), count);
            }
        }
    }

    /// Closes the current minute (its counts were fed since the previous call).
    pub fn end_minute(&mut self, minute: i64) {
        if self.minute_count > 0 {
            self.per_minute.push(MinuteCount {
                minute: epoch(minute),
                count: self.minute_count,
            });
        }
        self.minute_count = 0;
    }

    /// The top-n (fingerprint, service, count), ranked; the caller looks up their templates.
    pub fn top_errors(&self) -> Vec<(Fingerprint, String, u64)> {
        let mut ranked: Vec<(Fingerprint, &str, u64)> = self
            .errors
            .iter()
            .flat_map(|(&fingerprint, services)| {
                services
                    .iter()
                    .map(move |(service, &count)| (fingerprint, service.as_str(), count))
            })
            .collect();
        ranked.sort_unstable_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(b.1)));
        ranked.truncate(self.query.top_n);
        ranked
            .into_iter()
            .map(|(fingerprint, service, count)| (fingerprint, service.to_owned(), count))
            .collect()
    }

    /// The finished `Stats`: `top` from [`top_errors`](Self::top_errors), each with its template.
    pub fn finish(self, top: Vec<(Fingerprint, String, u64, String)>, all_time: Totals) -> Stats {
        Stats {
            since: self.since,
            until: self.query.until,
            total: self.total,
            by_level: self.by_level,
            by_service: self.by_service,
            per_minute: self.per_minute,
            top_errors: top
                .into_iter()
                .map(|(fingerprint, service, count, template)| TopError {
                    fingerprint: fingerprint.to_string(),
                    count,
                    template,
                    service,
                })
                .collect(),
            all_time,
        }
    }
}

/// `map[key] += count`, allocating the key only when it is new.
fn add_to(map: &mut BTreeMap<String, u64>, key: &str, count: u64) {
    match map.get_mut(key) {
        Some(total) => *total += count,
        None => {
            map.insert(key.to_owned(), count);
        }
    }
}

/// A minute's start as a `DateTime`. Minutes come from valid `DateTime`s, so the conversion
/// cannot fail; the fallback only keeps the code free of a panic path.
pub(crate) fn epoch(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn query(since: DateTime<Utc>, until: DateTime<Utc>) -> StatsQuery {
        StatsQuery {
            since,
            until,
            service: None,
            top_n: 10,
        }
    }

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, m, s).unwrap()
    }

    #[test]
    fn range_is_since_rounded_down_to_until_exclusive() {
        let range = MinuteRange::of(
            &query(at(10, 0, 30), at(10, 3, 0)),
            Duration::from_secs(3600),
        );
        assert_eq!(range.first, at(10, 0, 0).timestamp());
        assert_eq!(range.len(), 3, "10:00, 10:01, 10:02; not 10:03");
        // An `until` inside a minute includes that minute.
        let range = MinuteRange::of(
            &query(at(10, 0, 0), at(10, 3, 1)),
            Duration::from_secs(3600),
        );
        assert_eq!(range.len(), 4);
    }

    #[test]
    fn range_is_clamped_to_ttl_and_a_day() {
        let range = MinuteRange::of(&query(at(0, 0, 0), at(12, 0, 0)), Duration::from_secs(1800));
        assert_eq!(range.len(), 30);
        assert_eq!(range.first, at(11, 30, 0).timestamp());
        let week_ago = at(0, 0, 0) - chrono::Duration::days(7);
        let range = MinuteRange::of(
            &query(week_ago, at(0, 0, 0)),
            Duration::from_secs(48 * 3600),
        );
        assert_eq!(range.len() as i64, MAX_QUERY_MINUTES);
    }

    #[test]
    fn an_inverted_range_is_empty() {
        let range = MinuteRange::of(
            &query(at(12, 0, 0), at(11, 0, 0)),
            Duration::from_secs(3600),
        );
        assert_eq!(range.len(), 0);
        assert_eq!(range.minutes().count(), 0);
    }

    #[test]
    fn top_errors_rank_by_count_then_fingerprint_then_service() {
        let q = query(at(10, 0, 0), at(11, 0, 0));
        let mut builder = StatsBuilder::new(&q, MinuteRange::of(&q, Duration::from_secs(3600)));
        builder.error("b", Fingerprint(2), 5);
        builder.error("a", Fingerprint(2), 5);
        builder.error("a", Fingerprint(1), 5);
        builder.error("a", Fingerprint(3), 9);
        let top: Vec<_> = builder
            .top_errors()
            .into_iter()
            .map(|(fp, service, count)| (fp.0, service, count))
            .collect();
        assert_eq!(
            top,
            vec![
                (3, "a".to_owned(), 9),
                (1, "a".to_owned(), 5),
                (2, "a".to_owned(), 5),
                (2, "b".to_owned(), 5)
            ]
        );
    }

    #[test]
    fn stats_serialize_as_the_http_api_shows_them() {
        let q = query(at(10, 0, 0), at(10, 2, 0));
        let mut builder = StatsBuilder::new(&q, MinuteRange::of(&q, Duration::from_secs(3600)));
        builder.count("svc", "ERROR", 2);
        builder.error("svc", Fingerprint(0xab), 2);
        builder.end_minute(at(10, 0, 0).timestamp());
        let top = vec![(
            Fingerprint(0xab),
            "svc".to_owned(),
            2,
            "boom <num>".to_owned(),
        )];
        let json = serde_json::to_value(builder.finish(top, Totals::default())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "since": "2026-03-01T10:00:00Z",
                "until": "2026-03-01T10:02:00Z",
                "total": 2,
                "by_level": {"ERROR": 2},
                "by_service": {"svc": {"ERROR": 2}},
                "per_minute": [{"minute": "2026-03-01T10:00:00Z", "count": 2}],
                "top_errors": [{"fingerprint": "00000000000000ab", "count": 2, "template": "boom <num>", "service": "svc"}],
                "all_time": {"total": 0, "by_level": {}}
            })
        );
    }
}
