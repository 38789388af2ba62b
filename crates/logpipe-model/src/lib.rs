//! logpipe's log event model: what a valid log event is, how one is parsed from a client's JSON,
//! and how it is written to and read back from Kafka.
//!
//! Parse, don't validate: [`LogEvent::parse`] is the way from client bytes to an event, and a
//! [`LogEvent`] (like a [`ServiceName`] or a [`TraceId`]) is valid by construction; nothing
//! downstream re-checks it. Every way an event can fail is a [`Rejection`] with a stable code.
//!
//! # Map
//! - `event`: [`LogEvent`] and its entry points, [`LogEvent::parse`] (client JSON) and
//!   [`LogEvent::decode`] (a Kafka record); applies the field rules.
//! - `canonical`: [`LogEvent::to_json`] / [`LogEvent::write_json`], the Kafka record format.
//! - `wire` (private): JSON object to borrowed, unvalidated fields; the only code that knows JSON
//!   structure (type errors naming their field, unknown and duplicate fields).
//! - `fields`: validated newtypes [`ServiceName`], [`HostName`], [`TraceId`], [`SpanId`],
//!   [`Message`].
//! - `level`: [`Level`].
//! - `attributes` (private): limits and compaction for the `attributes` object.
//! - `limits`: [`Limits`], the configurable sizes.
//! - `parts`: [`LogEvent::from_parts`], an event from fields a protocol adapter separated
//!   ([`EventParts`]), under the same rules.
//! - `rejection`: [`Rejection`] and its codes.
//! - `schema`: [`event_schema`] and [`level_schema`], the JSON Schemas of the gateway's OpenAPI
//!   document, built from the parser's own rules and limits.
//! - `batch`: [`split_json_array`] and [`ndjson_lines`], splitting a batch body into events.
//! - `enriched`: [`EnrichedLog`], an event after the consumer enriched it (what the stores take),
//!   with [`Fingerprint`] (computed by [`fingerprint`]) and [`KafkaCoordinates`].
//! - `cells`: [`Cells`], events counted per minute, service, level and error fingerprint (what
//!   the aggregates hold), [`CellDiff`] and [`Cut`]: the common ground of the log store and the
//!   aggregates when one is checked or rebuilt from the other.
//! - `enrich`: [`enrich`], the consumer's enrichment step (pure: the clock is an argument), and
//!   [`RecordMeta`], what it needs from the Kafka record besides the value.
//! - `fnv`: [`fnv1a_64`] and [`Fnv1a64`], the stable hash behind fingerprints (and the stores'
//!   lock keys): the same value in every process, platform and release.
//! - `template`: [`message_template`], a message with its variable parts masked, so that similar
//!   messages share a template and a fingerprint.
//!
//! Modules are private and everything public is re-exported here, so callers write
//! `logpipe_model::LogEvent` and the files can be rearranged freely.

mod attributes;
mod batch;
mod canonical;
mod cells;
mod enrich;
mod enriched;
mod event;
mod fields;
mod fnv;
mod level;
mod limits;
mod parts;
mod rejection;
mod schema;
mod template;
mod wire;

pub use batch::{
    ndjson_lines, ndjson_lines_at_most, split_json_array, split_json_array_at_most, SplitError,
};
pub use cells::{minute_of, CellDiff, Cells, Cut, LEVELS};
pub use enrich::{enrich, RecordMeta, REQUEST_ID_MAX_BYTES};
pub use enriched::{fingerprint, EnrichedLog, Fingerprint, KafkaCoordinates};
pub use event::{normalise_timestamp, parse_timestamp, LogEvent};
pub use fields::{HostName, Message, ServiceName, SpanId, TraceId};
pub use fnv::{fnv1a_64, Fnv1a64};
pub use level::Level;
pub use limits::Limits;
pub use parts::EventParts;
pub use rejection::{Rejection, ECHO_MAX_CHARS};
pub use schema::{event_schema, level_input_pattern, level_schema};
pub use template::{message_template, TEMPLATE_MAX_BYTES};

/// Re-exported so callers can name `LogEvent::attributes` and batch elements without adding
/// `serde_json` with the `raw_value` feature themselves.
pub use serde_json::value::RawValue;
