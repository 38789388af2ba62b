//! Telemetry: Prometheus metrics ([`metrics`]), histogram buckets this process reads back
//! ([`buckets`]), the consumer's figures as typed data ([`stats`]) and process logs
//! ([`logging`]).

pub mod buckets;
pub mod logging;
pub mod metrics;
pub mod stats;
