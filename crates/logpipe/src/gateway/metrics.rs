//! The gateway's event counts (`gateway_*`), by ingest protocol: events acknowledged by Kafka,
//! events refused by reason, and events per request.
//!
//! Every protocol and reason exists from the start with 0, so `rate()` sees the first event.

use std::collections::BTreeMap;

use logpipe_model::Rejection;
use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::producer::PublishError;
use crate::telemetry::metrics::size_histogram;

/// The way events arrive at the gateway.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    /// logpipe's own JSON API (`/api/v1/logs`, `/api/v1/logs/batch`).
    Logpipe,
    /// OpenTelemetry OTLP/HTTP (`/v1/logs`).
    Otlp,
    /// Grafana Loki's push API (`/loki/api/v1/push`).
    Loki,
    /// Elasticsearch's bulk API (`/_bulk`).
    Elasticsearch,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [
        Protocol::Logpipe,
        Protocol::Otlp,
        Protocol::Loki,
        Protocol::Elasticsearch,
    ];

    /// The `protocol` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Logpipe => "logpipe",
            Protocol::Otlp => "otlp",
            Protocol::Loki => "loki",
            Protocol::Elasticsearch => "elasticsearch",
        }
    }
}

impl EncodeLabelValue for Protocol {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    protocol: Protocol,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectedLabels {
    protocol: Protocol,
    reason: String,
}

/// Gateway metrics beyond the HTTP ones.
#[derive(Clone)]
pub struct GatewayMetrics {
    accepted: Family<ProtocolLabels, Counter>,
    rejected: Family<RejectedLabels, Counter>,
    batch_events: Family<ProtocolLabels, Histogram, fn() -> Histogram>,
    attributes_dropped: Family<ProtocolLabels, Counter>,
}

/// Why the gateway refuses events: the validation codes, and the publish failures.
pub fn reasons() -> impl Iterator<Item = &'static str> {
    Rejection::ALL_CODES
        .iter()
        .copied()
        .chain(PublishError::CODES)
        .chain(["timeout"])
}

impl GatewayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            accepted: Family::default(),
            rejected: Family::default(),
            batch_events: Family::new_with_constructor(size_histogram as fn() -> Histogram),
            attributes_dropped: Family::default(),
        };
        registry.register(
            "gateway_attributes_dropped",
            "Attributes left out of stored events (over the limits, too deep, or a repeated key), by ingest protocol; the sender is told how many",
            m.attributes_dropped.clone(),
        );
        registry.register(
            "gateway_events_accepted",
            "Events acknowledged by Kafka and answered 2xx, by ingest protocol",
            m.accepted.clone(),
        );
        registry.register(
            "gateway_events_rejected",
            "Events refused, by ingest protocol and reason (validation codes, or the publish failure)",
            m.rejected.clone(),
        );
        registry.register(
            "gateway_batch_events",
            "Events per ingest request, by ingest protocol",
            m.batch_events.clone(),
        );
        for protocol in Protocol::ALL {
            m.accept(protocol, 0);
            m.drop_attributes(protocol, 0);
            for code in reasons() {
                m.reject(protocol, code, 0);
            }
        }
        m
    }

    /// `n` events of `protocol` acknowledged by Kafka.
    pub fn accept(&self, protocol: Protocol, n: u64) {
        self.accepted
            .get_or_create(&ProtocolLabels { protocol })
            .inc_by(n);
    }

    /// `n` events of `protocol` refused for `reason` (a rejection or publish failure code).
    pub fn reject(&self, protocol: Protocol, reason: &str, n: u64) {
        self.rejected
            .get_or_create(&RejectedLabels {
                protocol,
                reason: reason.to_string(),
            })
            .inc_by(n);
    }

    /// `n` attributes of stored `protocol` events were left out (the events were kept).
    pub fn drop_attributes(&self, protocol: Protocol, n: u64) {
        self.attributes_dropped
            .get_or_create(&ProtocolLabels { protocol })
            .inc_by(n);
    }

    /// One request of `protocol` carried `n` events.
    pub fn observe_batch(&self, protocol: Protocol, n: usize) {
        self.batch_events
            .get_or_create(&ProtocolLabels { protocol })
            .observe(n as f64);
    }

    /// The counts now, over every protocol (the dashboard's gateway section).
    pub fn figures(&self) -> GatewayFigures {
        let mut rejected_by_reason: BTreeMap<String, u64> = BTreeMap::new();
        let mut accepted = 0;
        for protocol in Protocol::ALL {
            accepted += self
                .accepted
                .get(&ProtocolLabels { protocol })
                .map_or(0, |c| c.get());
            for reason in reasons() {
                let labels = RejectedLabels {
                    protocol,
                    reason: reason.to_string(),
                };
                let n = self.rejected.get(&labels).map_or(0, |c| c.get());
                *rejected_by_reason.entry(labels.reason).or_default() += n;
            }
        }
        GatewayFigures {
            accepted,
            rejected: rejected_by_reason.values().sum(),
            rejected_by_reason,
        }
    }
}

/// The gateway's event counts since it started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayFigures {
    pub accepted: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_over_protocols_and_every_series_exists_from_the_start() {
        let mut registry = Registry::default();
        let m = GatewayMetrics::register(&mut registry);
        m.accept(Protocol::Logpipe, 3);
        m.accept(Protocol::Otlp, 2);
        m.reject(Protocol::Loki, "invalid_level", 1);
        let figures = m.figures();
        assert_eq!(figures.accepted, 5);
        assert_eq!(figures.rejected, 1);
        assert_eq!(figures.rejected_by_reason["invalid_level"], 1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("gateway_events_accepted_total{protocol=\"elasticsearch\"} 0"));
        assert!(text.contains("gateway_events_accepted_total{protocol=\"otlp\"} 2"));
        assert!(text.contains(
            "gateway_events_rejected_total{protocol=\"loki\",reason=\"invalid_level\"} 1"
        ));
    }
}
