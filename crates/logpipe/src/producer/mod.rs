//! The producer: writes validated events to Kafka and says when Kafka has them.
//!
//! [`Producer`] wraps an idempotent rdkafka producer (acks=all, compression, linger and batch sizes
//! from config). A batch is acknowledged only when every record's delivery report is in, so the
//! gateway's 2xx means "Kafka has it". In-flight events are bounded by a semaphore sized below
//! librdkafka's own queue: a caller that finds no room waits up to `enqueue_timeout` and then gets
//! [`PublishError::Saturated`] (HTTP 503 + Retry-After), so `QueueFull` becomes backpressure and
//! never a dropped event. A batch larger than the whole semaphore could never get its permits, and
//! the semaphore is fair (FIFO), so waiting for them would hold back every smaller batch queued
//! behind it: such a batch is refused at once ([`PublishError::TooLarge`], HTTP 413).
//!
//! [`Upstream`] is the gateway's view of the producer: the same call in-process (`logpipe run`) or
//! over the internal HTTP endpoint in split mode ([`service`] serves it, [`client`] calls it).

pub mod backlog;
pub mod client;
pub mod internal_auth;
pub mod service;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use logpipe_model::LogEvent;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, KeyStrategy};
use crate::kafka::health::{metadata_probe, KafkaHealth};
use crate::kafka::{client_config, headers, producer_config};
use crate::telemetry::metrics::{latency_histogram, size_histogram, ReasonLabels};

/// Events of one request, with what the producer writes into each record's headers.
#[derive(Debug, Clone)]
pub struct Batch {
    pub events: Vec<LogEvent>,
    pub request_id: Arc<str>,
    /// When the gateway received the request (ms since the Unix epoch).
    pub ingest_ms: i64,
}

/// Why a batch (or part of it) was not acknowledged by Kafka. Every variant means "retry later";
/// none of them means the events were dropped silently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// No room in the in-flight queue within `enqueue_timeout`; nothing was sent.
    #[error("the producer is saturated; retry after a short wait")]
    Saturated,
    /// Kafka is unreachable (or the producer failed fatally); nothing was sent.
    #[error("Kafka is unavailable: {0}")]
    Unavailable(String),
    /// The embedded broker's unconsumed backlog is near its retention limit (see
    /// [`backlog`]); nothing was sent.
    #[error("{0}. New events wait until the consumer catches up: retry shortly, or set kafka.brokers to use a real Kafka cluster for larger backlogs")]
    BacklogFull(String),
    /// The batch has more events than the whole in-flight budget (`producer.max_in_flight`), so
    /// it could never be sent at once; nothing was sent. Retrying does not help: split it.
    #[error("the batch holds {events} events, more than the producer takes at once ({limit}: `producer.max_in_flight`, `producer.max_request_events`); split it")]
    TooLarge { events: usize, limit: usize },
    /// These records (index within the batch, reason) were not acknowledged; the others were.
    #[error("{} of the events were not acknowledged by Kafka", failed.len())]
    Partial { failed: Vec<(usize, String)> },
}

impl PublishError {
    /// Every code [`code`](Self::code) returns, so metrics can create each series at start.
    pub const CODES: [&'static str; 5] = [
        "saturated",
        "kafka_unavailable",
        "embedded_backlog_full",
        "delivery_failed",
        "too_many_events",
    ];

    /// Stable reason code for metrics and API responses.
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Saturated => "saturated",
            PublishError::Unavailable(_) => "kafka_unavailable",
            PublishError::BacklogFull(_) => "embedded_backlog_full",
            PublishError::Partial { .. } => "delivery_failed",
            PublishError::TooLarge { .. } => "too_many_events",
        }
    }
}

/// Producer metrics (`log_producer_*`).
#[derive(Clone)]
pub struct ProducerMetrics {
    pub sent: Counter,
    pub failed: Family<ReasonLabels, Counter>,
    pub queue_depth: Gauge,
    pub backpressure: Counter,
    pub delivery_latency: Histogram,
    pub batch_events: Histogram,
}

