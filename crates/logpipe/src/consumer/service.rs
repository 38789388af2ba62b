//! The consumer group members of one process: `consumer.concurrency` members, each a Kafka
//! consumer on its own poll thread ([`super::member`]) feeding its own async pipeline
//! ([`super::pipeline`]); and their orderly shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};

use anyhow::Context;
use logpipe_aggregates::Aggregates;
use logpipe_store::LogStore;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::dead_letter::DeadLetters;
use super::handoff::OutageFlags;
use super::{member, pipeline, steps, ConsumerMetrics, ConsumerStats};
use crate::config::{Config, GroupProtocol};
use crate::kafka::consumer::{
    assignment, group_session_timeout, member_config, GROUP_SESSION_TIMEOUT,
};

/// The consumer group members of this process.
pub struct ConsumerService {
    threads: Vec<std::thread::JoinHandle<()>>,
    pipelines: Vec<tokio::task::JoinHandle<()>>,
    assigned: Vec<Arc<AtomicUsize>>,
    drain_timeout: std::time::Duration,
    pub stats: Arc<ConsumerStats>,
    dead_letters: Arc<DeadLetters>,
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
        let dead_letters = Arc::new(DeadLetters::new(config, bootstrap)?);
        let store_streams = if store.concurrent_writes() {
            c.store_streams
        } else {
            1
        };
        // In-process aggregates lose everything only with the process, and start empty with it.
        let reconcile = (config.redis.reconcile && aggregates.kind() == "redis").then(|| {
            super::reconcile::spawn(
                config,
                store.clone(),
                aggregates.clone(),
                metrics.clone(),
                stop.clone(),
            )
        });
        let deps = pipeline::Deps {
            reconcile,
            store,
            store_streams,
            aggregates,
            dead_letters: dead_letters.clone(),
            steps: Arc::new(steps),
            retry: config.retry.clone(),
            group: c.group_id.clone(),
            max_uncommitted: c.max_uncommitted,
            limits: config.limits.to_model(),
            formats: Arc::new(pipeline::formats::Formats::from_config(
                c,
                metrics.attributes_dropped.clone(),
            )),
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
            let client = member_config(config, bootstrap, &member);
            // The channel holds about two batches: enough to keep the pipeline busy, small enough
            // that a stalled pipeline pauses fetching quickly.
            let (tx, rx) = mpsc::channel(c.batch_size * 2);
            let (commit_tx, commit_rx) = std_mpsc::sync_channel(1024);
            let assigned = Arc::new(AtomicUsize::new(0));
            let outages = OutageFlags::default();
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
/// This machine's host name, for member ids ("logpipe" when it has none or it is not UTF-8).
fn hostname() -> String {
    gethostname::gethostname()
        .into_string()
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "logpipe".into())
}
