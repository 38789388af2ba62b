//! The embedded broker: librdkafka's mock cluster, run in-process when no brokers are configured.
//!
//! It listens on a real localhost TCP port and speaks the Kafka protocol (produce, fetch, consumer
//! groups, commits, rebalances), so every other part of logpipe uses it exactly as it would use a
//! real cluster: through `bootstrap.servers`. It keeps everything in memory; nothing survives a
//! restart. The mock has no CreateTopics handler, so topics are created through its own API here.
//!
//! `MockCluster` holds a raw pointer and is not `Send`, so one dedicated thread owns it for its
//! whole life and runs closures sent to it ([`EmbeddedBroker::with_cluster`]), which is also how
//! tests inject faults.

use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{anyhow, Context};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use super::admin::TopicSpec;

type Cluster = MockCluster<'static, DefaultProducerContext>;
type Job = Box<dyn FnOnce(&Cluster) + Send>;

/// A running in-process broker; stops when dropped.
pub struct EmbeddedBroker {
    bootstrap: String,
    /// Work for the owning thread; closing it stops the cluster.
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts a mock cluster with `brokers` brokers and creates `topics` on it.
    pub fn start(brokers: i32, topics: &[TopicSpec]) -> anyhow::Result<Self> {
        let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<String>>();
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        // `auto` resolves to what the mock cluster has (1 broker: replication factor 1). Its topic
        // API takes no configs, so min.insync.replicas is not set here.
        let topics = topics
            .iter()
            .map(|topic| {
                let replication = topic.replication(usize::try_from(brokers).unwrap_or(0))?;
                Ok((
                    topic.name.clone(),
                    topic.partitions,
                    replication.replication_factor,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .context(
                "the embedded broker cannot host this replication; leave kafka.replication_factor and \
                 kafka.min_insync_replicas at \"auto\", or set kafka.brokers",
            )?;
        let thread = std::thread::Builder::new()
            .name("embedded-broker".into())
            .spawn(move || {
                let cluster = match MockCluster::new(brokers) {
                    Ok(cluster) => cluster,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("starting the mock cluster: {e}")));
                        return;
                    }
                };
                for (name, partitions, replication_factor) in &topics {
                    if let Err(e) = cluster.create_topic(name, *partitions, *replication_factor) {
                        let _ = ready_tx.send(Err(anyhow!("creating topic {name}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Runs jobs until every sender is gone, then drops (stops) the cluster.
                for job in jobs_rx {
                    job(&cluster);
                }
            })
            .context("spawning the embedded broker thread")?;
        let bootstrap = ready_rx
            .recv()
            .context("embedded broker thread died during start-up")??;
        Ok(Self {
            bootstrap,
            jobs: Some(jobs_tx),
            thread: Some(thread),
        })
    }

    /// `bootstrap.servers` of the embedded cluster (`127.0.0.1:PORT`).
    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Runs `f` on the thread that owns the cluster and returns its result: topic creation,
    /// fault injection (`request_errors`, `broker_down`), and so on.
    pub fn with_cluster<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Cluster) -> R + Send + 'static,
    ) -> anyhow::Result<R> {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .as_ref()
            .ok_or_else(|| anyhow!("embedded broker stopped"))?
            .send(Box::new(move |cluster| {
                let _ = tx.send(f(cluster));
            }))
            .map_err(|_| anyhow!("embedded broker thread is gone"))?;
        rx.recv()
            .map_err(|_| anyhow!("embedded broker job panicked"))
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
