//! [`Config::validate`]: the rules that span fields or need more than a type to check. Each
//! error names the config key it is about.

use std::time::Duration;

use anyhow::{bail, ensure};

use super::{Config, GroupProtocol, Replicas, CLASSIC_ONLY_PROPERTIES, REMOTE_ASSIGNORS};

impl Config {
    /// Rules that span fields or need more than a type to check.
    pub fn validate(&self) -> anyhow::Result<()> {
        let k = &self.kafka;
        ensure!(
            !k.topic.is_empty(),
            "config key `kafka.topic`: must not be empty"
        );
        ensure!(
            k.partitions >= 1,
            "config key `kafka.partitions`: must be at least 1, got {}",
            k.partitions
        );
        ensure!(
            k.dlq_partitions >= 1,
            "config key `kafka.dlq_partitions`: must be at least 1, got {}",
            k.dlq_partitions
        );
        if let (Replicas::Count(factor), Replicas::Count(min_insync)) =
            (k.replication_factor, k.min_insync_replicas)
        {
            ensure!(
                min_insync <= factor,
                "config key `kafka.min_insync_replicas`: {min_insync} is more than \
                 `kafka.replication_factor` ({factor}), so no acks=all write could ever succeed; \
                 lower it or set it to \"auto\""
            );
        }
        for (key, topic) in [
            ("kafka.topic", &k.topic),
            ("kafka.dlq_topic", &k.dlq_topic),
            ("kafka.parked_topic", &k.parked_topic),
        ] {
            ensure!(
                valid_topic_name(topic),
                "config key `{key}`: `{topic}` is not a valid Kafka topic name (1-249 of [a-zA-Z0-9._-])"
            );
        }
        ensure!(
            k.topic != k.dlq_topic && k.topic != k.parked_topic && k.dlq_topic != k.parked_topic,
            "config keys `kafka.topic`, `kafka.dlq_topic` and `kafka.parked_topic` must all differ"
        );
        let r = &self.retry;
        ensure!(
            (1..=100).contains(&r.attempts),
            "config key `retry.attempts`: 1 to 100, got {}",
            r.attempts
        );
        ensure!(
            r.multiplier >= 1.0 && r.multiplier.is_finite(),
            "config key `retry.multiplier`: at least 1.0, got {}",
            r.multiplier
        );
        ensure!(
            (0.0..=1.0).contains(&r.jitter),
            "config key `retry.jitter`: a fraction from 0.0 to 1.0, got {}",
            r.jitter
        );
        ensure!(
            r.cap >= r.base,
            "config key `retry.cap` must be at least `retry.base`"
        );
        ensure!(
            r.attempt_timeout >= Duration::from_millis(1),
            "config key `retry.attempt_timeout`: at least 1ms"
        );
        ensure!(
            !self.dlq.replay_group.is_empty(),
            "config key `dlq.replay_group`: must not be empty"
        );
        for broker in k
            .brokers
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
        {
            if !broker.contains(':') {
                bail!("config key `kafka.brokers`: `{broker}` has no port (expected host:port)");
            }
        }
        super::check_properties("kafka.properties", &k.properties)?;
        super::check_properties("producer.properties", &self.producer.properties)?;

        super::check_properties("consumer.properties", &self.consumer.properties)?;
        let c = &self.consumer;
        ensure!(
            !c.group_id.is_empty(),
            "config key `consumer.group_id`: must not be empty"
        );
        for topic in &c.topics {
            ensure!(
                valid_topic_name(topic),
                "config key `consumer.topics`: `{topic}` is not a valid Kafka topic name"
            );
        }
        ensure!(
            (1..=64).contains(&c.concurrency),
            "config key `consumer.concurrency`: 1 to 64, got {}",
            c.concurrency
        );
        ensure!(
            (1..=256).contains(&c.workers),
            "config key `consumer.workers`: 1 to 256, got {}",
            c.workers
        );
        ensure!(
            (1..=100_000).contains(&c.batch_size),
            "config key `consumer.batch_size`: 1 to 100000, got {}",
            c.batch_size
        );
        ensure!(
            c.max_batch_size >= c.batch_size && c.max_batch_size <= 100_000,
            "config key `consumer.max_batch_size` ({}) must be between `consumer.batch_size` ({}) and 100000",
            c.max_batch_size,
            c.batch_size
        );
        ensure!(
            (1..=self.postgres.pool_size).contains(&c.store_streams),
            "config key `consumer.store_streams` ({}) must be between 1 and `postgres.pool_size` ({}): each stream holds a pooled connection",
            c.store_streams,
            self.postgres.pool_size
        );
        match c.group_protocol {
            GroupProtocol::Classic => {
                ensure!(
                    c.drain_timeout < c.session_timeout,
                    "config key `consumer.drain_timeout` ({}) must be below `consumer.session_timeout` ({}), or a revoke could outlive the session",
                    humantime::format_duration(c.drain_timeout),
                    humantime::format_duration(c.session_timeout)
                );
                ensure!(
                    c.session_timeout < c.max_poll_interval,
                    "config key `consumer.session_timeout` must be below `consumer.max_poll_interval`"
                );
                ensure!(
                    c.remote_assignor.is_empty(),
                    "config key `consumer.remote_assignor` (`{}`) only applies with `consumer.group_protocol = \"consumer\"`; with the classic protocol set `consumer.assignment_strategy`, or leave it empty",
                    c.remote_assignor
                );
            }
            GroupProtocol::Consumer => {
                // The session timeout is the broker's; the consumer checks drain_timeout against
                // it at start-up. Here only what the client itself bounds.
                ensure!(
                    c.drain_timeout < c.max_poll_interval,
                    "config key `consumer.drain_timeout` ({}) must be below `consumer.max_poll_interval` ({}), the rebalance timeout of the consumer protocol",
                    humantime::format_duration(c.drain_timeout),
                    humantime::format_duration(c.max_poll_interval)
                );
                ensure!(
                    c.remote_assignor.is_empty()
                        || REMOTE_ASSIGNORS.contains(&c.remote_assignor.as_str()),
                    "config key `consumer.remote_assignor`: `{}` is not a server-side assignor Kafka ships; use {}, or leave it empty for the broker's default",
                    c.remote_assignor,
                    REMOTE_ASSIGNORS
                        .iter()
                        .map(|a| format!("\"{a}\""))
                        .collect::<Vec<_>>()
                        .join(" or ")
                );
                for (section, properties) in [
                    ("kafka.properties", &k.properties),
                    ("consumer.properties", &c.properties),
                ] {
                    for (key, instead) in CLASSIC_ONLY_PROPERTIES {
                        ensure!(
                            !properties.contains_key(*key),
                            "config key `{section}.\"{key}\"`: not supported with `consumer.group_protocol = \"consumer\"` (librdkafka refuses it); remove it: {instead}"
                        );
                    }
                }
            }
        }
        for (section, properties) in [
            ("kafka.properties", &k.properties),
            ("consumer.properties", &c.properties),
        ] {
            for (key, instead) in [
                ("group.protocol", "set `consumer.group_protocol` instead"),
                (
                    "group.remote.assignor",
                    "set `consumer.remote_assignor` instead",
                ),
            ] {
                ensure!(
                    !properties.contains_key(key),
                    "config key `{section}.\"{key}\"`: cannot be set here; {instead}"
                );
            }
        }
        ensure!(
            c.max_uncommitted >= c.max_batch_size,
            "config key `consumer.max_uncommitted` ({}) must be at least `consumer.max_batch_size` ({})",
            c.max_uncommitted,
            c.max_batch_size
        );
        ensure!(
            self.postgres.retention_days >= 1,
            "config key `postgres.retention_days`: at least 1"
        );
        ensure!(
            (1..=64).contains(&self.postgres.pool_size),
            "config key `postgres.pool_size`: 1 to 64"
        );
        // Refused rather than ignored: whoever sets it expects indexed searches, and the SQLite
        // store has no pg_trgm to give them.
        ensure!(
            self.postgres.search_index == super::stores::SearchIndex::None
                || !self.postgres.url.trim().is_empty()
                    && !self.postgres.url.trim().starts_with("sqlite:"),
            "config key `postgres.search_index` = \"trigram\" needs PostgreSQL (it is a pg_trgm index); the store here is SQLite (`postgres.url` is empty or sqlite:): set postgres.url to a postgres:// URL or search_index = \"none\""
        );

        // The URL's sslmode/sslrootcert/sslcert/sslkey over the keys, checked as the store
        // will check them (an unknown sslmode, a certificate without its key, ...).
        if self.postgres.url.starts_with("postgres") {
            logpipe_store::check_tls_settings(&self.postgres.url, &self.postgres.tls()).map_err(
                |e| anyhow::anyhow!("config keys `postgres.ssl*` / `postgres.url`: {e}"),
            )?;
        }

        let p = &self.producer;
        ensure!(
            p.max_in_flight >= self.gateway.max_batch_events,
            "config key `producer.max_in_flight` ({}) must be at least `gateway.max_batch_events` ({}), or a full batch could never be sent",
            p.max_in_flight,
            self.gateway.max_batch_events
        );
        ensure!(
            p.max_request_events >= self.gateway.max_batch_events,
            "config key `producer.max_request_events` ({}) must be at least `gateway.max_batch_events` ({}), or the producer service would refuse full batches the gateway accepted",
            p.max_request_events,
            self.gateway.max_batch_events
        );
        ensure!(
            p.internal_token.is_empty() || p.internal_token.expose().len() >= 16,
            "config key `producer.internal_token` (env LOGPIPE_PRODUCER_INTERNAL_TOKEN): must be at least 16 characters, or empty to turn the check off on a loopback listen address"
        );
        ensure!(
            p.delivery_timeout < self.gateway.request_timeout,
            "config key `producer.delivery_timeout` ({}) must be below `gateway.request_timeout` ({}) so a failed delivery is reported before the request gives up",
            humantime::format_duration(p.delivery_timeout),
            humantime::format_duration(self.gateway.request_timeout)
        );
        ensure!(
            p.delivery_timeout >= std::time::Duration::from_millis(100),
            "config key `producer.delivery_timeout`: at least 100ms"
        );

        let g = &self.gateway;
        ensure!(
            g.max_batch_events >= 1,
            "config key `gateway.max_batch_events`: must be at least 1"
        );
        ensure!(
            g.max_body_bytes >= 1024,
            "config key `gateway.max_body_bytes`: must be at least 1024"
        );
        ensure!(
            g.api_keys.iter().all(|key| key.expose().len() >= 16),
            "config key `gateway.api_keys`: every key must be at least 16 characters"
        );
        let mut names = std::collections::BTreeSet::new();
        for key in &g.keys {
            ensure!(
                !key.name.is_empty() && names.insert(key.name.as_str()),
                "config key `gateway.keys`: every key needs a name of its own (`{}` is empty or used twice)",
                key.name
            );
            ensure!(
                key.digest().is_some(),
                "config key `gateway.keys` (`{}`): `sha256` must be the key's SHA-256 as 64 hex digits (`printf %s \"$KEY\" | sha256sum`)",
                key.name
            );
            ensure!(
                !key.scopes.is_empty(),
                "config key `gateway.keys` (`{}`): `scopes` must name at least one of ingest, read, admin",
                key.name
            );
        }
        url::Url::parse(&g.producer_url).map_err(|e| {
            anyhow::anyhow!(
                "config key `gateway.producer_url`: `{}` is not a URL: {e}",
                super::redact::redact_url(&g.producer_url)
            )
        })?;
        for raw in &g.consumer_metrics_urls {
            ensure!(
                matches!(url::Url::parse(raw), Ok(u) if u.scheme() == "http"),
                "config key `gateway.consumer_metrics_urls`: `{}` is not an http:// URL (like http://127.0.0.1:8082/metrics)",
                super::redact::redact_url(raw)
            );
        }
        ensure!(
            g.query_max_range >= Duration::from_secs(60),
            "config key `gateway.query_max_range`: must be at least 1m"
        );
        ensure!(
            !g.query_default_range.is_zero() && g.query_default_range <= g.query_max_range,
            "config key `gateway.query_default_range`: must be above 0 and at most `gateway.query_max_range`"
        );
        ensure!(
            g.query_max_q_chars >= 1,
            "config key `gateway.query_max_q_chars`: must be at least 1"
        );
        for (key, name) in [
            ("gateway.loki_default_service", &g.loki_default_service),
            (
                "gateway.elasticsearch_fields.default_service",
                &g.elasticsearch_fields.default_service,
            ),
        ] {
            ensure!(
                name.parse::<logpipe_model::ServiceName>().is_ok(),
                "config key `{key}`: `{name}` is not a service name (1 to 128 of A-Z a-z 0-9 . _ -)"
            );
        }
        let f = &g.elasticsearch_fields;
        for (key, path) in [
            ("message", &f.message),
            ("timestamp", &f.timestamp),
            ("level", &f.level),
            ("service", &f.service),
            ("host", &f.host),
        ] {
            ensure!(
                !path.is_empty(),
                "config key `gateway.elasticsearch_fields.{key}`: must name a document field (like `message` or `log.level`)"
            );
        }

        let l = &self.limits;
        ensure!(
            l.max_message_bytes >= 1,
            "config key `limits.max_message_bytes`: must be at least 1"
        );
        ensure!(
            l.max_message_bytes < g.max_body_bytes,
            "config key `limits.max_message_bytes` must be below `gateway.max_body_bytes`"
        );

        for (key, url, schemes) in [
            (
                "postgres.url",
                &self.postgres.url,
                &["postgres", "postgresql"][..],
            ),
            (
                "redis.url",
                &self.redis.url,
                &["redis", "rediss", "unix"][..],
            ),
        ] {
            if url.is_empty() {
                continue;
            }
            let parsed = url::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("config key `{key}`: not a URL: {e}"))?;
            ensure!(
                schemes.contains(&parsed.scheme()),
                "config key `{key}`: scheme `{}` is not one of {schemes:?}",
                parsed.scheme()
            );
        }
        self.redis.check_tls()?;
        tracing_subscriber::EnvFilter::try_new(&self.log.level)
            .map_err(|e| anyhow::anyhow!("config key `log.level`: {e}"))?;
        super::credentials::check(self)?;
        super::HttpConfig::check(self)?;
        super::formats::check(self)?;
        Ok(())
    }
}

/// Kafka's own rule for topic names.
fn valid_topic_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_producer_request_cap_and_internal_token_are_checked() {
        let mut config = Config::default();
        config.gateway.max_batch_events = 500;
        config.producer.max_request_events = 499;
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("producer.max_request_events"), "{error}");
        config.producer.max_request_events = 500;
        config.validate().unwrap();

        config.producer.internal_token = "short".into();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("producer.internal_token"), "{error}");
        config.producer.internal_token = "0123456789abcdef".into();
        config.validate().unwrap();
    }
}
