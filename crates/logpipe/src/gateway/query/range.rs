//! The time parameters of the query API and the bounds of a text search.
//!
//! `since` and `until` take RFC 3339 or a duration ago, and must land between the years 0000 and
//! 9999 (what RFC 3339 can write, and what every store keeps): a duration too long for that, or a
//! date outside it, is a 400 `time_out_of_range`, never an arithmetic panic. A `q` search scans
//! messages, so it always covers a bounded range ([`QueryLimits::text_window`]) and has a length
//! cap.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use crate::config::GatewayConfig;
use crate::http::ApiError;

/// The bounds of a `q` search (`gateway.query_*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryLimits {
    pub default_range: Duration,
    pub max_range: Duration,
    pub max_q_chars: usize,
}

impl QueryLimits {
    pub fn from_config(gateway: &GatewayConfig) -> Self {
        Self {
            default_range: gateway.query_default_range,
            max_range: gateway.query_max_range,
            max_q_chars: gateway.query_max_q_chars,
        }
    }

    /// Refuses a `q` longer than the cap.
    pub fn check_text(&self, q: &str) -> Result<(), ApiError> {
        let chars = q.chars().count();
        if chars > self.max_q_chars {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "q_too_long",
                format!(
                    "`q` may be at most {} characters (got {chars}); search for a shorter, distinctive part of the message",
                    self.max_q_chars
                ),
            ));
        }
        Ok(())
    }

    /// The range a `q` search covers: `since` defaults to `default_range` before `until` (or
    /// `now`); wider than `max_range` is refused. Returns the `since` to search from.
    pub fn text_window(
        &self,
        since: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<DateTime<Utc>, ApiError> {
        let end = until.unwrap_or(now);
        let since = match since {
            Some(since) => since,
            None => TimeDelta::from_std(self.default_range)
                .ok()
                .and_then(|range| end.checked_sub_signed(range))
                .map_or(min_time(), |t| t.max(min_time())),
        };
        let covered = end.signed_duration_since(since);
        let max = TimeDelta::from_std(self.max_range).unwrap_or(TimeDelta::MAX);
        if covered > max {
            let shown = covered
                .to_std()
                .map(|d| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string())
                .unwrap_or_default();
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "range_too_large",
                format!(
                    "a `q` search covers at most {} (`since` to `until`, or to now); this one covers {shown}: narrow `since`/`until`",
                    humantime::format_duration(self.max_range)
                ),
            ));
        }
        Ok(since)
    }
}

/// The earliest time accepted: 0000-01-01T00:00:00Z.
fn min_time() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(0, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The latest time accepted: 9999-12-31T23:59:59.999999999Z.
fn max_time() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 999_999_999))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn out_of_range(name: &str, raw: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "time_out_of_range",
        format!(
            "`{name}` = `{raw}` is outside the years 0000 to 9999; give a later RFC 3339 time or a shorter duration ago"
        ),
    )
}

/// A duration ago, `<digits><unit>` with one unit of `s`, `m`, `h`, `d`, `w` or `y` (365.25
/// days): `None` if `raw` is not one, `Some(None)` if it is too long for a time span.
///
/// One small grammar, the one the OpenAPI document states, rather than every spelling a
/// duration parser takes (`1h30m`, `2 hours`, a bare `0`): the API accepts exactly what it
/// documents.
fn ago(raw: &str) -> Option<Option<TimeDelta>> {
    let unit = raw.chars().last()?;
    let digits = &raw[..raw.len() - unit.len_utf8()];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds_per_unit: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        'y' => 31_557_600,
        _ => return None,
    };
    Some(
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(seconds_per_unit))
            .and_then(|secs| i64::try_from(secs).ok())
            .and_then(TimeDelta::try_seconds),
    )
}