impl ProducerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            sent: Counter::default(),
            failed: Family::default(),
            queue_depth: Gauge::default(),
            backpressure: Counter::default(),
            delivery_latency: latency_histogram(),
            batch_events: size_histogram(),
        };
        // Every reason exists from the start, so `rate()` sees the first failure.
        for reason in PublishError::CODES {
            let _ = m.failed.get_or_create(&ReasonLabels {
                reason: reason.into(),
            });
        }
        registry.register(
            "log_producer_sent",
            "Records acknowledged by Kafka",
            m.sent.clone(),
        );
        registry.register(
            "log_producer_failed",
            "Records not acknowledged by Kafka, by reason",
            m.failed.clone(),
        );
        registry.register(
            "log_producer_queue_depth",
            "Records in flight (queued in the producer or awaiting acknowledgement)",
            m.queue_depth.clone(),
        );
        registry.register(
            "log_producer_backpressure",
            "Batches refused because the in-flight queue stayed full",
            m.backpressure.clone(),
        );
        registry.register(
            "log_producer_delivery_seconds",
            "Time from enqueue to Kafka acknowledgement of a whole batch",
            m.delivery_latency.clone(),
        );
        registry.register(
            "log_producer_batch_events",
            "Events per published batch",
            m.batch_events.clone(),
        );
        m
    }
}

/// The Kafka producer of logpipe.
pub struct Producer {
    inner: FutureProducer,
    topic: String,
    key: KeyStrategy,
    /// One permit per in-flight record; sized below librdkafka's queue so QueueFull is rare.
    permits: Arc<Semaphore>,
    /// The semaphore's size (`producer.max_in_flight`): no batch larger than this can ever fit.
    max_in_flight: usize,
    enqueue_timeout: Duration,
    health: KafkaHealth,
    /// The health probe's own client. A broker answers the requests of one connection in order,
    /// so a metadata request sent on the producer's connections would wait behind produce
    /// requests that wait for acks=all (for as long as a dead follower stays in the ISR) and
    /// report a slow cluster as unreachable.
    probe: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext>,
    metrics: ProducerMetrics,
    /// Set on the embedded broker only: refuses events before its retention would drop them.
    backlog: Option<Arc<backlog::BacklogGuard>>,
}

impl Producer {
    /// Creates the producer for `bootstrap`. Does no I/O; see [`Producer::start_health_monitor`].
    pub fn new(config: &Config, bootstrap: &str, metrics: ProducerMetrics) -> anyhow::Result<Self> {
        let p = &config.producer;
        let client = producer_config(
            config,
            bootstrap,
            "producer",
            p.linger,
            p.delivery_timeout,
            &[
                ("batch.num.messages", p.batch_max_messages.to_string()),
                ("batch.size", p.batch_max_bytes.to_string()),
                // Room for every permit plus slack, so the semaphore, not librdkafka, is the limit.
                (
                    "queue.buffering.max.messages",
                    (p.max_in_flight + 1024).to_string(),
                ),
            ],
        );
        let inner: FutureProducer = client
            .create()
            .map_err(|e| anyhow::anyhow!("creating the Kafka producer: {e}"))?;
        // With the producer's properties: connection and security settings may live there.
        let probe = client_config(&config.kafka, bootstrap, "health", &p.properties)
            .create()
            .map_err(|e| anyhow::anyhow!("creating the Kafka health client: {e}"))?;
        Ok(Self {
            inner,
            topic: config.kafka.topic.clone(),
            key: p.key,
            permits: Arc::new(Semaphore::new(p.max_in_flight)),
            max_in_flight: p.max_in_flight,
            enqueue_timeout: p.enqueue_timeout,
            health: KafkaHealth::default(),
            probe,
            metrics,
            backlog: None,
        })
    }

    /// Guards the embedded broker's retention (see [`backlog`]).
    pub fn with_backlog_guard(mut self, guard: Arc<backlog::BacklogGuard>) -> Self {
        self.backlog = Some(guard);
        self
    }

    /// Kafka reachability as last probed.
    pub fn health(&self) -> &KafkaHealth {
        &self.health
    }

