//! The JSON Schema of an event as clients send it ([`event_schema`]) and of a level as the API
//! writes it ([`level_schema`]), for the gateway's OpenAPI document.
//!
//! Built from the same constants and field list the parser uses, and from the configured
//! [`Limits`], so the document a gateway serves describes exactly what that gateway accepts. Two
//! rules a schema cannot state are described in words instead: `message` is limited in UTF-8
//! bytes (the schema's `maxLength` counts characters, so it is exact for ASCII), and
//! `attributes` has a size limit in bytes.

use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::RefOr;

use crate::attributes::MAX_ATTRIBUTES_DEPTH;
use crate::fields::{HostName, ServiceName};
use crate::level::Level;
use crate::limits::Limits;
use crate::wire::Field;

/// Unicode `White_Space`, which `str::trim` strips: a message must hold a character outside it.
/// Spelled out because regex engines disagree on `\s` (Python's also matches U+001C..U+001F).
const NOT_WHITE_SPACE: &str =
    r"[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]";

/// The level names the parser accepts, in any letter case: each level and the `WARNING` alias.
pub fn level_input_pattern() -> String {
    let any_case = |name: &str| -> String {
        name.chars()
            .map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase()))
            .collect()
    };
    let names: Vec<String> = Level::ALL
        .iter()
        .map(|level| any_case(level.as_str()))
        .chain([any_case("WARNING")])
        .collect();
    format!("^({})$", names.join("|"))
}

/// A level as the API writes it: one of the six upper-case names.
pub fn level_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(Level::ALL.iter().map(Level::as_str)))
        .description(Some("Severity, least to most severe."))
        .into()
}

fn optional(kind: Type) -> SchemaType {
    SchemaType::from_iter([kind, Type::Null])
}

fn text(kind: SchemaType, pattern: &str, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(kind)
        .pattern(Some(pattern))
        .description(Some(description))
}

/// The schema of one field. `null` means absent for every field.
fn field_schema(field: Field, limits: &Limits) -> ObjectBuilder {
    match field {
        Field::Timestamp => ObjectBuilder::new()
            .schema_type(optional(Type::String))
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(
                "When it happened (RFC 3339, any offset, years 0000 to 9999 in UTC; kept to the microsecond). Absent: the time the gateway received it.",
            )),
        Field::Level => text(
            optional(Type::String),
            &level_input_pattern(),
            "TRACE, DEBUG, INFO, WARN (or WARNING), ERROR or FATAL, in any letter case. Absent: INFO.",
        ),
        Field::Service => text(
            SchemaType::Type(Type::String),
            &format!("^[A-Za-z0-9._-]{{1,{}}}$", ServiceName::MAX_LEN),
            "The emitting service.",
        ),
        Field::Message => text(
            SchemaType::Type(Type::String),
            NOT_WHITE_SPACE,
            &format!(
                "The event's text, kept verbatim; not only white space; at most {} bytes of UTF-8.",
                limits.max_message_bytes
            ),
        )
        .min_length(Some(1))
        .max_length(Some(limits.max_message_bytes)),
        Field::Host => text(
            optional(Type::String),
            &format!("^[A-Za-z0-9._:-]{{1,{}}}$", HostName::MAX_LEN),
            "The emitting host (a name, container id or IP address).",
        ),
        Field::TraceId => text(
            optional(Type::String),
            "^(?!0{32}$)[0-9A-Fa-f]{32}$",
            "W3C trace id: 32 hex digits, not all zero; stored lower-case.",
        ),
        Field::SpanId => text(
            optional(Type::String),
            "^(?!0{16}$)[0-9A-Fa-f]{16}$",
            "W3C span id: 16 hex digits, not all zero; stored lower-case.",
        ),
        Field::Attributes => ObjectBuilder::new()
            .schema_type(optional(Type::Object))
            .max_properties(Some(limits.max_attributes))
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .description(Some(format!(
                "Any JSON values, passed through. At most {} top-level keys and {} bytes written compactly, nested at most {MAX_ATTRIBUTES_DEPTH} deep; numbers must fit a 64-bit float.",
                limits.max_attributes, limits.max_attributes_bytes
            ))),
    }
}

/// One event as `POST /api/v1/logs` takes it, and as each item of a batch.
pub fn event_schema(limits: &Limits) -> RefOr<Schema> {
    let mut event = ObjectBuilder::new()
        .schema_type(Type::Object)
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .description(Some(
            "One log event. Unknown and repeated fields are refused; `null` is the same as absent.",
        ));
    for field in Field::ALL {
        event = event.property(field.name(), field_schema(field, limits));
    }
    event.required("service").required("message").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn properties(schema: &RefOr<Schema>) -> Vec<String> {
        let json = serde_json::to_value(schema).unwrap();
        json["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    }

    #[test]
    fn every_field_the_parser_knows_is_in_the_schema() {
        let mut expected: Vec<String> = Field::ALL.iter().map(|f| f.name().to_owned()).collect();
        expected.sort();
        assert_eq!(properties(&event_schema(&Limits::DEFAULT)), expected);
    }

    #[test]
    fn the_level_pattern_is_every_name_the_parser_takes_in_any_case() {
        assert_eq!(
            level_input_pattern(),
            "^([Tt][Rr][Aa][Cc][Ee]|[Dd][Ee][Bb][Uu][Gg]|[Ii][Nn][Ff][Oo]|[Ww][Aa][Rr][Nn]\
             |[Ee][Rr][Rr][Oo][Rr]|[Ff][Aa][Tt][Aa][Ll]|[Ww][Aa][Rr][Nn][Ii][Nn][Gg])$"
        );
        // The names spelled in the pattern, each in a mixed case, are levels to the parser.
        for name in [
            "tRaCe", "Debug", "info", "WARN", "Error", "fatal", "Warning",
        ] {
            assert!(name.parse::<Level>().is_ok(), "{name}");
        }
    }

    #[test]
    fn the_limits_in_force_are_in_the_schema() {
        let limits = Limits {
            max_message_bytes: 100,
            max_attributes: 3,
            ..Limits::DEFAULT
        };
        let json = serde_json::to_value(event_schema(&limits)).unwrap();
        assert_eq!(json["properties"]["message"]["maxLength"], 100);
        assert_eq!(json["properties"]["attributes"]["maxProperties"], 3);
        assert_eq!(json["required"], serde_json::json!(["service", "message"]));
        assert_eq!(json["additionalProperties"], false);
    }
}
