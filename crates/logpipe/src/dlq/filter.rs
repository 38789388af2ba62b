//! What the operator picks on the command line: the record filter `show` and `replay` share, and
//! the flags of those two commands. Pure: parsing and matching only.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{DlqContext, ErrorClass};
use crate::time::parse_time;

/// Which DLQ records `show` and `replay` act on. Every set field must match; times compare with
/// the record's last failure (`since` inclusive, `until` exclusive).
#[derive(Debug, Clone, Default, PartialEq, clap::Args)]
pub struct Filter {
    /// Only records of this class: `poison` (undecodable or invalid, never retried) or
    /// `exhausted` (failed every attempt of the retry schedule).
    #[arg(long, value_name = "CLASS", value_parser = parse_class)]
    pub class: Option<ErrorClass>,
    /// Only records of this error type (`invalid_json`, `store_rejected`, `step:enrich`, ...);
    /// a trailing `*` matches a prefix (`step:*`).
    #[arg(long = "type", value_name = "TYPE")]
    pub error_type: Option<String>,
    /// Only records whose last failure is at or after this time: RFC 3339
    /// (`2026-11-25T10:00:00Z`) or a duration ago (`90m`, `1h`, `2days`).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Only records whose last failure is before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
}

impl Filter {
    pub fn matches(&self, context: &DlqContext) -> bool {
        if self.class.is_some_and(|class| class != context.class) {
            return false;
        }
        if let Some(wanted) = &self.error_type {
            let ok = match wanted.strip_suffix('*') {
                Some(prefix) => context.error_type.starts_with(prefix),
                None => &context.error_type == wanted,
            };
            if !ok {
                return false;
            }
        }
        if self.since.is_some_and(|since| context.last_failure < since) {
            return false;
        }
        if self
            .until
            .is_some_and(|until| context.last_failure >= until)
        {
            return false;
        }
        true
    }

    /// `class=poison type=invalid_json`, or `none`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(class) = self.class {
            parts.push(format!("class={}", class.as_str()));
        }
        if let Some(t) = &self.error_type {
            parts.push(format!("type={t}"));
        }
        if let Some(t) = self.since {
            parts.push(format!("since={}", time_text(t)));
        }
        if let Some(t) = self.until {
            parts.push(format!("until={}", time_text(t)));
        }
        if parts.is_empty() {
            "none".into()
        } else {
            parts.join(" ")
        }
    }
}

fn parse_class(text: &str) -> Result<ErrorClass, String> {
    ErrorClass::parse(text.trim())
        .ok_or_else(|| format!("unknown class `{text}`: expected `poison` or `exhausted`"))
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "`{text}` is not a positive number of records per second"
        )),
    }
}

/// `logpipe dlq show` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// Show at most this many records: the most recent matching ones by last failure (0 = all).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Print a JSON array with every field (key and value as text when UTF-8, else base64).
    #[arg(long)]
    pub json: bool,
}

/// `logpipe dlq replay` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// Publish at most this many records per second (default: as fast as Kafka acknowledges).
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Show what would be replayed or parked; produce nothing, commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Review the DLQ from its first record, ignoring the replay group's committed progress.
    #[arg(long)]
    pub from_beginning: bool,
    /// Stop after this many matching records (replayed or parked).
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A time as the tables and filter descriptions show it: RFC 3339, UTC, whole seconds.
pub(super) fn time_text(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::test_support::context;

    #[test]
    fn filter_matches_class_type_prefix_and_time_window() {
        let c = context();
        assert!(Filter::default().matches(&c));
        let class = |class| Filter {
            class: Some(class),
            ..Filter::default()
        };
        assert!(class(ErrorClass::Exhausted).matches(&c));
        assert!(!class(ErrorClass::Poison).matches(&c));
        let error_type = |t: &str| Filter {
            error_type: Some(t.into()),
            ..Filter::default()
        };
        assert!(error_type("step:enrich").matches(&c));
        assert!(error_type("step:*").matches(&c));
        assert!(!error_type("step").matches(&c));
        let at = c.last_failure;
        let window = |since, until| Filter {
            since,
            until,
            ..Filter::default()
        };
        assert!(window(Some(at), None).matches(&c), "since is inclusive");
        assert!(!window(None, Some(at)).matches(&c), "until is exclusive");
        assert!(window(None, Some(at + chrono::Duration::seconds(1))).matches(&c));
        assert!(!window(Some(at + chrono::Duration::seconds(1)), None).matches(&c));
    }

    #[test]
    fn times_parse_as_rfc3339_or_duration_ago() {
        assert_eq!(
            parse_time("2026-11-25T10:00:00+01:00").unwrap(),
            DateTime::parse_from_rfc3339("2026-11-25T09:00:00Z").unwrap()
        );
        let hour_ago = parse_time("1h").unwrap();
        let expected = Utc::now() - chrono::Duration::hours(1);
        assert!((hour_ago - expected).num_seconds().abs() <= 2);
        let err = parse_time("yesterday-ish").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
        assert!(parse_class("POISON").is_err());
        assert_eq!(parse_class("poison").unwrap(), ErrorClass::Poison);
        assert!(parse_rate("0").is_err() && parse_rate("2.5").is_ok());
    }

    #[test]
    fn describe_lists_the_set_filters_or_none() {
        assert_eq!(Filter::default().describe(), "none");
        let since = DateTime::parse_from_rfc3339("2026-11-25T10:00:00.750Z")
            .unwrap()
            .with_timezone(&Utc);
        let f = Filter {
            class: Some(ErrorClass::Poison),
            error_type: Some("step:*".into()),
            since: Some(since),
            until: None,
        };
        assert_eq!(
            f.describe(),
            "class=poison type=step:* since=2026-11-25T10:00:00Z"
        );
    }
}
