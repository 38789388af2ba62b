//! Wiring roles into a running process. [`App::start`] resolves the Kafka cluster (starting the
//! embedded broker when none is configured), creates the producer, ensures topics, binds the
//! listeners and spawns the servers; [`App::wait`] runs until the stop token is cancelled and
//! then shuts down in order: stop accepting, finish in-flight requests, flush the producer, stop
//! the embedded broker. Tests start an `App` on port 0 and talk to it over real HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::gateway::{self, auth::ApiKeys, GatewayMetrics, GatewayState};
use crate::http::{self, Ops, ReadyCheck};
use crate::kafka::admin::{ensure_topics, TopicSpec};
use crate::kafka::client_config;
use crate::kafka::embedded::EmbeddedBroker;
use crate::producer::client::ProducerClient;
use crate::producer::{service, Producer, ProducerMetrics, Upstream};
use crate::telemetry::metrics::{new_registry, HttpMetrics};

/// Which roles this process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    /// `logpipe gateway`: HTTP ingest, forwarding to the producer service over HTTP.
    Gateway,
    /// `logpipe producer`: the producer service's internal endpoint.
    Producer,
    /// `logpipe run`: gateway with the producer in-process (the consumer joins in a later issue).
    All,
}

/// How often Kafka (or the producer service) reachability is probed.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// How long shutdown waits for queued records to reach Kafka.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// A running logpipe process.
pub struct App {
    /// Where the gateway listens, when this process runs it.
    pub gateway_addr: Option<SocketAddr>,
    /// Where the producer service listens, when this process runs it.
    pub producer_addr: Option<SocketAddr>,
    /// The Kafka bootstrap servers in use (the embedded broker's, when embedded).
    pub bootstrap: Option<String>,
    producer: Option<Arc<Producer>>,
    embedded: Option<EmbeddedBroker>,
    servers: JoinSet<anyhow::Result<()>>,
    stop: CancellationToken,
}

impl App {
    /// Starts `roles` with `config`. Listeners are bound before this returns.
    pub async fn start(config: Config, roles: Roles) -> anyhow::Result<App> {
        let stop = CancellationToken::new();
        let mut registry = new_registry();
        let mut servers = JoinSet::new();

        // Kafka: only the roles that produce need it.
        let mut embedded = None;
        let mut bootstrap = None;
        let mut producer = None;
        if matches!(roles, Roles::Producer | Roles::All) {
            let specs = TopicSpec::from_config(&config.kafka);
            let servers_list = if config.kafka.is_embedded() {
                let broker = EmbeddedBroker::start(1, &specs)?;
                tracing::warn!(
                    bootstrap = broker.bootstrap_servers(),
                    "Kafka: EMBEDDED in-process broker (librdkafka mock cluster); it keeps NOTHING across restarts. \
                     Set kafka.brokers / LOGPIPE_KAFKA_BROKERS / --kafka-brokers to use a real cluster"
                );
                let list = broker.bootstrap_servers().to_string();
                embedded = Some(broker);
                list
            } else {
                tracing::info!(brokers = %config.kafka.brokers, "Kafka: external cluster");
                config.kafka.brokers.clone()
            };
            let metrics = ProducerMetrics::register(&mut registry);
            let p = Arc::new(Producer::new(&config, &servers_list, metrics)?);
            if !config.kafka.is_embedded() && config.kafka.create_topics {
                spawn_topic_ensurer(&config, &servers_list, specs, stop.clone());
            }
            p.start_health_monitor(HEALTH_INTERVAL, stop.clone());
            producer = Some(p);
            bootstrap = Some(servers_list);
        }

        let mut producer_addr = None;
        let mut gateway_addr = None;
        match (roles, &producer) {
            (Roles::Producer, Some(p)) => {
                let router = producer_router(&config, p.clone(), registry);
                let listener = http::bind(config.producer.listen, "the producer service").await?;
                producer_addr = Some(listener.local_addr()?);
                tracing::info!(addr = %listener.local_addr()?, "producer service listening");
                servers.spawn(http::serve(listener, router, stop.clone()));
            }
            _ => {
                let upstream = match &producer {
                    Some(p) => Upstream::InProcess(p.clone()),
                    None => {
                        let client = ProducerClient::new(
                            &config.gateway.producer_url,
                            config.gateway.request_timeout,
                        )?;
                        client.start_health_monitor(HEALTH_INTERVAL, stop.clone());
                        tracing::info!(url = %config.gateway.producer_url, "gateway forwards to the producer service");
                        Upstream::Remote(client)
                    }
                };
                if config.gateway.api_keys.is_empty() {
                    tracing::info!(
                        "gateway API keys are off (set gateway.api_keys to require them)"
                    );
                }
                let router = gateway_router(&config, upstream, registry);
                let listener = http::bind(config.gateway.listen, "the gateway").await?;
                gateway_addr = Some(listener.local_addr()?);
                tracing::info!(addr = %listener.local_addr()?, "gateway listening");
                servers.spawn(http::serve(listener, router, stop.clone()));
            }
        }

        Ok(App {
            gateway_addr,
            producer_addr,
            bootstrap,
            producer,
            embedded,
            servers,
            stop,
        })
    }

