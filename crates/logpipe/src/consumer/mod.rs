//! The consumer group: `consumer.concurrency` members per process ([`service`]), each a Kafka
//! consumer on its own poll thread ([`member`]) feeding an async pipeline ([`pipeline`]) that
//! decodes, enriches, stores, aggregates and then commits. Offsets are committed by hand, only
//! after a batch is durable in the store and counted in the aggregates ([`offsets`] decides how
//! far).
//!
//! The poll thread and the pipeline share only what [`handoff`] defines: records, inputs, commit
//! points and outage flags. The member's Kafka client settings are in
//! [`crate::kafka::consumer`]; dead-letter records are written by [`dead_letter`]; [`steps`] is
//! the extension point for per-record processing; [`reconcile`] rebuilds the aggregates from the
//! log store after the aggregates store lost data.

pub mod dead_letter;
pub mod handoff;
pub mod member;
pub mod metrics;
pub mod offsets;
pub mod pipeline;
pub mod reconcile;
pub mod service;
pub mod stats;
pub mod steps;

pub use metrics::{
    ClassLabels, ConsumerMetrics, DependencyLabels, KindLabels, MemberLabels, PartitionLabels,
    ResultLabels,
};
pub use service::ConsumerService;
pub use stats::{stats_routes, ConsumerStats};
