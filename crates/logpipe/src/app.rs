//! Wiring roles into a running process. [`App::start`] resolves the Kafka cluster (starting the
//! embedded broker when none is configured), ensures topics, opens the stores, starts the
//! producer and the consumer group, binds the listener and spawns the server; [`App::wait`] runs
//! until the stop token is cancelled and then shuts down in order: stop accepting, finish
//! in-flight requests, drain and commit the consumer and leave the group, flush the producer,
//! stop the embedded broker. Tests start an `App` on port 0 and talk to it over real HTTP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use logpipe_aggregates::Aggregates;
use logpipe_store::LogStore;
use prometheus_client::registry::Registry;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::consumer::stats_routes;
use crate::consumer::{ConsumerMetrics, ConsumerService, ConsumerStats};
use crate::gateway::{self, auth::ApiKeys, GatewayMetrics, GatewayState, QueryBackend};
use crate::http::{self, Ops, ReadyCheck};
use crate::kafka::admin::{ensure_topics, TopicSpec};
use crate::kafka::client_config;
use crate::kafka::embedded::EmbeddedBroker;
use crate::kafka::health::{metadata_probe, KafkaHealth};
use crate::kafka::login::{check_login, Login};
use crate::producer::backlog::BacklogGuard;
use crate::producer::client::ProducerClient;
use crate::producer::{internal_auth, service, Producer, ProducerMetrics, Upstream};
use crate::retry::{self, Backoff};
use crate::telemetry::metrics::{new_registry, HttpMetrics};

/// Which roles this process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roles {
    /// `logpipe gateway`: HTTP ingest (and the query API), forwarding to the producer service.
    Gateway,
    /// `logpipe producer`: the producer service's internal endpoint.
    Producer,
    /// `logpipe consumer`: consumer group members; health, `/metrics` and `/stats` on :8082.
    Consumer,
    /// `logpipe run`: everything in one process; the gateway calls the producer in-process.
    All,
}

impl Roles {
    fn produces(self) -> bool {
        matches!(self, Roles::Producer | Roles::All)
    }

    fn consumes(self) -> bool {
        matches!(self, Roles::Consumer | Roles::All)
    }
}

/// How often Kafka, the producer service and the stores are probed.
const HEALTH_INTERVAL: Duration = Duration::from_secs(2);
/// How long shutdown waits for queued records to reach Kafka.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the store creates partitions ahead and drops expired ones.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(3600);
/// Waits between start-up attempts to create missing topics while the cluster does not answer.
const TOPIC_ENSURE_BACKOFF: Backoff =
    Backoff::new(Duration::from_secs(1), 2.0, Duration::from_secs(30), 0.0);

/// The stores a process opened (consumer, and the gateway's query API).
#[derive(Clone)]
pub struct Stores {
    pub store: Arc<LogStore>,
    /// What the query API reads, apart from the consumer's writes and bounded in time by
    /// `postgres.query_statement_timeout`: on PostgreSQL a pool of its own; on SQLite the same
    /// database through its read-only search connection.
    pub query_store: Arc<LogStore>,
    pub aggregates: Aggregates,
}

impl Stores {
    /// Opens the log store (and applies its schema) and the aggregates, saying which are embedded.
    pub async fn open(config: &Config) -> anyhow::Result<Stores> {
        let store = LogStore::open(config.postgres.connect_url().expose(), &config.postgres.store_options())
            .await
            .map_err(|e| anyhow::anyhow!("opening the log store: {e}; check `postgres.url` (--postgres-url) and that PostgreSQL is running"))?;
        store
            .migrate()
            .await
            .map_err(|e| anyhow::anyhow!("applying the log store schema: {e}"))?;
        if config.postgres.url.is_empty() {
            tracing::warn!("log store: EMBEDDED temporary SQLite (a private file in the temporary directory, removed on exit); it keeps NOTHING across restarts. Set postgres.url / --postgres-url for PostgreSQL");
        } else {
            tracing::info!(url = %crate::config::redact::redact_url(&config.postgres.url), "log store: PostgreSQL");
        }
        let aggregates = Aggregates::open(config.redis.connect_url().expose(), &config.redis.agg_options())
            .await
            .map_err(|e| anyhow::anyhow!("opening the aggregates: {e}; check `redis.url` (--redis-url) and that Redis is running"))?;
        if config.redis.url.is_empty() {
            tracing::warn!("aggregates: EMBEDDED in-process; they keep NOTHING across restarts. Set redis.url / --redis-url for Redis");
        } else {
            tracing::info!(url = %crate::config::redact::redact_url(&config.redis.url), "aggregates: Redis");
        }
        let query_store = match &store {
            LogStore::Sqlite(sqlite) => Arc::new(LogStore::Sqlite(
                sqlite.with_query_timeout(config.postgres.query_statement_timeout),
            )),
            LogStore::Postgres(_) => Arc::new(
                LogStore::open(config.postgres.connect_url().expose(), &config.postgres.query_store_options())
                    .await
                    .map_err(|e| anyhow::anyhow!("opening the query API's connections to the log store: {e}; check `postgres.url` and `postgres.query_pool_size`"))?,
            ),
        };
        let store = Arc::new(store);
        Ok(Stores {
            store,
            query_store,
            aggregates,
        })
    }