    /// Probes Kafka now and then every `interval` in the background, until `stop`.
    pub fn start_health_monitor(
        self: &Arc<Self>,
        interval: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let timeout = interval.max(Duration::from_secs(1));
        self.health.spawn_monitor(
            move || metadata_probe(me.probe.inner(), &me.topic, timeout),
            interval,
            stop,
        )
    }

    /// Writes the batch and waits for Kafka to acknowledge every record.
    pub async fn publish(&self, batch: &Batch) -> Result<(), PublishError> {
        let n = batch.events.len();
        if n == 0 {
            return Ok(());
        }
        if let Err(e) = fits_in_flight(n, self.max_in_flight) {
            self.count_failed(e.code(), n);
            return Err(e);
        }
        if !self.health.is_up() {
            self.count_failed("kafka_unavailable", n);
            return Err(PublishError::Unavailable(
                "the broker did not answer the last probe".into(),
            ));
        }
        if let Some(reason) = self.backlog.as_ref().and_then(|g| g.refusal(n)) {
            self.count_failed("embedded_backlog_full", n);
            return Err(PublishError::BacklogFull(reason));
        }
        let wanted = u32::try_from(n).map_err(|_| PublishError::Saturated)?;
        let permits = match tokio::time::timeout(
            self.enqueue_timeout,
            self.permits.clone().acquire_many_owned(wanted),
        )
        .await
        {
            Ok(Ok(permits)) => permits,
            _ => {
                self.metrics.backpressure.inc();
                self.count_failed("saturated", n);
                return Err(PublishError::Saturated);
            }
        };
        self.metrics.queue_depth.inc_by(n as i64);
        self.metrics.batch_events.observe(n as f64);
        let started = Instant::now();
        let ingest = batch.ingest_ms.to_string();
        let headers = OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: headers::INGEST_TIME_MS,
                value: Some(ingest.as_bytes()),
            })
            .insert(Header {
                key: headers::REQUEST_ID,
                value: Some(batch.request_id.as_bytes()),
            });

        let deadline = Instant::now() + self.enqueue_timeout;
        let mut deliveries = Vec::with_capacity(n);
        let mut failed: Vec<(usize, String)> = Vec::new();
        let mut payload = Vec::with_capacity(512);
        let mut payload_bytes = 0;
        for (index, event) in batch.events.iter().enumerate() {
            payload.clear();
            event.write_json(&mut payload);
            let key = match self.key {
                KeyStrategy::Service => Some(event.service.as_str()),
                KeyStrategy::TraceId => event.trace_id.as_ref().map(|t| t.as_str()),
                KeyStrategy::None => None,
            };
            match self
                .enqueue(key, &payload, &headers, batch.ingest_ms, deadline)
                .await
            {
                Ok(delivery) => {
                    payload_bytes += payload.len();
                    deliveries.push((index, payload.len(), delivery));
                }
                Err(reason) => failed.push((index, reason)),
            }
        }
        if let Some(guard) = &self.backlog {
            guard.produced(payload_bytes, deliveries.len());
        }
        let backlog = self.backlog.as_deref();
        let results = join_all(
            deliveries
                .into_iter()
                .map(|(index, bytes, delivery)| async move {
                    let outcome = match delivery.await {
                        Ok(Ok(delivered)) => {
                            if let Some(guard) = backlog {
                                guard.delivered(delivered.partition, bytes);
                            }
                            return None;
                        }
                        Ok(Err((e, _))) => describe(&e),
                        Err(_cancelled) => "producer shut down before delivery".into(),
                    };
                    if let Some(guard) = backlog {
                        guard.undelivered(bytes);
                    }
                    Some((index, outcome))
                }),
        )
        .await;
        drop(permits);
        self.metrics.queue_depth.dec_by(n as i64);
        failed.extend(results.into_iter().flatten());
        self.metrics
            .delivery_latency
            .observe(started.elapsed().as_secs_f64());
        self.metrics.sent.inc_by((n - failed.len()) as u64);
        if failed.is_empty() {
            return Ok(());
        }
        failed.sort_by_key(|(i, _)| *i);
        self.count_failed("delivery_failed", failed.len());
        tracing::warn!(
            failed = failed.len(),
            of = n,
            first_error = %failed[0].1,
            "Kafka did not acknowledge some records"
        );
        Err(PublishError::Partial { failed })
    }

    /// Hands one record to librdkafka; on QueueFull (only when the queue is shared with other
    /// work) waits briefly and tries again until `deadline`.
    ///
    /// The record's Kafka timestamp is `ingest_ms`, when the gateway received the event, not the
    /// event's own time (which the value carries): a broker refuses a timestamp too far in the
    /// future (`message.timestamp.after.max.ms`, one hour by default), so a client's skewed clock
    /// would get its events refused for good; and retention, time lag and time lookups all mean
    /// arrival in Kafka, which a backfill of old events would otherwise upset.
    async fn enqueue(
        &self,
        key: Option<&str>,
        payload: &[u8],
        headers: &OwnedHeaders,
        ingest_ms: i64,
        deadline: Instant,
    ) -> Result<rdkafka::producer::DeliveryFuture, String> {
        loop {
            let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic)
                .payload(payload)
                .headers(headers.clone())
                .timestamp(ingest_ms);
            if let Some(key) = key {
                record = record.key(key);
            }
            match self.inner.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                    if Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err((e, _)) => return Err(describe(&e)),
            }
        }
    }

    fn count_failed(&self, reason: &str, n: usize) {
        self.metrics
            .failed
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc_by(n as u64);
    }

    /// Waits up to `timeout` for queued records to be delivered (shutdown).
    pub async fn flush(self: &Arc<Self>, timeout: Duration) {
        let me = self.clone();
        let result = tokio::task::spawn_blocking(move || me.inner.flush(timeout)).await;
        match result {
            Ok(Ok(())) => tracing::info!("producer flushed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "producer flush incomplete"),
            Err(e) => tracing::warn!(error = %e, "producer flush task failed"),
        }
    }
}

