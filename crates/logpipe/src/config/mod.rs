//! Configuration: one TOML file, overridden by `LOGPIPE_*` environment variables, overridden by
//! command-line flags. Every section rejects unknown keys, and every error names the key (or the
//! environment variable) it came from. `logpipe config check` prints the result with secrets
//! redacted (see [`redact`]).
//!
//! Layering works on a `toml::Value` tree before anything is typed: defaults are serialised to a
//! tree, the file is merged over it, then environment variables and flags. The merged tree is then
//! deserialised once through `serde_path_to_error`, so a bad value anywhere is reported with its
//! full dotted path (`gateway.max_batch_events: invalid type ...`).
//!
//! One file per section (`kafka.rs`, `producer.rs`, `consumer.rs` with `[retry]`, `gateway.rs`
//! with `[limits]`, `http.rs`, `stores.rs`, `logging.rs`, `dlq.rs`): every field is documented there and in
//! `config/logpipe.example.toml`, and its default lives in the `Default` impl beside it. Rules
//! that span fields are in `validate.rs` ([`Config::validate`]); pass-through librdkafka
//! properties are checked by `properties.rs` ([`check_properties`]) without creating a client.
//!
//! Secrets (`*.password`, `gateway.api_keys`, `producer.internal_token`) are [`Secret`]s, which
//! never print; each may come from a file instead (`*_file`, `*.property_files`), read at load by
//! `secret_files.rs`. Store passwords join their URLs only to connect (`credentials.rs`).

mod consumer;
mod credentials;
mod dlq;
mod env;
mod formats;
mod gateway;
mod http;
mod kafka;
mod keys;
mod logging;
mod producer;
mod properties;
pub mod redact;
mod secret;
mod secret_files;
mod stores;
mod validate;

use std::path::Path;

use anyhow::{bail, Context};
pub use consumer::*;
pub use dlq::*;
pub use env::variables;
pub use formats::{JsonFields, RecordFormat};
pub use gateway::*;
pub use http::*;
pub use kafka::*;
pub use keys::{ApiKeyConfig, Scope};
pub use logging::*;
pub use producer::*;
pub use properties::check_properties;
pub use secret::Secret;
use serde::{Deserialize, Serialize};
pub use stores::*;
use toml::Value;

/// The whole configuration of a logpipe process (every role reads the sections it needs).
/// `Debug` masks secrets (see [`redact`]).
#[derive(Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub producer: ProducerConfig,
    pub consumer: ConsumerConfig,
    pub gateway: GatewayConfig,
    pub limits: LimitsConfig,
    pub http: HttpConfig,
    pub postgres: PostgresConfig,
    pub redis: RedisConfig,
    pub log: LogConfig,
    pub retry: RetryConfig,
    pub dlq: DlqConfig,
}

/// Prefix of every environment variable logpipe reads.
pub const ENV_PREFIX: &str = "LOGPIPE_";

/// Where a configuration comes from, lowest precedence first.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `--config FILE` (or `LOGPIPE_CONFIG`).
    pub file: Option<std::path::PathBuf>,
    /// Environment variables; tests pass their own list instead of the process environment.
    pub env: Vec<(String, String)>,
    /// Flag overrides as dotted keys (`kafka.brokers`, `consumer.properties."fetch.wait.max.ms"`),
    /// already paired with their values.
    pub overrides: Vec<(String, String)>,
}

impl Sources {
    /// Sources with the current process environment.
    pub fn from_process_env(
        file: Option<std::path::PathBuf>,
        overrides: Vec<(String, String)>,
    ) -> Self {
        Self {
            file,
            env: std::env::vars().collect(),
            overrides,
        }
    }
}

impl Config {
    /// Builds the effective configuration from its sources and validates it.
    pub fn load(sources: &Sources) -> anyhow::Result<Config> {
        let mut tree = Value::try_from(Config::default()).context("serialising defaults")?;
        if let Some(path) = &sources.file {
            let file = read_file(path)?;
            merge(&mut tree, file, "", &path.display().to_string())?;
        }
        env::apply(&mut tree, &sources.env)?;
        for (key, raw) in &sources.overrides {
            env::set_path(&mut tree, key, raw).with_context(|| format!("flag for `{key}`"))?;
        }
        let mut config: Config = serde_path_to_error::deserialize(tree).map_err(invalid_value)?;
        secret_files::resolve(&mut config)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses a TOML document on its own (no environment), for tests and `config check --file`.
    pub fn from_toml_str(text: &str) -> anyhow::Result<Config> {
        let mut tree = Value::try_from(Config::default())?;
        let file = parse_toml(text, "TOML")?;
        merge(&mut tree, file, "", "<string>")?;
        let mut config: Config = serde_path_to_error::deserialize(tree).map_err(invalid_value)?;
        secret_files::resolve(&mut config)?;
        config.validate()?;
        Ok(config)
    }
}

fn read_file(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    parse_toml(&text, &format!("config file {}", path.display()))
}

/// Parses TOML, reporting a syntax error by line and column without the source line that
/// toml's own message quotes: that line may hold a password.
fn parse_toml(text: &str, what: &str) -> anyhow::Result<Value> {
    toml::from_str(text).map_err(|e| {
        let at = e.span().map_or_else(String::new, |span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!(" at line {line}, column {column}")
        });
        anyhow::anyhow!("parsing {what}{at}: {}", e.message())
    })
}

/// A value of the wrong type, named by its key. serde's message quotes the value, so for a key
/// that holds a secret only what was expected is kept.
fn invalid_value(e: serde_path_to_error::Error<toml::de::Error>) -> anyhow::Error {
    let path = e.path().to_string();
    let message = e.into_inner().to_string();
    let lower = path.to_ascii_lowercase();
    let secret = ["password", "api_keys", "internal_token"]
        .iter()
        .any(|part| lower.contains(part))
        || redact::is_secret_property(&lower);
    if !secret {
        return anyhow::anyhow!("config key `{path}`: {message}");
    }
    let expected = message
        .rsplit_once("expected ")
        .map_or_else(String::new, |(_, expected)| {
            format!("; expected {}", expected.trim())
        });
    anyhow::anyhow!(
        "config key `{path}`: invalid value (not shown: the key holds a secret){expected}"
    )
}

/// Merges `overlay` into `base`. Tables merge key by key; a key absent from the defaults is an
/// error naming it, except inside free-form maps (`kafka.properties`, ...), which take any key.
fn merge(base: &mut Value, overlay: Value, path: &str, origin: &str) -> anyhow::Result<()> {
    match (base, overlay) {
        (Value::Table(base), Value::Table(overlay)) => {
            let free_form = FREE_FORM_TABLES.contains(&path);
            for (key, value) in overlay {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value, &child, origin)?,
                    None if free_form => {
                        base.insert(key, value);
                    }
                    None => bail!(
                        "unknown config key `{child}` in {origin}; see config/logpipe.example.toml for the valid keys"
                    ),
                }
            }
            Ok(())
        }
        (base, overlay) => {
            *base = overlay;
            Ok(())
        }
    }
}

/// Tables whose keys are not known in advance (passed through to librdkafka, static tags, or
/// topic names).
pub(crate) const FREE_FORM_TABLES: &[&str] = &[
    "kafka.properties",
    "producer.properties",
    "consumer.properties",
    "kafka.property_files",
    "producer.property_files",
    "consumer.property_files",
    "consumer.tags",
    "consumer.formats",
];

#[cfg(test)]
mod tests;
