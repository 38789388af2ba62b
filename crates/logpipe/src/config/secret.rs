//! [`Secret`]: a config value that never prints. `Debug`, `Display` and `Serialize` (what
//! `logpipe config check` and its `--json` write) show [`MASK`](super::redact::MASK); the value
//! itself is reached only through [`Secret::expose`], at the point where it is used (the
//! gateway's key check, the producer client's header, the store URL at connect time).
//!
//! Not `secrecy::SecretString`: the config is layered as a TOML tree built by serialising the
//! defaults, and tests compare configs, but secrecy's string secret neither serialises (by
//! design) nor compares. This type serialises the mask instead, which is safe for the defaults
//! (every secret's default is empty, and empty serialises as empty).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::redact::MASK;

/// A secret string from the configuration. Empty means "not set" (TOML has no null).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value itself. Call it only where the value is handed to what needs it, never to
    /// format a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether no value is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What is shown for it: the mask, or empty when unset (so "not set" stays visible).
    fn shown(&self) -> &'static str {
        if self.0.is_empty() {
            ""
        } else {
            MASK
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?})", self.shown())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.shown())
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.shown())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_shows_the_mask_everywhere_and_compares_by_value() {
        let secret = Secret::from("hunter2-0123456789");
        for shown in [
            format!("{secret:?}"),
            format!("{secret:#?}"),
            secret.to_string(),
            serde_json::to_string(&secret).unwrap(),
            toml::Value::try_from(&secret).unwrap().to_string(),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains(MASK), "{shown}");
        }
        assert_eq!(secret.expose(), "hunter2-0123456789");
        assert_eq!(secret, Secret::new("hunter2-0123456789"));
        assert_ne!(secret, Secret::new("other"));
        // Unset stays visibly unset.
        assert_eq!(Secret::default().to_string(), "");
        let read: Secret = serde_json::from_str("\"s3cret\"").unwrap();
        assert_eq!(read.expose(), "s3cret");
    }
}