/// Refuses at once a batch that could never get its permits (see the module docs).
fn fits_in_flight(events: usize, max_in_flight: usize) -> Result<(), PublishError> {
    if events > max_in_flight {
        return Err(PublishError::TooLarge {
            events,
            limit: max_in_flight,
        });
    }
    Ok(())
}

/// A record's failure reason as sent to callers: librdkafka's fixed error-code description, and
/// for anything else a fixed sentence (the full error, which may name brokers, is logged).
fn describe(e: &KafkaError) -> String {
    match e {
        KafkaError::MessageProduction(code) => format!("Kafka refused the record: {code}"),
        other => {
            tracing::warn!(error = %other, "a record could not be handed to Kafka");
            "the record could not be handed to Kafka".into()
        }
    }
}

/// The gateway's producer: in-process, or the producer service over HTTP.
#[derive(Clone)]
pub enum Upstream {
    InProcess(Arc<Producer>),
    Remote(client::ProducerClient),
}

impl Upstream {
    pub async fn publish(&self, batch: Batch) -> Result<(), PublishError> {
        match self {
            Upstream::InProcess(producer) => producer.publish(&batch).await,
            Upstream::Remote(client) => client.publish(&batch).await,
        }
    }

    /// Whether the upstream can take events now (readiness).
    pub fn is_ready(&self) -> bool {
        match self {
            Upstream::InProcess(producer) => producer.health().is_up(),
            Upstream::Remote(client) => client.health().is_up(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_lists_every_code() {
        for error in [
            PublishError::Saturated,
            PublishError::Unavailable(String::new()),
            PublishError::BacklogFull(String::new()),
            PublishError::Partial { failed: Vec::new() },
            PublishError::TooLarge {
                events: 2,
                limit: 1,
            },
        ] {
            assert!(
                PublishError::CODES.contains(&error.code()),
                "{}",
                error.code()
            );
        }
    }

    #[test]
    fn a_batch_larger_than_the_in_flight_budget_is_refused_not_queued() {
        assert!(fits_in_flight(10, 10).is_ok());
        let refused = fits_in_flight(11, 10).unwrap_err();
        assert_eq!(
            refused,
            PublishError::TooLarge {
                events: 11,
                limit: 10
            }
        );
        assert_eq!(refused.code(), "too_many_events");
        assert!(refused.to_string().contains("producer.max_in_flight"));
    }
}
