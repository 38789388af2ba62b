//! Telemetry: Prometheus metrics ([`metrics`]) and process logs ([`logging`]).

pub mod logging;
pub mod metrics;
pub mod prom_text;
