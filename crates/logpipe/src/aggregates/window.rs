//! Which minutes a rebuild or a verify covers: the range asked for, rounded to whole minutes and
//! clamped to what both sides still hold, then cut into chunks (one store statement and one
//! aggregates snapshot each).

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

/// A minute bucket a key can lose during a run (its TTL runs out) must not be compared or
/// corrected: a minute whose key may expire within this margin is left out.
const EXPIRY_MARGIN: Duration = Duration::from_secs(15 * 60);
/// How far past now the default window reaches: events stamped a little ahead of the server's
/// clock are counted in the minute they name.
const FUTURE: Duration = Duration::from_secs(3600);

/// Minutes `[from, until)` in epoch seconds, multiples of 60.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: i64,
    pub until: i64,
    /// The start asked for, when the clamp moved it later (said in the summary).
    pub clamped_from: Option<i64>,
}

/// What bounds the window: the aggregates' `minute_ttl` and the store's retention cutoff.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub minute_ttl: Duration,
    /// Rows before this may be dropped by the store's maintenance before the run ends.
    pub retention_cutoff: DateTime<Utc>,
}

impl Window {
    /// The window for `[from, until)` (defaults: as far back as the aggregates keep minutes, and
    /// an hour ahead of `now`), clamped to `limits`. Errors when nothing is left.
    pub fn new(
        now: DateTime<Utc>,
        from: Option<DateTime<Utc>>,
        until: Option<DateTime<Utc>>,
        limits: Limits,
    ) -> Result<Window, String> {
        let kept = limits.minute_ttl.saturating_sub(EXPIRY_MARGIN);
        let earliest =
            ceil_minute((now.timestamp() - secs(kept)).max(limits.retention_cutoff.timestamp()));
        let asked_from = from.map_or(earliest, |t| t.timestamp().div_euclid(60) * 60);
        let until = until.unwrap_or(now + chrono::Duration::seconds(secs(FUTURE)));
        // Ceiling, so the minute holding `until` is included.
        let until = ceil_minute(until.timestamp());
        let from = asked_from.max(earliest);
        if from >= until {
            return Err(format!(
                "nothing to do: the window ends ({}) before the earliest minute both stores still hold ({}); \
                 the aggregates keep minutes for redis.minute_ttl ({}) and the store keeps postgres.retention_days",
                stamp(until),
                stamp(earliest),
                humantime::format_duration(limits.minute_ttl)
            ));
        }
        Ok(Window {
            from,
            until,
            clamped_from: (asked_from < from).then_some(asked_from),
        })
    }

    /// Consecutive chunks of at most `chunk` (whole minutes, at least one) covering the window.
    pub fn chunks(&self, chunk: Duration) -> Vec<(i64, i64)> {
        let step = (secs(chunk).div_euclid(60) * 60).max(60);
        let mut chunks = Vec::new();
        let mut start = self.from;
        while start < self.until {
            let end = (start + step).min(self.until);
            chunks.push((start, end));
            start = end;
        }
        chunks
    }

    pub fn minutes(&self) -> i64 {
        (self.until - self.from) / 60
    }
}

fn ceil_minute(epoch: i64) -> i64 {
    (epoch + 59).div_euclid(60) * 60
}

fn secs(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 2)
}

/// A minute bucket as `2026-12-06 09:41` (UTC).
pub fn stamp(minute: i64) -> String {
    match Utc.timestamp_opt(minute, 0).single() {
        Some(time) => time.format("%Y-%m-%d %H:%M").to_string(),
        None => minute.to_string(),
    }
}

/// Epoch seconds as a UTC time.
pub fn time_of(epoch: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(epoch, 0).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            minute_ttl: Duration::from_secs(48 * 3600),
            retention_cutoff: Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap(),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 6, 10, 30, 20).unwrap()
    }

    #[test]
    fn defaults_reach_back_to_what_redis_keeps_minus_the_margin() {
        let window = Window::new(now(), None, None, limits()).unwrap();
        // 48 h back plus the 15-minute margin, on the next whole minute.
        assert_eq!(stamp(window.from), "2026-12-04 10:46");
        assert_eq!(stamp(window.until), "2026-12-06 11:31");
        assert_eq!(window.clamped_from, None);
    }

    #[test]
    fn an_earlier_start_is_clamped_and_said() {
        let asked = now() - chrono::Duration::days(5);
        let window = Window::new(now(), Some(asked), None, limits()).unwrap();
        assert_eq!(stamp(window.from), "2026-12-04 10:46");
        assert_eq!(
            window.clamped_from,
            Some(asked.timestamp().div_euclid(60) * 60)
        );
    }

    #[test]
    fn retention_can_be_the_tighter_bound() {
        let mut tight = limits();
        tight.retention_cutoff = Utc.with_ymd_and_hms(2026, 12, 6, 0, 0, 0).unwrap();
        let window = Window::new(now(), None, None, tight).unwrap();
        assert_eq!(stamp(window.from), "2026-12-06 00:00");
    }

    #[test]
    fn explicit_bounds_round_outwards_and_chunk() {
        let from = Utc.with_ymd_and_hms(2026, 12, 6, 8, 0, 30).unwrap();
        let until = Utc.with_ymd_and_hms(2026, 12, 6, 10, 15, 1).unwrap();
        let window = Window::new(now(), Some(from), Some(until), limits()).unwrap();
        assert_eq!(stamp(window.from), "2026-12-06 08:00");
        assert_eq!(stamp(window.until), "2026-12-06 10:16");
        let chunks = window.chunks(Duration::from_secs(3600));
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[2].1, window.until);
        assert_eq!(window.minutes(), 136);
    }

    #[test]
    fn an_empty_window_is_an_error_naming_the_settings() {
        let until = now() - chrono::Duration::days(4);
        let err = Window::new(now(), None, Some(until), limits()).unwrap_err();
        assert!(err.contains("redis.minute_ttl"), "{err}");
    }
}
