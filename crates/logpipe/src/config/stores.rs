//! `[postgres]` and `[redis]`: the durable log store and the real-time aggregates.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Durable log store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/db`. Empty: embedded in-memory SQLite.
    pub url: String,
    /// Schema of the `logs` table.
    pub schema: String,
    /// Connections in the pool (per process).
    pub pool_size: usize,
    /// Daily partitions older than this are dropped.
    pub retention_days: u32,
    /// Daily partitions created ahead of today.
    pub partitions_ahead_days: u32,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            schema: "public".into(),
            pool_size: 4,
            retention_days: 7,
            partitions_ahead_days: 3,
        }
    }
}

impl PostgresConfig {
    /// The log store's options.
    pub fn store_options(&self) -> logpipe_store::StoreOptions {
        logpipe_store::StoreOptions {
            retention_days: self.retention_days,
            partitions_ahead_days: self.partitions_ahead_days,
            schema: self.schema.clone(),
            pool_size: self.pool_size,
        }
    }
}

/// Real-time aggregates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`. Empty: in-process aggregates.
    pub url: String,
    /// Prefix of every key logpipe writes.
    pub key_prefix: String,
    /// Per-minute counters expire after this.
    #[serde(with = "humantime_serde")]
    pub minute_ttl: Duration,
}

impl RedisConfig {
    /// The aggregates' options.
    pub fn agg_options(&self) -> logpipe_aggregates::AggOptions {
        logpipe_aggregates::AggOptions {
            key_prefix: self.key_prefix.clone(),
            minute_ttl: self.minute_ttl,
            ..logpipe_aggregates::AggOptions::default()
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            key_prefix: "logpipe".into(),
            minute_ttl: Duration::from_secs(48 * 3600),
        }
    }
}
