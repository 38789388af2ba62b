//! `[kafka]`: the cluster, the topics and their replication, and the librdkafka properties every
//! client shares.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::ensure;
use serde::{Deserialize, Serialize};

/// Kafka cluster, topics, and client properties shared by every Kafka client logpipe creates.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated (`host:port,host:port`). Empty: start the embedded
    /// in-process broker (librdkafka's mock cluster), which keeps nothing across restarts.
    pub brokers: String,
    /// `client.id` prefix; the role is appended (`logpipe-producer`).
    pub client_id: String,
    /// The topic the gateway writes to and the consumer reads.
    pub topic: String,
    /// Partitions of `topic` when logpipe creates it. Caps the consumer group's parallelism.
    pub partitions: i32,
    /// Dead-letter topic.
    pub dlq_topic: String,
    /// Partitions of the dead-letter topic when logpipe creates it.
    pub dlq_partitions: i32,
    /// `retention.ms` of the dead-letter topic when logpipe creates it.
    #[serde(with = "humantime_serde")]
    pub dlq_retention: Duration,
    /// Where `logpipe dlq replay` sends records replayed more than `dlq.max_replays` times,
    /// instead of looping them through the pipeline again. Created with `dlq_partitions`.
    pub parked_topic: String,
    /// `retention.ms` of the parked topic when logpipe creates it.
    #[serde(with = "humantime_serde")]
    pub parked_retention: Duration,
    /// Replication factor of the topics logpipe creates. `"auto"`: min(3, brokers in the
    /// cluster metadata), so 3 on a production cluster and 1 on a single broker or the embedded
    /// one. A number must not exceed the brokers in the cluster.
    pub replication_factor: Replicas,
    /// `min.insync.replicas` of the topics logpipe creates: with acks=all a write is acknowledged
    /// only once this many replicas have it. `"auto"`: the replication factor minus 1, at least 1
    /// (2 of 3 replicas: one broker may be down, and no acknowledged write rests on one copy).
    /// A number must not exceed the replication factor.
    pub min_insync_replicas: Replicas,
    /// Create missing topics at start-up (producer and consumer). `logpipe topics ensure` always does.
    pub create_topics: bool,
    /// Timeout of admin and metadata requests.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// librdkafka properties for every client (`security.protocol`, `sasl.*`, `ssl.*`, tuning).
    /// Env: `LOGPIPE_KAFKA_PROPERTY_SASL_PASSWORD` sets `sasl.password`.
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties whose values are read from files at start-up (content, trailing
    /// newline trimmed), for secrets mounted as files: `"sasl.password" =
    /// "/run/secrets/kafka-password"`. A property may be in `properties` or here, not both.
    /// Env: `LOGPIPE_KAFKA_PROPERTY_FILE_SASL_PASSWORD` sets `"sasl.password"`. Never printed.
    pub property_files: BTreeMap<String, PathBuf>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: String::new(),
            client_id: "logpipe".into(),
            topic: "application-logs".into(),
            partitions: 12,
            dlq_topic: "logs-dlq".into(),
            dlq_partitions: 3,
            dlq_retention: Duration::from_secs(7 * 24 * 3600),
            parked_topic: "logs-dlq-parked".into(),
            parked_retention: Duration::from_secs(30 * 24 * 3600),
            replication_factor: Replicas::Auto,
            min_insync_replicas: Replicas::Auto,
            create_topics: true,
            request_timeout: Duration::from_secs(10),
            properties: BTreeMap::new(),
            property_files: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// True when no brokers are configured and the embedded broker must be started.
    pub fn is_embedded(&self) -> bool {
        self.brokers.trim().is_empty()
    }

    /// The replication of logpipe's topics on a cluster of `brokers` brokers.
    pub fn replication_for(&self, brokers: usize) -> anyhow::Result<Replication> {
        Replication::resolve(self.replication_factor, self.min_insync_replicas, brokers)
    }

    /// The brokers, for an operator command that needs a cluster; without any, an error that
    /// says what `needs` them and what to set (`embedded`: why the embedded broker won't do).
    pub fn cluster_brokers(&self, needs: &str, embedded: &str) -> anyhow::Result<String> {
        ensure!(
            !self.is_embedded(),
            "no Kafka brokers configured: {needs}. Set --kafka-brokers, LOGPIPE_KAFKA_BROKERS or \
             kafka.brokers{embedded}"
        );
        Ok(self.brokers.clone())
    }
}

/// A replica count in the config: `"auto"` (worked out from the cluster when topics are created)
/// or a number from 1. Written as `"auto"` or a bare number; a string holding a number is taken
/// too, since environment variables and `--set` arrive as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replicas {
    Auto,
    Count(i32),
}

impl Serialize for Replicas {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Replicas::Auto => serializer.serialize_str("auto"),
            Replicas::Count(n) => serializer.serialize_i32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Replicas;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"auto\" or a replica count from 1")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Replicas, E> {
                match i32::try_from(n) {
                    Ok(n) if n >= 1 => Ok(Replicas::Count(n)),
                    // The "broker default" of earlier versions: configs written then still load.
                    Ok(-1) => Ok(Replicas::Auto),
                    _ => Err(E::custom(format!(
                        "expected \"auto\" or a replica count from 1, got {n}"
                    ))),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Replicas, E> {
                self.visit_i64(i64::try_from(n).unwrap_or(i64::MAX))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Replicas, E> {
                let text = text.trim();
                if text.eq_ignore_ascii_case("auto") {
                    return Ok(Replicas::Auto);
                }
                match text.parse::<i64>() {
                    Ok(n) => self.visit_i64(n),
                    Err(_) => Err(E::custom(format!(
                        "expected \"auto\" or a replica count from 1, got `{text}`"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl std::fmt::Display for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            Replicas::Auto => f.write_str("auto"),
            Replicas::Count(n) => write!(f, "{n}"),
        }
    }
}

/// The replication of a topic as logpipe creates it on a given cluster: `kafka.replication_factor`
/// and `kafka.min_insync_replicas` with `"auto"` worked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Replication {
    pub replication_factor: i32,
    pub min_insync_replicas: i32,
}

impl Replication {
    /// `factor` and `min_insync` on a cluster whose metadata lists `brokers` brokers (a broker
    /// that is down is not listed). Errors name the key and say what to change.
    pub fn resolve(
        factor: Replicas,
        min_insync: Replicas,
        brokers: usize,
    ) -> anyhow::Result<Replication> {
        let brokers = i32::try_from(brokers).unwrap_or(i32::MAX);
        ensure!(
            brokers >= 1,
            "the cluster metadata lists no brokers; check `kafka.brokers` and that the cluster is up"
        );
        let replication_factor = match factor {
            Replicas::Auto => brokers.min(3),
            Replicas::Count(n) => {
                ensure!(
                    n <= brokers,
                    "config key `kafka.replication_factor`: {n} replicas, but the cluster lists only \
                     {brokers} broker(s); start the missing brokers, or lower it (or set it to \"auto\")"
                );
                n
            }
        };
        let min_insync_replicas = match min_insync {
            Replicas::Auto => (replication_factor - 1).max(1),
            Replicas::Count(n) => {
                ensure!(
                    n <= replication_factor,
                    "config key `kafka.min_insync_replicas`: {n}, but the replication factor is \
                     {replication_factor} on this cluster of {brokers} broker(s), so no acks=all write \
                     could ever succeed; lower it (or set it to \"auto\")"
                );
                n
            }
        };
        Ok(Replication {
            replication_factor,
            min_insync_replicas,
        })
    }
}
