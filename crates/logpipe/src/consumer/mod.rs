//! The consumer group: `consumer.concurrency` members per process, each a Kafka consumer on its
//! own poll thread ([`member`]) feeding an async pipeline ([`pipeline`]) that decodes, enriches,
//! stores, aggregates and then commits. Offsets are committed by hand, only after a batch is
//! durable in the store and counted in the aggregates ([`offsets`] decides how far).

pub mod dead_letter;
pub mod member;
pub mod metrics;
pub mod offsets;
pub mod pipeline;
pub mod steps;

pub use metrics::{
    ClassLabels, ConsumerMetrics, ConsumerStats, DependencyLabels, KindLabels, MemberLabels,
    PartitionLabels, ResultLabels,
};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};

use anyhow::Context;
use logpipe_aggregates::Aggregates;
use logpipe_store::LogStore;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ConsumerConfig, GroupProtocol};
use crate::kafka::base_config;

/// The consumer group members of this process.
pub struct ConsumerService {
    threads: Vec<std::thread::JoinHandle<()>>,
    pipelines: Vec<tokio::task::JoinHandle<()>>,
    assigned: Vec<Arc<AtomicUsize>>,
    drain_timeout: std::time::Duration,
    pub stats: Arc<ConsumerStats>,
    dead_letters: Arc<dead_letter::DeadLetters>,
}

impl ConsumerService {
    /// Starts `consumer.concurrency` members subscribed to the configured topics.
    pub fn start(
        config: &Config,
        bootstrap: &str,
        store: Arc<LogStore>,
        aggregates: Aggregates,
        steps: Vec<Arc<dyn steps::Step>>,
        metrics: ConsumerMetrics,
        stop: CancellationToken,
    ) -> anyhow::Result<ConsumerService> {
        let c = &config.consumer;
        let topics = c.topics(&config.kafka);
        let stats = Arc::new(ConsumerStats::default());
        let dead_letters = Arc::new(dead_letter::DeadLetters::new(config, bootstrap)?);
        let store_streams = if store.concurrent_writes() {
            c.store_streams
        } else {
            1
        };
        let deps = pipeline::Deps {
            store,
            store_streams,
            aggregates,
            dead_letters: dead_letters.clone(),
            steps: Arc::new(steps),
            retry: config.retry.clone(),
            group: c.group_id.clone(),
            max_uncommitted: c.max_uncommitted,
            limits: config.limits.to_model(),
            tags: Arc::new(c.tags.clone()),
            workers: c.workers,
            batch_size: c.batch_size,
            max_batch_size: c.max_batch_size.max(c.batch_size),
            batch_linger: c.batch_linger,
            metrics: metrics.clone(),
            stats: stats.clone(),
        };
        let mut service = ConsumerService {
            threads: Vec::new(),
            pipelines: Vec::new(),
            assigned: Vec::new(),
            drain_timeout: c.drain_timeout,
            stats,
            dead_letters,
        };
        if c.group_protocol == GroupProtocol::Consumer {
            tokio::spawn(check_session_timeout(config.clone(), bootstrap.to_string()));
        }
        let host = hostname();
        for index in 0..c.concurrency {
            let member = format!("{host}-{}-{index}", std::process::id());
            let mut client = base_config(&config.kafka, bootstrap, "consumer");
            client
                .set("group.id", &c.group_id)
                .set(
                    "client.id",
                    format!("{}-consumer-{member}", config.kafka.client_id),
                )
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                .set(
                    "max.poll.interval.ms",
                    c.max_poll_interval.as_millis().to_string(),
                )
                .set("statistics.interval.ms", "5000");
            // Kafka answers a waiting fetch as soon as records arrive (the high watermark moves),
            // so on a cluster the wait only bounds idle fetches and librdkafka's 500 ms costs no
            // latency. The embedded mock cluster holds every fetch for the whole wait instead:
            // 5 ms there (on another broker that holds fetches the same way, 500 ms gave an
            // end-to-end p50 of ~170 ms at 5,000 events/s, 5 ms ~14 ms).
            // `consumer.properties."fetch.wait.max.ms"` overrides either.
            if config.kafka.is_embedded() {
                client.set("fetch.wait.max.ms", "5");
            }
            group_settings(&mut client, c);
            crate::kafka::apply_properties(&mut client, &config.kafka, &c.properties);
            // The channel holds about two batches: enough to keep the pipeline busy, small enough
            // that a stalled pipeline pauses fetching quickly.
            let (tx, rx) = mpsc::channel(c.batch_size * 2);
            let (commit_tx, commit_rx) = std_mpsc::sync_channel(1024);
            let assigned = Arc::new(AtomicUsize::new(0));
            let outages = pipeline::OutageFlags::default();
            let context = member::context(
                member.clone(),
                tx,
                c.drain_timeout,
                metrics.clone(),
                assigned.clone(),
                outages.clone(),
            );
            let consumer: BaseConsumer<member::MemberContext> = client
                .create_with_context(context)
                .context("creating the Kafka consumer")?;
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            consumer
                .subscribe(&names)
                .with_context(|| format!("subscribing to {topics:?}"))?;
            tracing::info!(%member, group = %c.group_id, ?topics, protocol = c.group_protocol.as_str(), assignment = %assignment(c), "consumer member joining the group");
            let link = pipeline::MemberLink {
                member: member.clone(),
                outages,
            };
            service.pipelines.push(tokio::spawn(pipeline::run(
                deps.clone(),
                link,
                rx,
                commit_tx,
            )));
            let handle = member::MemberHandle {
                consumer,
                commits: commit_rx,
                stop: stop.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("poll-{index}"))
                .spawn(move || member::poll_loop(handle))
                .context("spawning the poll thread")?;
            service.threads.push(thread);
            service.assigned.push(assigned);
        }
        Ok(service)
    }

