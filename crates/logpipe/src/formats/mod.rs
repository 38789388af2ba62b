//! What foreign log records share, whoever receives them: the gateway's shipper protocols (Loki
//! push, Elasticsearch bulk) and the consumer's foreign record formats (`json`). Neither owns
//! this module, so both follow one mapping and neither imports the other.
//!
//! - `parts`: [`Parts`], the fields a mapping found, made into a
//!   [`LogEvent`](logpipe_model::LogEvent) under the model's rules ([`Parts::into_event`]); how
//!   a foreign service name becomes a valid one ([`service_name`]); Unix times
//!   ([`unix_timestamp`]).
//! - `document`: a JSON document (an ECS or logstash log line, an Elasticsearch document) to
//!   [`Parts`], by configurable field names ([`document::Names`]).
//! - `time`: the date texts and epoch numbers those tools write.
//!
//! Level names other tools write are [`logpipe_model::Level::from_foreign`].

pub mod document;
mod parts;
mod time;

pub use parts::{service_name, unix_timestamp, Parts};