    /// The token that stops this app; cancel it on SIGTERM / Ctrl-C.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// The embedded broker, when this app started one (tests inject faults through it).
    pub fn embedded(&self) -> Option<&EmbeddedBroker> {
        self.embedded.as_ref()
    }

    /// Waits for all servers; when any fails or the token is cancelled, stops the rest, flushes
    /// the producer and stops the embedded broker.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(result) = self.servers.join_next().await {
            let outcome = result.context("server task panicked").and_then(|r| r);
            if let Err(e) = outcome {
                tracing::error!(error = %format!("{e:#}"), "server stopped with an error; shutting down");
                first_error.get_or_insert(e);
            }
            self.stop.cancel();
        }
        if let Some(producer) = &self.producer {
            producer.flush(FLUSH_TIMEOUT).await;
        }
        if self.embedded.take().is_some() {
            tracing::info!("embedded broker stopped; its data is gone");
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Cancels and waits (tests).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.wait().await
    }
}

/// The gateway as served: API routes, health and metrics, shared layers. Metrics of this
/// process are registered into `registry` first. Tests drive it with `oneshot`, no server.
pub fn gateway_router(config: &Config, upstream: Upstream, mut registry: Registry) -> Router {
    let http_metrics = HttpMetrics::register(&mut registry, "gateway");
    let gateway_metrics = GatewayMetrics::register(&mut registry);
    let check_name = match upstream {
        Upstream::InProcess(_) => "kafka",
        Upstream::Remote(_) => "producer",
    };
    let ready = upstream.clone();
    let checks: Vec<ReadyCheck> = vec![(check_name, Arc::new(move || ready.is_ready()))];
    let ops = Ops {
        registry: Arc::new(registry),
        checks: Arc::new(checks),
    };
    let state = GatewayState::new(
        &config.gateway,
        config.limits.to_model(),
        upstream,
        gateway_metrics,
    );
    let keys = ApiKeys::new(&config.gateway.api_keys);
    http::with_common_layers(gateway::router(state, keys), ops, http_metrics)
}

/// The producer service as served (split mode).
pub fn producer_router(config: &Config, producer: Arc<Producer>, mut registry: Registry) -> Router {
    let http_metrics = HttpMetrics::register(&mut registry, "producer");
    let health = producer.health().clone();
    let checks: Vec<ReadyCheck> = vec![("kafka", Arc::new(move || health.is_up()))];
    let ops = Ops {
        registry: Arc::new(registry),
        checks: Arc::new(checks),
    };
    let router = service::router(
        producer,
        config.limits.to_model(),
        config.gateway.max_body_bytes,
        config.gateway.retry_after,
    );
    http::with_common_layers(router, ops, http_metrics)
}

/// Creates missing topics, retrying in the background until the cluster answers.
fn spawn_topic_ensurer(
    config: &Config,
    bootstrap: &str,
    specs: Vec<TopicSpec>,
    stop: CancellationToken,
) {
    let client = client_config(&config.kafka, bootstrap, "admin", &Default::default());
    let timeout = config.kafka.request_timeout;
    tokio::spawn(async move {
        let mut delay = Duration::from_secs(1);
        loop {
            match ensure_topics(&client, &specs, timeout).await {
                Ok(outcomes) => {
                    for (topic, outcome) in outcomes {
                        tracing::info!(%topic, ?outcome, "topic checked");
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?delay, "cannot ensure topics yet");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    });
}
