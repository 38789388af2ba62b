//! Telemetry: Prometheus metrics ([`metrics`]) and process logs ([`logging`]).

pub mod logging;
pub mod metrics;
