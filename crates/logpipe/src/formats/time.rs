//! The times foreign log records carry, as RFC 3339 for [`Parts`](super::Parts): date texts
//! without an offset (UTC, as Elasticsearch reads them) and epoch numbers, either whole
//! milliseconds (Elasticsearch's `epoch_millis`) or seconds, milliseconds, microseconds or
//! nanoseconds told apart by magnitude (Fluent Bit's `1700000000.123456`, logback's and log4j's
//! `timeMillis`, Vector's and Go loggers' nanoseconds).

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use logpipe_model::Rejection;

use super::parts::unix_timestamp;

/// A date as Elasticsearch's default format takes it, as RFC 3339: a date-time without an
/// offset (what Python's `datetime.isoformat()` writes for a naive time) or a bare date is UTC,
/// as in Elasticsearch. Anything else is passed on for the event parser to refuse with its reason.
pub fn date_text(text: String) -> String {
    if DateTime::parse_from_rfc3339(&text).is_ok() {
        return text;
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(&text, format) {
            return naive
                .and_utc()
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
        return date
            .and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .to_rfc3339();
    }
    text
}

/// Whole epoch milliseconds; `Err` with what is wrong for anything else.
pub fn epoch_millis(number: &serde_json::Number, field: &str) -> Result<String, String> {
    let millis = number
        .as_i64()
        .ok_or_else(|| format!("`{field}` {number} is not whole epoch milliseconds"))?;
    let nanos = (millis.rem_euclid(1000) * 1_000_000) as u32;
    unix_timestamp(millis.div_euclid(1000), nanos, &number.to_string()).map_err(|r| r.to_string())
}

/// An epoch number written as decimal text (`1700000000`, `1700000000.123456`,
/// `1700000000123`, `1.7e9`), its unit told by the magnitude of its whole part: below 10^11
/// seconds, below 10^14 milliseconds, below 10^17 microseconds, else nanoseconds (each bound is
/// the year 5138 in the smaller unit, so no real time is ambiguous). `None` when the text is not
/// a number. Fractions are read from the digits, not through a float, so microseconds survive.
pub fn epoch_by_magnitude(text: &str) -> Option<Result<String, Rejection>> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit());
    let (whole, fraction): (i128, String) = if plain {
        (whole.parse().ok()?, fraction.to_owned())
    } else {
        // Exponent notation: rare, and a float's precision is all it had.
        let value: f64 = digits.parse().ok().filter(|v: &f64| v.is_finite())?;
        let whole = value.trunc();
        let fraction = format!("{:.9}", value - whole);
        (
            whole as i128,
            fraction.get(2..).unwrap_or_default().to_owned(),
        )
    };
    let nanos_per_unit: i128 = match whole {
        w if w < 100_000_000_000 => 1_000_000_000,
        w if w < 100_000_000_000_000 => 1_000_000,
        w if w < 100_000_000_000_000_000 => 1_000,
        _ => 1,
    };
    let scale = nanos_per_unit.ilog10() as usize;
    let mut digits: String = fraction.chars().take(scale).collect();
    while digits.len() < scale {
        digits.push('0');
    }
    let part: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().unwrap_or(0)
    };
    let mut nanos = whole.saturating_mul(nanos_per_unit).saturating_add(part);
    if negative {
        nanos = -nanos;
    }
    let seconds = i64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(i64::MAX);
    let sub = nanos.rem_euclid(1_000_000_000) as u32;
    Some(unix_timestamp(seconds, sub, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(text: &str) -> String {
        epoch_by_magnitude(text).unwrap().unwrap()
    }

    #[test]
    fn epochs_by_magnitude() {
        assert_eq!(epoch("1700000000"), "2023-11-14T22:13:20.000000000Z");
        assert_eq!(epoch("1700000000.123456"), "2023-11-14T22:13:20.123456000Z");
        assert_eq!(epoch("1700000000123"), "2023-11-14T22:13:20.123000000Z");
        assert_eq!(epoch("1700000000123.5"), "2023-11-14T22:13:20.123500000Z");
        assert_eq!(epoch("1700000000123456"), "2023-11-14T22:13:20.123456000Z");
        assert_eq!(
            epoch("1700000000123456789"),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(epoch("1.7e9"), "2023-11-14T22:13:20.000000000Z");
        assert_eq!(epoch("0"), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(epoch("-1.5"), "1969-12-31T23:59:58.500000000Z");
        for not_a_number in ["", "yesterday", "12:00", "1.2.3", "NaN", "inf"] {
            assert!(epoch_by_magnitude(not_a_number).is_none(), "{not_a_number}");
        }
        let far = epoch_by_magnitude("1e30").unwrap().unwrap_err();
        assert_eq!(far.code(), "invalid_timestamp");
    }

    #[test]
    fn dates_as_elasticsearch_reads_them() {
        assert_eq!(
            date_text("2026-01-02T03:04:05.5".into()),
            "2026-01-02T03:04:05.500000000Z"
        );
        assert_eq!(
            date_text("2026-01-02 03:04:05,123".replace(',', ".")),
            "2026-01-02T03:04:05.123000000Z"
        );
        assert_eq!(date_text("2026-01-02".into()), "2026-01-02T00:00:00+00:00");
        assert_eq!(date_text("yesterday".into()), "yesterday");
    }
}