    /// Probes both stores every interval; the flags feed readiness.
    fn spawn_monitor(&self, stop: CancellationToken) -> (Arc<AtomicBool>, Arc<AtomicBool>) {
        let store_up = Arc::new(AtomicBool::new(true));
        let agg_up = Arc::new(AtomicBool::new(true));
        let (s, a, stores) = (store_up.clone(), agg_up.clone(), self.clone());
        retry::spawn_every(HEALTH_INTERVAL, stop, move || {
            let (s, a, stores) = (s.clone(), a.clone(), stores.clone());
            async move {
                s.store(stores.store.ping().await, Ordering::Relaxed);
                a.store(stores.aggregates.ping().await, Ordering::Relaxed);
            }
        });
        (store_up, agg_up)
    }
}

/// What an embedding program adds to the pipeline (the `logpipe` binary adds nothing).
#[derive(Default, Clone)]
pub struct Extensions {
    /// Per-record processing steps run by the consumer after enrichment, before the store
    /// (see [`crate::consumer::steps`]).
    pub steps: Vec<Arc<dyn crate::consumer::steps::Step>>,
}

/// A running logpipe process.
pub struct App {
    /// Where the gateway listens, when this process runs it.
    pub gateway_addr: Option<SocketAddr>,
    /// Where the gateway's OTLP receiver listens (`gateway.otlp_listen`), when set.
    pub otlp_addr: Option<SocketAddr>,
    /// Where the producer service listens, when this process runs it.
    pub producer_addr: Option<SocketAddr>,
    /// Where the consumer's health and metrics listen (`logpipe consumer`).
    pub consumer_addr: Option<SocketAddr>,
    /// The Kafka bootstrap servers in use (the embedded broker's, when embedded).
    pub bootstrap: Option<String>,
    /// The stores, when this process opened them.
    pub stores: Option<Stores>,
    /// What the consumer has stored and its end-to-end latency (demo, tests).
    pub consumer_stats: Option<Arc<ConsumerStats>>,
    producer: Option<Arc<Producer>>,
    consumer: Option<ConsumerService>,
    embedded: Option<EmbeddedBroker>,
    servers: JoinSet<anyhow::Result<()>>,
    stop: CancellationToken,
}

impl App {
    /// Starts `roles` with `config`. Listeners are bound before this returns.
    pub async fn start(config: Config, roles: Roles) -> anyhow::Result<App> {
        Self::start_with(config, roles, Extensions::default()).await
    }

