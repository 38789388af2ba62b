//! The severity [`Level`] of an event: six names, parsed case-insensitively, written upper-case.
//!
//! The set and the numbers follow OpenTelemetry's severity ranges, so events map onto OTLP
//! without a table. logpipe's own API accepts only `WARNING` as an alias: every extra alias is
//! one more spelling every consumer of the API must know about. What other tools write (log
//! shippers' labels, OTLP severity text, JSON log lines on Kafka) goes through
//! [`Level::from_foreign`], the one alias rule for every foreign source.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::rejection::{echo, Rejection};

/// How severe an event is. Ordered from least (`Trace`) to most (`Fatal`) severe, so
/// `level >= Level::Warn` reads naturally. An event without a level is `Info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Level {
    Trace,
    Debug,
    #[default]
    Info,
    Warn,
    Error,
    Fatal,
}

impl Level {
    /// Every level, least severe first.
    pub const ALL: [Level; 6] = [
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warn,
        Level::Error,
        Level::Fatal,
    ];

    /// The canonical upper-case name, as written to Kafka.
    pub fn as_str(&self) -> &'static str {
        match self {
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
        }
    }

    /// The OpenTelemetry `SeverityNumber` at the start of this level's range.
    pub fn severity_number(&self) -> u8 {
        match self {
            Level::Trace => 1,
            Level::Debug => 5,
            Level::Info => 9,
            Level::Warn => 13,
            Level::Error => 17,
            Level::Fatal => 21,
        }
    }

    /// A level name as other tools write it: ours (case-insensitive, `WARNING` too), plus the
    /// syslog and Python names logpipe's API does not take (`critical`, `crit`, `emerg`,
    /// `alert`, `panic` are FATAL; `err` is ERROR; `notice` is INFO; `dbg` is DEBUG). `None`
    /// for anything else (Loki's `unknown`, say): the caller keeps the raw value where it found
    /// it.
    pub fn from_foreign(name: &str) -> Option<Level> {
        if let Some(level) = Level::from_name(name) {
            return Some(level);
        }
        const ALIASES: [(&str, Level); 8] = [
            ("critical", Level::Fatal),
            ("crit", Level::Fatal),
            ("emerg", Level::Fatal),
            ("alert", Level::Fatal),
            ("panic", Level::Fatal),
            ("err", Level::Error),
            ("notice", Level::Info),
            ("dbg", Level::Debug),
        ];
        ALIASES
            .iter()
            .find(|(alias, _)| name.eq_ignore_ascii_case(alias))
            .map(|(_, level)| *level)
    }

    /// Looks a name up without allocating (no `to_uppercase`): this runs for every event.
    fn from_name(name: &str) -> Option<Level> {
        if name.eq_ignore_ascii_case("WARNING") {
            return Some(Level::Warn);
        }
        Level::ALL
            .into_iter()
            .find(|level| name.eq_ignore_ascii_case(level.as_str()))
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = Rejection;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::from_name(s).ok_or_else(|| Rejection::InvalidLevel { value: echo(s) })
    }
}

impl TryFrom<&str> for Level {
    type Error = Rejection;

    // Spelled out: `Self::Error` would be ambiguous with the `Level::Error` variant.
    fn try_from(s: &str) -> Result<Self, Rejection> {
        s.parse()
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LevelVisitor;

        impl Visitor<'_> for LevelVisitor {
            type Value = Level;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a log level such as \"INFO\"")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Level, E> {
                v.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(LevelVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_any_case() {
        for level in Level::ALL {
            let upper = level.as_str();
            assert_eq!(upper.parse::<Level>(), Ok(level));
            assert_eq!(upper.to_lowercase().parse::<Level>(), Ok(level));
        }
        assert_eq!("eRrOr".parse::<Level>(), Ok(Level::Error));
    }

    #[test]
    fn warning_is_the_only_alias() {
        assert_eq!("warning".parse::<Level>(), Ok(Level::Warn));
        assert_eq!("WARNING".parse::<Level>(), Ok(Level::Warn));
        for rejected in [
            "critical",
            "crit",
            "err",
            "information",
            "",
            " INFO",
            "INFO ",
        ] {
            assert_eq!(
                rejected.parse::<Level>(),
                Err(Rejection::InvalidLevel {
                    value: rejected.into()
                }),
                "{rejected:?}"
            );
        }
    }

    #[test]
    fn foreign_names_take_the_aliases_other_tools_write() {
        for (name, level) in [
            ("warning", Level::Warn),
            ("WARN", Level::Warn),
            ("CRITICAL", Level::Fatal),
            ("crit", Level::Fatal),
            ("Emerg", Level::Fatal),
            ("alert", Level::Fatal),
            ("panic", Level::Fatal),
            ("fatal", Level::Fatal),
            ("err", Level::Error),
            ("ERROR", Level::Error),
            ("notice", Level::Info),
            ("Notice", Level::Info),
            ("dbg", Level::Debug),
            ("trace", Level::Trace),
        ] {
            assert_eq!(Level::from_foreign(name), Some(level), "{name}");
        }
        for unknown in ["unknown", "verbose", "", " info", "loud"] {
            assert_eq!(Level::from_foreign(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn order_and_severity_numbers_follow_opentelemetry() {
        let numbers: Vec<u8> = Level::ALL.iter().map(Level::severity_number).collect();
        assert_eq!(numbers, [1, 5, 9, 13, 17, 21]);
        assert!(Level::ALL.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(Level::default(), Level::Info);
    }

    #[test]
    fn display_and_serde_use_upper_case() {
        assert_eq!(Level::Warn.to_string(), "WARN");
        assert_eq!(serde_json::to_string(&Level::Fatal).unwrap(), r#""FATAL""#);
        assert_eq!(
            serde_json::from_str::<Level>(r#""debug""#).unwrap(),
            Level::Debug
        );
        assert!(serde_json::from_str::<Level>(r#""loud""#).is_err());
    }
}
