//! logpipe: a Kafka log-processing pipeline in one binary.
//!
//! ```text
//! client --HTTP--> gateway :8080 --> producer :8081 --> Kafka "application-logs" (12 partitions)
//!   consumer group (:8082) --> decode, enrich --> log store (PostgreSQL | SQLite)
//!                                             --> aggregates (Redis | in-process) --> commit
//!                     poison / retries exhausted --> "logs-dlq" --> `logpipe dlq replay`
//! gateway query API <-- log store + aggregates
//! ```
//!
//! # The life of a record
//!
//! One event, from the HTTP request that carries it to the offset commit that ends its journey:
//!
//! 1. **Ingest.** `POST /api/v1/logs/batch` (or `/api/v1/logs`) reaches the [`gateway::router`]:
//!    the API key is checked ([`gateway::auth`]), the body is read within its limits (gzip,
//!    NDJSON: [`gateway::body`]), and every event is validated into a
//!    [`LogEvent`](logpipe_model::LogEvent) ([`gateway::ingest`]). A request id is attached.
//!    Shippers' protocols arrive the same way and end in the same publish step as our own API:
//!    OTLP/HTTP ([`gateway::otlp`]), Loki push ([`gateway::loki`]) and Elasticsearch bulk
//!    ([`gateway::elastic`]).
//! 2. **Produce.** The batch goes to the idempotent, acks=all [`producer::Producer::publish`]
//!    (in-process), or over HTTP to the producer service ([`producer::service`], through
//!    [`producer::client::ProducerClient`]). Each record is keyed (`producer.key_strategy`) and
//!    carries the ingest time and request id as [`kafka::headers`]. The gateway answers 202 only
//!    once Kafka acknowledged every record of the request.
//! 3. **Fetch.** A consumer group member ([`consumer::ConsumerService`]) polls Kafka on its own
//!    thread ([`consumer::member::poll`]) and hands each record, as a
//!    [`Fetched`](consumer::handoff::Fetched), to its async pipeline. Assignments and revokes
//!    travel the same channel, in order ([`consumer::handoff::Input`]).
//! 4. **Batch and decode.** The assemble stage cuts batches ([`consumer::pipeline::batch`]);
//!    each is decoded in its topic's format ([`consumer::pipeline::formats`]: logpipe's JSON, or
//!    what other producers write) and enriched on parallel lanes, one key per lane
//!    ([`consumer::pipeline::decode`]). A record that cannot be decoded is poison.
//! 5. **Schedule.** The writer ([`consumer::pipeline::writer`]) gives every record one outcome.
//!    Its [`scheduler`](consumer::pipeline::scheduler) keeps one key's records in order, runs the
//!    [`consumer::steps`] if any, retries a failing record on the `[retry]` schedule while only
//!    its key waits, and tracks each partition's commit point ([`consumer::offsets`]).
//! 6. **Store.** Ready records are written to PostgreSQL in one COPY per round
//!    ([`consumer::pipeline::store`], `logpipe_store::LogStore::write`); a row the store refuses is
//!    found by bisection and retried alone; rows already present (a re-read) are skipped by their
//!    Kafka coordinates. Poison and exhausted records go to the dead-letter topic
//!    ([`consumer::pipeline::letters`], [`consumer::dead_letter`]) with their reason in headers
//!    ([`dlq`]). A dependency outage opens a [`circuit`](consumer::pipeline::circuit) that pauses
//!    the partitions instead.
//! 7. **Aggregate.** Stored records are counted in Redis up to each partition's commit point, in
//!    one watermark-checked update ([`consumer::pipeline::tally`]), so a re-read record is never
//!    counted twice.
//! 8. **Commit.** The moved [`CommitPoint`](consumer::handoff::CommitPoint)s go back to the poll
//!    thread, which commits them at most every 200 ms, and synchronously on a revoke
//!    ([`consumer::member::commit`], [`consumer::member::rebalance`]).
//! 9. **Read back.** The gateway's query API ([`gateway::query`]) and dashboard
//!    ([`gateway::dashboard`]) read the store and aggregates; `logpipe lag` ([`lag`]) and
//!    `logpipe dlq` ([`dlq`]) read the group and the dead-letter topic from Kafka.
//!
//! Where things live:
//! - [`config`]: the TOML file, `LOGPIPE_*` environment overrides, flags, validation, redaction.
//! - [`cli`]: the `logpipe` command line; [`commands`]: operator tools (`topics`, `config check`);
//!   [`loadgen`]: the load generator.
//! - [`app`]: wires roles into a running process (what `logpipe gateway|producer|run` start).
//! - [`gateway`]: HTTP ingest (`/api/v1/logs`, `/api/v1/logs/batch`, and the shippers' OTLP/HTTP,
//!   Loki push and Elasticsearch bulk): body limits, gzip, API keys, the query API, the OpenAPI
//!   document.
//! - [`consumer`]: the consumer group: poll threads ([`consumer::member`]), the pipeline of each
//!   member ([`consumer::pipeline`]: batching, decode/enrich lanes, the per-key scheduler, store
//!   and aggregate writes, dead-lettering, outage circuits), manual commits, rebalances.
//! - [`formats`]: what foreign log records share, whoever receives them (the gateway's shipper
//!   protocols, the consumer's `json` format): a JSON document by configurable field names, the
//!   dates and epochs those tools write, events built through the model's rules.
//! - [`dlq`]: the dead-letter record format and the `logpipe dlq stats|show|replay` tools.
//! - [`lag`]: `logpipe lag`, a group's lag per partition read live from the brokers, with
//!   Burrow-style statuses over a window of samples.
//! - [`demo`]: `logpipe demo`, the pipeline with generated traffic and a summary.
//! - [`producer`]: the idempotent Kafka producer with bounded in-flight records, its internal
//!   HTTP endpoint (split mode) and the gateway's client for it.
//! - [`kafka`]: client config, record headers, topic admin, the embedded broker, health probes.
//! - [`http`]: what every HTTP service shares: error shape, request ids, health and metrics routes.
//! - [`retry`]: the one backoff-with-jitter policy (record retries, outage circuits, start-up
//!   waits) and the periodic-task helper.
//! - [`telemetry`]: Prometheus metrics and process logs.
//! - Crates beside this one: `logpipe_model` (event model, enrichment), `logpipe_store` (log
//!   store), `logpipe_aggregates` (real-time aggregates).

pub mod aggregates;
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod consumer;
pub mod demo;
pub mod dlq;
pub mod formats;
pub mod gateway;
pub mod http;
pub mod kafka;
pub mod lag;
pub mod loadgen;
pub mod producer;
pub mod retry;
pub mod telemetry;
pub mod time;

pub use logpipe_model as model;
