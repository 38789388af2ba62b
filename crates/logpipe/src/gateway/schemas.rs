//! The schemas of the gateway's OpenAPI document that are not derived from a type: an event and
//! a batch (built from the parser's rules, [`logpipe_model::event_schema`]) and the query
//! parameters whose grammar a pattern states. The handlers name them in their `#[utoipa::path]`
//! annotations; `openapi` assembles the document.

use std::borrow::Cow;

use logpipe_model::{event_schema, Limits};
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat};
use utoipa::openapi::{OneOfBuilder, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::http::ErrorResponse;

/// A duration ago: a whole number and one unit (the grammar `query::range` parses). One that
/// reaches before the year 0000 is a 400 `time_out_of_range`.
const AGO_PATTERN: &str = "^[0-9]+[smhdwy]$";

/// One event as the ingest routes take it (component `Event`).
pub struct EventBody;

impl PartialSchema for EventBody {
    fn schema() -> RefOr<Schema> {
        event_schema(&Limits::DEFAULT)
    }
}

impl ToSchema for EventBody {
    fn name() -> Cow<'static, str> {
        "Event".into()
    }
}

/// A batch of events (component `Batch`).
pub struct BatchBody;

impl PartialSchema for BatchBody {
    fn schema() -> RefOr<Schema> {
        batch_schema(1000)
    }
}

impl ToSchema for BatchBody {
    fn name() -> Cow<'static, str> {
        "Batch".into()
    }
}

pub fn batch_schema(max_events: usize) -> RefOr<Schema> {
    ArrayBuilder::new()
        .items(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Event")))
        .min_items(Some(1))
        .max_items(Some(max_events))
        .description(Some(format!(
            "1 to {max_events} events; each is checked on its own."
        )))
        .into()
}

/// The schema of the `level` filter: a level name in any letter case.
pub fn level_param() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .pattern(Some(logpipe_model::level_input_pattern()))
        .into()
}

/// The schema of `since` and `until`: an RFC 3339 time, or a duration ago.
pub fn time_param() -> RefOr<Schema> {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .pattern(Some(AGO_PATTERN))
                .description(Some(
                    "A duration ago: `90s`, `15m`, `2h`, `7d`, `2w`, `1y`.",
                )),
        )
        .into()
}

/// The failure answers both ingest routes share, named in their `responses(...)`. Only the
/// document uses these types; the handlers answer through `ApiError`.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum IngestFailures {
    #[response(
        status = 401,
        description = "An API key is required, or the key is not valid"
    )]
    Unauthorized(ErrorResponse<'static>),
    #[response(status = 403, description = "The API key lacks the `ingest` scope")]
    Forbidden(ErrorResponse<'static>),
    #[response(
        status = 503,
        description = "Kafka or the producer is unavailable or saturated; retry after `Retry-After`",
        headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
    )]
    Unavailable(ErrorResponse<'static>),
}

/// The failure answers both query routes share.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum QueryFailures {
    #[response(
        status = 400,
        description = "A parameter is invalid (`error.code`: `invalid_query`, `time_out_of_range`, `range_too_large`, `q_too_long`)"
    )]
    Invalid(ErrorResponse<'static>),
    #[response(
        status = 401,
        description = "An API key is required, or the key is not valid"
    )]
    Unauthorized(ErrorResponse<'static>),
    #[response(
        status = 403,
        description = "The API key lacks the `read` scope, or (without API keys) the client is not on the gateway's machine"
    )]
    Forbidden(ErrorResponse<'static>),
    #[response(
        status = 503,
        description = "The store did not answer in time, or this gateway has no stores; retry after `Retry-After`",
        headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
    )]
    Unavailable(ErrorResponse<'static>),
}
