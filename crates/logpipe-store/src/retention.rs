//! Day arithmetic for retention, shared by both backends so they keep exactly the same rows.
//!
//! Retention works in whole UTC days: with `retention_days = 7`, today and the 7 full days before
//! it are kept, and everything before the start of that first day goes. Whole days because
//! PostgreSQL drops whole daily partitions; SQLite and PostgreSQL's default partition delete
//! rows up to the same boundary, so both backends agree row for row.

use chrono::{DateTime, Days, NaiveDate, Utc};

/// The first UTC day kept.
pub(crate) fn first_kept_day(now: DateTime<Utc>, retention_days: u32) -> NaiveDate {
    let today = now.date_naive();
    today
        .checked_sub_days(Days::new(u64::from(retention_days)))
        .unwrap_or(NaiveDate::MIN)
}

/// Midnight UTC at the start of `day`.
pub(crate) fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// Rows with an event timestamp before this instant are past the retention.
pub(crate) fn cutoff(now: DateTime<Utc>, retention_days: u32) -> DateTime<Utc> {
    day_start(first_kept_day(now, retention_days))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn keeps_today_and_the_full_days_before() {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 15, 4, 5).unwrap();
        assert_eq!(
            cutoff(now, 7),
            Utc.with_ymd_and_hms(2026, 3, 3, 0, 0, 0).unwrap()
        );
        assert_eq!(
            cutoff(now, 0),
            Utc.with_ymd_and_hms(2026, 3, 10, 0, 0, 0).unwrap()
        );
        assert_eq!(first_kept_day(now, u32::MAX), NaiveDate::MIN);
    }
}