    /// [`start`](Self::start) with extensions.
    pub async fn start_with(
        config: Config,
        roles: Roles,
        extensions: Extensions,
    ) -> anyhow::Result<App> {
        let stop = CancellationToken::new();
        // If start-up fails part-way, whatever was started (consumer members, monitors) stops.
        let started_guard = stop.clone().drop_guard();
        let mut registry = new_registry();
        let mut servers = JoinSet::new();

        let (bootstrap, embedded) = if roles == Roles::Gateway {
            (None, None)
        } else {
            let (bootstrap, embedded) = resolve_kafka(&config, roles)?;
            if embedded.is_none() {
                // Refused credentials stop the process here, with the keys to fix, rather than
                // leaving librdkafka to retry the login for ever behind a 503.
                match check_login(&config.kafka, &bootstrap).await? {
                    Login::Accepted => {}
                    Login::Unreachable(why) => tracing::warn!(
                        %bootstrap,
                        "Kafka did not answer at start-up ({why}); starting anyway, clients retry"
                    ),
                }
            }
            if embedded.is_none() && config.kafka.create_topics {
                let specs = TopicSpec::from_config(&config.kafka);
                if roles.consumes() {
                    // A consumer subscribed to a missing topic would only notice it on the next
                    // metadata refresh (minutes): create it first.
                    let client =
                        client_config(&config.kafka, &bootstrap, "admin", &Default::default());
                    ensure_topics(&client, &specs, config.kafka.request_timeout)
                        .await
                        .context("ensuring topics before the consumer subscribes (is Kafka reachable at kafka.brokers?)")?;
                } else {
                    spawn_topic_ensurer(&config, &bootstrap, specs, stop.clone());
                }
            }
            (Some(bootstrap), embedded)
        };

        let mut producer = None;
        if let (true, Some(bootstrap)) = (roles.produces(), &bootstrap) {
            let metrics = ProducerMetrics::register(&mut registry);
            let mut p = Producer::new(&config, bootstrap, metrics)?;
            if embedded.is_some() {
                p = p.with_backlog_guard(BacklogGuard::start(&config, bootstrap, stop.clone())?);
            }
            let p = Arc::new(p);
            p.start_health_monitor(HEALTH_INTERVAL, stop.clone());
            producer = Some(p);
        }

        // Stores: the consumer writes them; the gateway reads them for the query API. A split-mode
        // gateway opens them only when they are shared (PostgreSQL/Redis configured).
        let stores = match roles {
            Roles::Consumer | Roles::All => Some(Stores::open(&config).await?),
            Roles::Gateway if !config.postgres.url.is_empty() && !config.redis.url.is_empty() => {
                Some(Stores::open(&config).await?)
            }
            _ => None,
        };

        let mut consumer = None;
        let mut consumer_kafka = None;
        let mut consumer_metrics = None;
        if let (true, Some(bootstrap), Some(stores)) = (roles.consumes(), &bootstrap, &stores) {
            let metrics = ConsumerMetrics::register(&mut registry);
            consumer_metrics = Some(metrics.clone());
            let service = ConsumerService::start(
                &config,
                bootstrap,
                stores.store.clone(),
                stores.aggregates.clone(),
                extensions.steps.clone(),
                metrics,
                stop.clone(),
            )?;
            spawn_maintenance(stores.store.clone(), stop.clone());
            if producer.is_none() {
                consumer_kafka = Some(kafka_monitor(&config, bootstrap, stop.clone())?);
            }
            consumer = Some(service);
        }

        let mut producer_addr = None;
        let mut gateway_addr = None;
        let mut otlp_addr = None;
        let mut consumer_addr = None;
        match roles {
            Roles::Producer => {
                let p = producer
                    .clone()
                    .context("producer role without a producer")?;
                internal_auth::check_listen(
                    config.producer.listen,
                    config.producer.internal_token.expose(),
                )?;
                let router = producer_router(&config, p, registry);
                let listener = http::bind(config.producer.listen, "the producer service").await?;
                producer_addr = Some(listener.local_addr()?);
                tracing::info!(addr = %listener.local_addr()?, "producer service listening");
                servers.spawn(http::serve_with(
                    listener,
                    router,
                    config.http.clone(),
                    stop.clone(),
                ));
            }
            Roles::Consumer => {
                let mut checks: Vec<ReadyCheck> = Vec::new();
                if let Some(kafka) = consumer_kafka {
                    checks.push(("kafka", Arc::new(move || kafka.is_up())));
                }
                if let Some(stores) = &stores {
                    let (store_up, agg_up) = stores.spawn_monitor(stop.clone());
                    checks.push(("store", Arc::new(move || store_up.load(Ordering::Relaxed))));
                    checks.push((
                        "aggregates",
                        Arc::new(move || agg_up.load(Ordering::Relaxed)),
                    ));
                }
                let http_metrics = HttpMetrics::register(&mut registry, "consumer");
                let ops = Ops {
                    registry: Arc::new(registry),
                    checks: Arc::new(checks),
                };
                let stats = consumer_metrics
                    .clone()
                    .map(stats_routes)
                    .unwrap_or_default();
                let router = http::with_common_layers(stats, ops, http_metrics, &config.http);
                let listener = http::bind(config.consumer.listen, "the consumer").await?;
                consumer_addr = Some(listener.local_addr()?);
                tracing::info!(addr = %listener.local_addr()?, "consumer health and metrics listening");
                servers.spawn(http::serve_with(
                    listener,
                    router,
                    config.http.clone(),
                    stop.clone(),
                ));
            }
            Roles::Gateway | Roles::All => {
                let upstream = match &producer {
                    Some(p) => Upstream::InProcess(p.clone()),
                    None => {
                        let client = ProducerClient::new(
                            &config.gateway.producer_url,
                            config.gateway.request_timeout,
                            config.producer.internal_token.expose(),
                        )?;
                        client.start_health_monitor(HEALTH_INTERVAL, stop.clone());
                        tracing::info!(url = %crate::config::redact::redact_url(&config.gateway.producer_url), "gateway forwards to the producer service");
                        Upstream::Remote(client)
                    }
                };
                let query = stores.as_ref().map(|s| {
                    QueryBackend::new(s.query_store.clone(), s.aggregates.clone(), &config.gateway)
                });
                if query.is_none() {
                    tracing::info!("query API off: the gateway has no shared stores (set postgres.url and redis.url, or use `logpipe run`)");
                }
                let router =
                    gateway_router_with(&config, upstream, query, registry, consumer_metrics);
                if let Some(addr) = config.gateway.otlp_listen {
                    let listener = http::bind(addr, "the gateway's OTLP receiver").await?;
                    otlp_addr = Some(listener.local_addr()?);
                    tracing::info!(addr = %listener.local_addr()?, "OTLP/HTTP receiver listening (POST /v1/logs)");
                    servers.spawn(http::serve_with(
                        listener,
                        gateway::otlp::port_router(router.clone()),
                        config.http.clone(),
                        stop.clone(),
                    ));
                }
                let listener = http::bind(config.gateway.listen, "the gateway").await?;
                gateway_addr = Some(listener.local_addr()?);
                tracing::info!(addr = %listener.local_addr()?, "gateway listening");
                warn_about_access(&config.gateway, listener.local_addr()?);
                servers.spawn(http::serve_with(
                    listener,
                    router,
                    config.http.clone(),
                    stop.clone(),
                ));
            }
        }

        started_guard.disarm();
        Ok(App {
            gateway_addr,
            otlp_addr,
            producer_addr,
            consumer_addr,
            bootstrap,
            consumer_stats: consumer.as_ref().map(|c| c.stats.clone()),
            stores,
            producer,
            consumer,
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

    /// Partitions the consumer members of this process own now.
    pub fn assigned_partitions(&self) -> usize {
        self.consumer
            .as_ref()
            .map_or(0, |c| c.assigned_partitions())
    }

    /// Waits for all servers; when any fails or the token is cancelled, stops the rest, drains
    /// the consumer, flushes the producer and stops the embedded broker.
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
        if let Some(consumer) = self.consumer.take() {
            consumer.wait().await;
            tracing::info!("consumer drained, committed and left the group");
        }
        if let Some(producer) = self.producer.take() {
            producer.flush(FLUSH_TIMEOUT).await;
            // Gone before the embedded broker, so it does not report the broker's shutdown.
            drop(producer);
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

/// The Kafka cluster to use: the configured one, or an embedded broker (only where it makes
/// sense: a lone consumer process could never share an in-process broker with a producer).
fn resolve_kafka(
    config: &Config,
    roles: Roles,
) -> anyhow::Result<(String, Option<EmbeddedBroker>)> {
    if !config.kafka.is_embedded() {
        tracing::info!(brokers = %config.kafka.brokers, "Kafka: external cluster");
        return Ok((config.kafka.brokers.clone(), None));
    }
    if roles == Roles::Consumer {
        anyhow::bail!(
            "`logpipe consumer` needs a Kafka cluster shared with the producer: set --kafka-brokers, LOGPIPE_KAFKA_BROKERS or kafka.brokers \
             (or run everything in one process on the embedded broker with `logpipe run`)"
        );
    }
    let broker = EmbeddedBroker::start(1, &TopicSpec::from_config(&config.kafka))?;
    tracing::warn!(
        bootstrap = broker.bootstrap_servers(),
        "Kafka: EMBEDDED in-process broker (librdkafka mock cluster); it keeps NOTHING across restarts. \
         Set kafka.brokers / LOGPIPE_KAFKA_BROKERS / --kafka-brokers to use a real cluster"
    );
    Ok((broker.bootstrap_servers().to_string(), Some(broker)))
}

/// Kafka reachability for a process without a producer, probed through an admin client.
fn kafka_monitor(
    config: &Config,
    bootstrap: &str,
    stop: CancellationToken,
) -> anyhow::Result<KafkaHealth> {
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        client_config(&config.kafka, bootstrap, "health", &Default::default())
            .create()
            .context("creating the Kafka health client")?;
    let topic = config.kafka.topic.clone();
    let health = KafkaHealth::default();
    health.spawn_monitor(
        move || metadata_probe(admin.inner(), &topic, HEALTH_INTERVAL),
        HEALTH_INTERVAL,
        stop,
    );
    Ok(health)
}

/// The gateway as served: API routes, health and metrics, shared layers. Metrics of this
/// process are registered into `registry` first. Tests drive it with `oneshot`, no server.
pub fn gateway_router(
    config: &Config,
    upstream: Upstream,
    query: Option<QueryBackend>,
    registry: Registry,
) -> Router {
    gateway_router_with(config, upstream, query, registry, None)
}

/// [`gateway_router`] of a process that also consumes (`logpipe run`): the dashboard reads
/// `consumer`'s figures in-process and `/stats` serves them.
pub fn gateway_router_with(
    config: &Config,
    upstream: Upstream,
    query: Option<QueryBackend>,
    mut registry: Registry,
    consumer: Option<ConsumerMetrics>,
) -> Router {
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
    let dashboard = gateway::dashboard::DashboardState::new(
        config,
        gateway_metrics.clone(),
        consumer.clone(),
        query.clone(),
    );
    let state = GatewayState::new(
        &config.gateway,
        config.limits.to_model(),
        upstream,
        query,
        gateway_metrics,
    );
    let keys = ApiKeys::from_config(&config.gateway);
    let mut routes =
        gateway::router(state, keys.clone()).merge(gateway::dashboard::router(dashboard, keys));
    if let Some(consumer) = consumer {
        routes = routes.merge(stats_routes(consumer));
    }
    http::with_common_layers(routes, ops, http_metrics, &config.http)
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
    let router = service::router(producer, config);
    http::with_common_layers(router, ops, http_metrics, &config.http)
}

/// Says at start-up, loudly, who may ingest and who may read stored logs when no API key is
/// configured (with keys, each key's scopes decide).
fn warn_about_access(gateway: &crate::config::GatewayConfig, addr: std::net::SocketAddr) {
    if !gateway.api_keys.is_empty() || !gateway.keys.is_empty() {
        return;
    }
    let public = !addr.ip().is_loopback();
    if gateway.public_reads_without_keys && public {
        tracing::error!(%addr, "NO API KEYS and gateway.public_reads_without_keys = true: ANYONE who can reach {addr} may ingest and read EVERY stored log; configure gateway.keys with scopes");
    } else if public {
        tracing::warn!(%addr, "no API keys: anyone who can reach {addr} may ingest; stored logs (query API, dashboard data) are served only to clients on this machine. Configure gateway.keys (scopes ingest, read, admin) before exposing the gateway");
    }
}

/// Creates partitions ahead and drops expired ones, now and then hourly.
fn spawn_maintenance(store: Arc<LogStore>, stop: CancellationToken) {
    retry::spawn_every(MAINTENANCE_INTERVAL, stop, move || {
        let store = store.clone();
        async move {
            match store.maintain(chrono::Utc::now()).await {
                Ok(done) => tracing::info!(?done, "log store maintenance"),
                Err(e) => {
                    tracing::warn!(error = %e, "log store maintenance failed; retrying later")
                }
            }
        }
    });
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
        let ensured = retry::until_ok(
            TOPIC_ENSURE_BACKOFF,
            &stop,
            || ensure_topics(&client, &specs, timeout),
            |e, retry_in| {
                tracing::warn!(error = %format!("{e:#}"), ?retry_in, "cannot ensure topics yet");
            },
        )
        .await;
        for outcome in ensured.into_iter().flatten() {
            tracing::info!(topic = %outcome.topic, ?outcome, "topic checked");
        }
    });
}