    /// Partitions owned by this process now.
    pub fn assigned_partitions(&self) -> usize {
        self.assigned
            .iter()
            .map(|a| a.load(Ordering::Relaxed))
            .sum()
    }

    /// Waits for every member to leave the group (after the stop token was cancelled). The
    /// poll threads bound their own drain by `drain_timeout`; a pipeline still retrying a store
    /// outage after that (it can no longer commit anything) is stopped, so shutdown never hangs.
    pub async fn wait(self) {
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        let deadline = tokio::time::Instant::now() + self.drain_timeout;
        for mut pipeline in self.pipelines {
            if tokio::time::timeout_at(deadline, &mut pipeline)
                .await
                .is_err()
            {
                tracing::warn!("a consumer pipeline was still retrying a store outage at shutdown; stopped it (its records were not committed and will be re-read)");
                pipeline.abort();
            }
        }
        // Every DLQ write a commit depended on was already acknowledged; this only waits for
        // librdkafka's own bookkeeping.
        let dead_letters = self.dead_letters;
        let _ = tokio::task::spawn_blocking(move || {
            dead_letters.flush(std::time::Duration::from_secs(2))
        })
        .await;
    }
}

/// The group-protocol settings of a member's client. The classic-only properties are set only
/// with the classic protocol: with `group.protocol=consumer` librdkafka refuses to create a
/// consumer that sets any of them (the broker assigns and owns the session timeout there).
pub fn group_settings(client: &mut rdkafka::ClientConfig, c: &ConsumerConfig) {
    client.set("group.protocol", c.group_protocol.as_str());
    match c.group_protocol {
        GroupProtocol::Classic => {
            client
                .set(
                    "partition.assignment.strategy",
                    c.assignment_strategy.as_str(),
                )
                .set(
                    "session.timeout.ms",
                    c.session_timeout.as_millis().to_string(),
                );
        }
        GroupProtocol::Consumer => {
            if !c.remote_assignor.is_empty() {
                client.set("group.remote.assignor", &c.remote_assignor);
            }
        }
    }
}

/// Who assigns partitions, for the start-up log.
fn assignment(c: &ConsumerConfig) -> String {
    match c.group_protocol {
        GroupProtocol::Classic => format!("{} (client-side)", c.assignment_strategy.as_str()),
        GroupProtocol::Consumer if c.remote_assignor.is_empty() => {
            "the broker's default assignor (server-side)".into()
        }
        GroupProtocol::Consumer => format!("{} (server-side)", c.remote_assignor),
    }
}

/// The config key that holds a consumer-protocol group's session timeout.
const GROUP_SESSION_TIMEOUT: &str = "consumer.session.timeout.ms";

/// With the consumer protocol the session timeout is the group's (its
/// `consumer.session.timeout.ms`, by default the broker's `group.consumer.session.timeout.ms`),
/// which the config cannot check: read it once at start-up and say whether `drain_timeout` is
/// below it, as the classic protocol requires of `session_timeout`.
async fn check_session_timeout(config: Config, bootstrap: String) {
    let c = &config.consumer;
    let drain = c.drain_timeout;
    match group_session_timeout(&config, &bootstrap).await {
        Ok(session) if drain < session => tracing::info!(
            group = %c.group_id,
            session_timeout = %humantime::format_duration(session),
            drain_timeout = %humantime::format_duration(drain),
            "consumer protocol: the group's session timeout is set by the broker"
        ),
        Ok(session) => tracing::warn!(
            group = %c.group_id,
            session_timeout = %humantime::format_duration(session),
            drain_timeout = %humantime::format_duration(drain),
            "consumer protocol: `consumer.drain_timeout` is not below the group's session timeout (the broker's `group.consumer.session.timeout.ms`, or the group's `{GROUP_SESSION_TIMEOUT}`); lower `consumer.drain_timeout`, or raise the group's session timeout with `kafka-configs --alter --entity-type groups --entity-name {} --add-config {GROUP_SESSION_TIMEOUT}=...`",
            c.group_id
        ),
        Err(e) => tracing::warn!(
            group = %c.group_id,
            error = %format!("{e:#}"),
            "consumer protocol: could not read the group's session timeout; make sure `consumer.drain_timeout` is below the broker's `group.consumer.session.timeout.ms`"
        ),
    }
}

