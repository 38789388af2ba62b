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
//! Where things live:
//! - [`config`]: the TOML file, `LOGPIPE_*` environment overrides, flags, validation, redaction.
//! - [`cli`]: the `logpipe` command line; [`commands`]: operator tools (`topics`, `config check`);
//!   [`loadgen`]: the load generator.
//! - [`app`]: wires roles into a running process (what `logpipe gateway|producer|run` start).
//! - [`gateway`]: HTTP ingest (`/api/v1/logs`, `/api/v1/logs/batch`): body limits, gzip, API keys.
//! - [`consumer`]: the consumer group: poll threads, batching, decode/enrich lanes, per-record
//!   scheduling (retries hold back only their key), store and aggregate writes, the dead-letter
//!   producer, outage circuits, manual commits, rebalances.
//! - [`dlq`]: the dead-letter record format and the `logpipe dlq stats|show|replay` tools.
//! - [`lag`]: `logpipe lag`, a group's lag per partition read live from the brokers, with
//!   Burrow-style statuses over a window of samples.
//! - [`demo`]: `logpipe demo`, the pipeline with generated traffic and a summary.
//! - [`producer`]: the idempotent Kafka producer with bounded in-flight records, its internal
//!   HTTP endpoint (split mode) and the gateway's client for it.
//! - [`kafka`]: client config, record headers, topic admin, the embedded broker, health probes.
//! - [`http`]: what every HTTP service shares: error shape, request ids, health and metrics routes.
//! - [`telemetry`]: Prometheus metrics and process logs.
//! - Crates beside this one: `logpipe_model` (event model, enrichment), `logpipe_store` (log
//!   store), `logpipe_aggregates` (real-time aggregates).

pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod consumer;
pub mod demo;
pub mod dlq;
pub mod gateway;
pub mod http;
pub mod kafka;
pub mod lag;
pub mod loadgen;
pub mod producer;
pub mod retry;
pub mod telemetry;

pub use logpipe_model as model;
