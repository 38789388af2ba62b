//! `[postgres]` and `[redis]`: the durable log store and the real-time aggregates (with the
//! Redis TLS files and their rules).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Secret;

/// Durable log store.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// `postgres://user:password@host:port/db`. Empty: embedded temporary SQLite
    /// (a file in a private temporary directory, removed on exit).
    pub url: String,
    /// The password, instead of one in `url`: replaces the URL's password when connecting, so
    /// the URL holds none and is safe to log. Never printed.
    pub password: Secret,
    /// A file holding `password` (trailing newline trimmed), read at start-up: a mounted
    /// Kubernetes or Docker secret. Not with `password`.
    pub password_file: PathBuf,
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
            password: Secret::default(),
            password_file: PathBuf::new(),
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
    /// `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS. The password (and the
    /// ACL user, if not the default one) come from here only. Empty: in-process aggregates.
    pub url: String,
    /// The password (Redis `AUTH`), instead of one in `url`: replaces the URL's password when
    /// connecting, so the URL holds none and is safe to log. Never printed.
    pub password: Secret,
    /// A file holding `password` (trailing newline trimmed), read at start-up: a mounted
    /// Kubernetes or Docker secret. Not with `password`.
    pub password_file: PathBuf,
    /// Prefix of every key logpipe writes.
    pub key_prefix: String,
    /// Per-minute counters expire after this.
    #[serde(with = "humantime_serde")]
    pub minute_ttl: Duration,
    /// When a consumer finds that the aggregates store lost data (a watermark went backwards:
    /// restart without persistence, FLUSHDB, failover to an empty replica), rebuild the lost
    /// counts from the log store by itself. See docs/runbook.md, "Aggregates lost data".
    pub reconcile: bool,
    /// PEM CA certificate(s) to trust for a `rediss://` server instead of the system's roots
    /// (a private CA). Empty: the system's roots.
    pub tls_ca_file: String,
    /// PEM client certificate for a server that requires one (Redis `tls-auth-clients yes`),
    /// with `tls_key_file`. Empty: none.
    pub tls_cert_file: String,
    /// PEM private key of `tls_cert_file`.
    pub tls_key_file: String,
}

impl RedisConfig {
    /// The aggregates' options.
    pub fn agg_options(&self) -> logpipe_aggregates::AggOptions {
        let path = |value: &str| (!value.is_empty()).then(|| PathBuf::from(value));
        logpipe_aggregates::AggOptions {
            key_prefix: self.key_prefix.clone(),
            minute_ttl: self.minute_ttl,
            tls_ca_file: path(&self.tls_ca_file),
            tls_cert_file: path(&self.tls_cert_file),
            tls_key_file: path(&self.tls_key_file),
            ..logpipe_aggregates::AggOptions::default()
        }
    }

    /// The rules of the TLS keys, for [`super::Config::validate`]: the aggregates' own
    /// ([`logpipe_aggregates::AggOptions::check_tls`]), reported at load.
    pub(super) fn check_tls(&self) -> anyhow::Result<()> {
        self.agg_options()
            .check_tls(&self.url)
            .map_err(|e| match e {
                logpipe_aggregates::AggError::Other(rule) => anyhow::anyhow!("config keys {rule}"),
                other => anyhow::anyhow!(other),
            })
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            password: Secret::default(),
            password_file: PathBuf::new(),
            key_prefix: "logpipe".into(),
            minute_ttl: Duration::from_secs(48 * 3600),
            reconcile: true,
            tls_ca_file: String::new(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use crate::config::{Config, Sources};

    fn load(env: &[(&str, &str)]) -> anyhow::Result<Config> {
        Config::load(&Sources {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Sources::default()
        })
    }

    #[test]
    fn tls_files_reach_the_aggregates_from_the_environment() {
        let config = load(&[
            ("LOGPIPE_REDIS_URL", "rediss://logpipe:pw@cache:6380/0"),
            ("LOGPIPE_REDIS_TLS_CA_FILE", "/etc/logpipe/redis-ca.crt"),
            ("LOGPIPE_REDIS_TLS_CERT_FILE", "/etc/logpipe/client.crt"),
            ("LOGPIPE_REDIS_TLS_KEY_FILE", "/etc/logpipe/client.key"),
        ])
        .unwrap();
        let options = config.redis.agg_options();
        assert_eq!(
            options.tls_ca_file,
            Some(PathBuf::from("/etc/logpipe/redis-ca.crt"))
        );
        assert_eq!(
            options.tls_cert_file,
            Some(PathBuf::from("/etc/logpipe/client.crt"))
        );
        assert_eq!(
            options.tls_key_file,
            Some(PathBuf::from("/etc/logpipe/client.key"))
        );
        let plain = Config::default().redis.agg_options();
        assert_eq!(
            (plain.tls_ca_file, plain.tls_cert_file, plain.tls_key_file),
            (None, None, None)
        );
    }

    #[test]
    fn a_client_certificate_without_its_key_names_both_keys() {
        for (key, value) in [
            ("LOGPIPE_REDIS_TLS_CERT_FILE", "client.crt"),
            ("LOGPIPE_REDIS_TLS_KEY_FILE", "client.key"),
        ] {
            let error = load(&[("LOGPIPE_REDIS_URL", "rediss://cache:6380"), (key, value)])
                .unwrap_err()
                .to_string();
            assert!(error.contains("`redis.tls_cert_file`"), "{error}");
            assert!(error.contains("`redis.tls_key_file`"), "{error}");
        }
    }

    #[test]
    fn tls_files_with_a_plain_url_ask_for_rediss_and_hide_the_password() {
        for url in ["redis://logpipe:hunter2@cache:6379", ""] {
            let error = load(&[
                ("LOGPIPE_REDIS_URL", url),
                ("LOGPIPE_REDIS_TLS_CA_FILE", "ca.crt"),
            ])
            .unwrap_err()
            .to_string();
            assert!(error.contains("use rediss://"), "{error}");
            assert!(error.contains("`redis.tls_ca_file`"), "{error}");
            assert!(!error.contains("hunter2"), "{error}");
        }
    }
}
