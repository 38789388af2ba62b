//! The OpenAPI 3.1 document of the gateway's public API (ingest, query, stats, health), served at
//! `GET /api/v1/openapi.json`.
//!
//! Nothing in it is written by hand twice: paths, parameters and answers come from the handlers'
//! `#[utoipa::path]` annotations and the types they return; the event and batch schemas from the
//! parser's own rules with this gateway's configured limits ([`logpipe_model::event_schema`]);
//! the security section from whether API keys are configured. So the document a gateway serves
//! describes what that gateway does.

use axum::http::header;
use axum::response::IntoResponse;
use logpipe_model::{event_schema, Limits};
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::SecurityRequirement;
use utoipa::OpenApi;

use super::schemas::{batch_schema, BatchBody, EventBody};

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "logpipe gateway",
        description = "Send log events (answered only once Kafka has them), read them back, and count them. Every error answer has the same shape: `{\"error\": {\"code\", \"message\", \"request_id\"}}`. Without API keys configured, ingest is open and reads are served only to clients on the gateway's machine.",
    ),
    paths(
        super::ingest::ingest_one,
        super::ingest::ingest_batch,
        super::query::logs,
        super::query::stats,
        crate::http::live,
        crate::http::ready,
        openapi_json,
    ),
    components(schemas(EventBody, BatchBody)),
    tags(
        (name = "ingest", description = "Sending events"),
        (name = "query", description = "Reading stored events and their counts"),
        (name = "health", description = "Liveness, readiness and this document (never need a key)"),
    ),
)]
struct ApiDoc;

/// The document for a gateway with these limits; `max_q_chars` is the `q` cap when the gateway
/// serves the query API, `keys` whether API keys are configured.
pub fn document(
    limits: &Limits,
    max_batch_events: usize,
    max_q_chars: Option<usize>,
    keys: bool,
) -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    if let Some(max) = max_q_chars {
        let search = doc
            .paths
            .paths
            .get_mut("/api/v1/logs")
            .and_then(|item| item.get.as_mut())
            .and_then(|get| get.parameters.as_mut())
            .and_then(|params| params.iter_mut().find(|p| p.name == "q"));
        if let Some(q) = search {
            q.schema = Some(
                ObjectBuilder::new()
                    .schema_type(utoipa::openapi::Type::String)
                    .max_length(Some(max))
                    .into(),
            );
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components
        .schemas
        .insert("Event".into(), event_schema(limits));
    components
        .schemas
        .insert("Batch".into(), batch_schema(max_batch_events));
    if keys {
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        doc.security = Some(vec![
            SecurityRequirement::new("bearer", Vec::<String>::new()),
            SecurityRequirement::new("api_key", Vec::<String>::new()),
        ]);
        // Health and this document are served without a key.
        for (path, item) in doc.paths.paths.iter_mut() {
            if path.starts_with("/health/") || path == PATH {
                if let Some(get) = item.get.as_mut() {
                    get.security = Some(vec![SecurityRequirement::default()]);
                }
            }
        }
    }
    doc
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "health",
    operation_id = "openapi",
    summary = "This document",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
pub async fn openapi_json(
    axum::extract::State(json): axum::extract::State<std::sync::Arc<str>>,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
}

/// The route serving `document`, open to every client.
pub fn router(document: &utoipa::openapi::OpenApi) -> axum::Router {
    let json: std::sync::Arc<str> = document
        .to_json()
        .unwrap_or_else(|_| "{}".to_owned())
        .into();
    axum::Router::new()
        .route(PATH, axum::routing::get(openapi_json))
        .with_state(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(keys: bool) -> serde_json::Value {
        serde_json::to_value(document(&Limits::DEFAULT, 250, Some(120), keys)).unwrap()
    }

    #[test]
    fn every_public_route_is_documented() {
        let doc = json(false);
        let mut routes: Vec<String> = doc["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| format!("{method} {path}"))
            })
            .collect();
        routes.sort();
        assert_eq!(
            routes,
            [
                "get /api/v1/logs",
                "get /api/v1/openapi.json",
                "get /api/v1/stats",
                "get /health/live",
                "get /health/ready",
                "post /api/v1/logs",
                "post /api/v1/logs/batch",
            ]
        );
        assert_eq!(doc["openapi"], "3.1.0");
    }

    #[test]
    fn the_configured_limits_are_in_the_document() {
        let doc = json(false);
        assert_eq!(doc["components"]["schemas"]["Batch"]["maxItems"], 250);
        let q = doc["paths"]["/api/v1/logs"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "q")
            .unwrap();
        assert_eq!(q["schema"]["maxLength"], 120);
        assert_eq!(
            doc["components"]["schemas"]["Event"]["properties"]["message"]["maxLength"],
            Limits::DEFAULT.max_message_bytes
        );
    }

    #[test]
    fn keys_add_security_everywhere_but_health() {
        assert!(json(false).get("security").is_none());
        let doc = json(true);
        assert_eq!(doc["security"].as_array().unwrap().len(), 2);
        assert_eq!(
            doc["paths"]["/health/ready"]["get"]["security"],
            serde_json::json!([{}])
        );
        assert!(doc["paths"]["/api/v1/logs"]["get"]
            .get("security")
            .is_none());
    }
}
