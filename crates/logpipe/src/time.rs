//! Times as the operator writes them on the command line: an RFC 3339 instant or a duration
//! before now. Shared by the tools that take a time window (`dlq show|replay`, `aggregates`).

use chrono::{DateTime, Utc};

/// An RFC 3339 time, or a duration before now (`90m`, `1h`, `2days`).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    match humantime::parse_duration(text) {
        Ok(ago) => chrono::Duration::from_std(ago)
            .ok()
            .and_then(|ago| Utc::now().checked_sub_signed(ago))
            .ok_or_else(|| format!("`{text}` reaches too far back")),
        Err(_) => Err(format!(
            "`{text}` is neither an RFC 3339 time (2026-11-25T10:00:00Z) nor a duration ago (90m, 1h, 2days)"
        )),
    }
}
