//! `[postgres]` and `[redis]`: the durable log store and the real-time aggregates.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Durable log store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/db`. Empty: embedded temporary SQLite
    /// (a file in a private temporary directory, removed on exit).
    pub url: String,
    /// Schema of the `logs` table.
    pub schema: String,
    /// Connections in the pool (per process).
    pub pool_size: usize,
    /// Connections of the query API's own pool (per gateway), apart from the consumer's writes:
    /// searches can wait for each other, never delay a write.
    pub query_pool_size: usize,
    /// The server cancels a query API statement that runs longer (`statement_timeout` of the
    /// query pool's connections); the client gets 503. The embedded SQLite store stops a search
    /// at the same budget (waiting for its search connection included).
    #[serde(with = "humantime_serde")]
    pub query_statement_timeout: Duration,
    /// Daily partitions older than this are dropped.
    pub retention_days: u32,
    /// Daily partitions created ahead of today.
    pub partitions_ahead_days: u32,
    /// The index behind the query API's text search (`q`): `"none"` (a search scans its time
    /// range) or `"trigram"` (a pg_trgm GIN on `message`, built concurrently at migrate; about a
    /// quarter of the write rate). PostgreSQL only. See docs/operations.md, "Text search index".
    pub search_index: SearchIndex,
    /// libpq's `sslmode`: `disable`, `prefer` (TLS when the server offers it, unverified),
    /// `require` (TLS, unverified), `verify-ca` (the CA), `verify-full` (the CA and the host
    /// name). `sslmode=` in the URL wins.
    pub sslmode: logpipe_store::SslMode,
    /// PEM file of the CA(s) that sign the server's certificate, or `system` (the system trust
    /// store). With `prefer` or `require` it makes them check the CA, as libpq does. Empty:
    /// none. `sslrootcert=` in the URL wins.
    pub sslrootcert: String,
    /// PEM client certificate for servers that ask for one (pg_hba `cert`, `clientcert=`);
    /// needs `sslkey`. Empty: none. `sslcert=` in the URL wins.
    pub sslcert: String,
    /// PEM private key of `sslcert` (a path: the key itself is never in the configuration).
    /// `sslkey=` in the URL wins.
    pub sslkey: String,
}

/// `postgres.search_index`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum SearchIndex {
    #[default]
    None,
    Trigram,
}

impl From<SearchIndex> for logpipe_store::SearchIndex {
    fn from(index: SearchIndex) -> Self {
        match index {
            SearchIndex::None => logpipe_store::SearchIndex::None,
            SearchIndex::Trigram => logpipe_store::SearchIndex::Trigram,
        }
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            schema: "public".into(),
            pool_size: 4,
            query_pool_size: 2,
            query_statement_timeout: Duration::from_secs(5),
            retention_days: 7,
            partitions_ahead_days: 3,
            search_index: SearchIndex::None,
            sslmode: logpipe_store::SslMode::Prefer,
            sslrootcert: String::new(),
            sslcert: String::new(),
            sslkey: String::new(),
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
            search_index: self.search_index.into(),
            tls: self.tls(),
            ..logpipe_store::StoreOptions::default()
        }
    }

    /// The TLS keys; the same parameters in `url` win over them when the store opens.
    pub fn tls(&self) -> logpipe_store::PgTls {
        let set = |value: &str| (!value.trim().is_empty()).then(|| value.trim().to_owned());
        logpipe_store::PgTls {
            sslmode: Some(self.sslmode),
            sslrootcert: set(&self.sslrootcert),
            sslcert: set(&self.sslcert).map(Into::into),
            sslkey: set(&self.sslkey).map(Into::into),
        }
    }

    /// The query API's pool: its own connections, each statement bounded, named
    /// `logpipe-query` in `pg_stat_activity`.
    pub fn query_store_options(&self) -> logpipe_store::StoreOptions {
        logpipe_store::StoreOptions {
            pool_size: self.query_pool_size,
            statement_timeout: Some(self.query_statement_timeout),
            application_name: "logpipe-query".into(),
            ..self.store_options()
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
    /// When a consumer finds that the aggregates store lost data (a watermark went backwards:
    /// restart without persistence, FLUSHDB, failover to an empty replica), rebuild the lost
    /// counts from the log store by itself. See docs/runbook.md, "Aggregates lost data".
    pub reconcile: bool,
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
            reconcile: true,
        }
    }
}