/// `2026-11-25T12:00:00Z`, or a duration ago (`15m`), between the years 0000 and 9999.
pub fn parse_time(name: &str, raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let time = if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        Some(t.with_timezone(&Utc))
    } else {
        match ago(raw) {
            // Checked all the way: a duration chrono cannot hold, or a time before its
            // earliest, is an answer for the client, not a panic.
            Some(ago) => ago.and_then(|ago| now.checked_sub_signed(ago)),
            None => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!(
                        "`{name}` must be an RFC 3339 time (2026-11-25T12:00:00Z) or a duration ago: a whole number and one unit of s, m, h, d, w or y (15m); got `{raw}`"
                    ),
                ))
            }
        }
    };
    match time {
        Some(t) if (min_time()..=max_time()).contains(&t) => Ok(t),
        _ => Err(out_of_range(name, raw)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-25T12:00:00Z".parse().unwrap()
    }

    fn at(raw: &str) -> DateTime<Utc> {
        raw.parse().unwrap()
    }

    fn code(r: Result<impl std::fmt::Debug, ApiError>) -> &'static str {
        let e = r.expect_err("an error");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        e.code
    }

    #[test]
    fn times_and_durations_parse() {
        assert_eq!(
            parse_time("since", "2026-11-25T10:00:00Z", now()).unwrap(),
            at("2026-11-25T10:00:00Z")
        );
        assert_eq!(
            parse_time("since", "2026-11-25T10:00:00+02:00", now()).unwrap(),
            at("2026-11-25T08:00:00Z")
        );
        assert_eq!(
            parse_time("since", "15m", now()).unwrap(),
            at("2026-11-25T11:45:00Z")
        );
        use chrono::Datelike;
        assert_eq!(parse_time("since", "2000y", now()).unwrap().year(), 26);
    }

    #[test]
    fn overflowing_durations_are_out_of_range_not_a_panic() {
        for raw in [
            "1000000y",
            "100000y",
            "3000y",
            // Beyond chrono's own duration range.
            "10000000000000y",
            // Beyond u64 seconds.
            "99999999999999999999999999999s",
            "18446744073709551615y",
        ] {
            let r = parse_time("since", raw, now());
            assert_eq!(code(r), "time_out_of_range", "{raw}");
        }
        let e = parse_time("until", "1000000y", now()).unwrap_err();
        assert!(e.message.contains("`until`"), "{}", e.message);
        assert!(e.message.contains("0000 to 9999"), "{}", e.message);
    }

    #[test]
    fn dates_beyond_year_9999_are_out_of_range() {
        // RFC 3339 writes four-digit years; an offset can still push one past 9999 in UTC.
        let r = parse_time("until", "9999-12-31T23:00:00-05:00", now());
        assert_eq!(code(r), "time_out_of_range");
        assert!(parse_time("until", "9999-12-31T23:00:00Z", now()).is_ok());
        assert!(parse_time("since", "0000-01-01T00:00:00Z", now()).is_ok());
        let r = parse_time("since", "0000-01-01T00:00:00+01:00", now());
        assert_eq!(code(r), "time_out_of_range");
    }

    #[test]
    fn garbage_is_an_invalid_query() {
        for raw in [
            "yesterday",
            "-5m",
            "",
            "12:00",
            "0",
            "1h30m",
            "2 hours",
            "15min",
            "m",
            "5µ",
        ] {
            assert_eq!(
                code(parse_time("since", raw, now())),
                "invalid_query",
                "{raw}"
            );
        }
    }

    fn limits() -> QueryLimits {
        QueryLimits {
            default_range: Duration::from_secs(24 * 3600),
            max_range: Duration::from_secs(7 * 24 * 3600),
            max_q_chars: 10,
        }
    }

    #[test]
    fn a_text_search_without_since_covers_the_default_range() {
        let l = limits();
        assert_eq!(
            l.text_window(None, None, now()).unwrap(),
            at("2026-11-24T12:00:00Z")
        );
        // Back from `until` when given.
        assert_eq!(
            l.text_window(None, Some(at("2026-11-20T00:00:00Z")), now())
                .unwrap(),
            at("2026-11-19T00:00:00Z")
        );
        // Near the earliest time, the range stops there.
        assert_eq!(
            l.text_window(None, Some(at("0000-01-01T01:00:00Z")), now())
                .unwrap(),
            at("0000-01-01T00:00:00Z")
        );
    }

    #[test]
    fn a_text_search_wider_than_the_maximum_is_refused() {
        let l = limits();
        let since = at("2026-11-18T12:00:00Z");
        assert_eq!(l.text_window(Some(since), None, now()).unwrap(), since);
        let e = l
            .text_window(Some(at("2026-11-18T11:59:59Z")), None, now())
            .unwrap_err();
        assert_eq!(e.code, "range_too_large");
        assert!(e.message.contains("at most 7days"), "{}", e.message);
        // The range runs to `until`, so a far-future `until` counts too.
        let r = l.text_window(Some(now()), Some(at("9999-01-01T00:00:00Z")), now());
        assert_eq!(code(r), "range_too_large");
        let r = l.text_window(Some(at("0000-01-01T00:00:00Z")), None, now());
        assert_eq!(code(r), "range_too_large");
    }

    #[test]
    fn a_long_q_is_refused() {
        let l = limits();
        assert!(l.check_text("0123456789").is_ok());
        // Characters, not bytes.
        assert!(l.check_text("éééééééééé").is_ok());
        let e = l.check_text("0123456789x").unwrap_err();
        assert_eq!(e.code, "q_too_long");
        assert!(e.message.contains("at most 10 characters"), "{}", e.message);
    }
}