/// The group's effective `consumer.session.timeout.ms`, from a DescribeConfigs of the group
/// (Kafka 4.0+ answers it for any group id, with the broker's value when the group has none).
pub async fn group_session_timeout(
    config: &Config,
    bootstrap: &str,
) -> anyhow::Result<std::time::Duration> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;

    let client = crate::kafka::client_config(
        &config.kafka,
        bootstrap,
        "consumer-admin",
        &Default::default(),
    );
    let admin: AdminClient<DefaultClientContext> =
        client.create().context("creating a Kafka admin client")?;
    let options = AdminOptions::new().request_timeout(Some(config.kafka.request_timeout));
    let group = &config.consumer.group_id;
    let results = admin
        .describe_configs([&ResourceSpecifier::Group(group)], &options)
        .await
        .context("describing the group's configs")?;
    let resource = results
        .into_iter()
        .next()
        .context("the broker returned no group configs")?
        .context("describing the group's configs")?;
    let value = resource
        .get(GROUP_SESSION_TIMEOUT)
        .and_then(|entry| entry.value.clone())
        .with_context(|| {
            format!("the broker returned no `{GROUP_SESSION_TIMEOUT}` (a broker before Kafka 4.0?)")
        })?;
    let ms: u64 = value
        .parse()
        .with_context(|| format!("`{GROUP_SESSION_TIMEOUT}` = `{value}` is not a number"))?;
    Ok(std::time::Duration::from_millis(ms))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "logpipe".into())
}

#[cfg(test)]
mod tests {
    use rdkafka::consumer::BaseConsumer;
    use rdkafka::ClientConfig;

    use super::group_settings;
    use crate::config::{ConsumerConfig, GroupProtocol, CLASSIC_ONLY_PROPERTIES};

    fn member_client(c: &ConsumerConfig) -> ClientConfig {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", "127.0.0.1:9")
            .set("group.id", "unit")
            .set(
                "max.poll.interval.ms",
                c.max_poll_interval.as_millis().to_string(),
            );
        group_settings(&mut client, c);
        client
    }

    #[test]
    fn librdkafka_accepts_the_member_settings_of_both_protocols() {
        let classic = ConsumerConfig::default();
        let client = member_client(&classic);
        assert_eq!(client.get("group.protocol"), Some("classic"));
        assert_eq!(
            client.get("partition.assignment.strategy"),
            Some("cooperative-sticky")
        );
        assert_eq!(client.get("session.timeout.ms"), Some("30000"));
        client
            .create::<BaseConsumer>()
            .expect("a classic member's settings");

        for assignor in ["", "uniform", "range"] {
            let consumer = ConsumerConfig {
                group_protocol: GroupProtocol::Consumer,
                remote_assignor: assignor.into(),
                ..ConsumerConfig::default()
            };
            let client = member_client(&consumer);
            assert_eq!(client.get("group.protocol"), Some("consumer"));
            for (key, _) in CLASSIC_ONLY_PROPERTIES {
                assert_eq!(
                    client.get(key),
                    None,
                    "{key} set under the consumer protocol"
                );
            }
            let expected = (!assignor.is_empty()).then_some(assignor);
            assert_eq!(client.get("group.remote.assignor"), expected);
            client
                .create::<BaseConsumer>()
                .unwrap_or_else(|e| panic!("a consumer-protocol member ({assignor:?}): {e}"));
        }
    }

    #[test]
    fn librdkafka_refuses_a_classic_only_property_under_the_consumer_protocol() {
        // Why the member must not set them: the config check relies on this refusal.
        for (key, value) in [
            ("session.timeout.ms", "30000"),
            ("partition.assignment.strategy", "range"),
            ("heartbeat.interval.ms", "1000"),
            ("group.protocol.type", "consumer"),
        ] {
            let consumer = ConsumerConfig {
                group_protocol: GroupProtocol::Consumer,
                ..ConsumerConfig::default()
            };
            let mut client = member_client(&consumer);
            client.set(key, value);
            let error = client.create::<BaseConsumer>().err().unwrap_or_else(|| {
                panic!("librdkafka accepted {key} with group.protocol=consumer")
            });
            assert!(error.to_string().contains(key), "{key}: {error}");
        }
    }
}
