//! The Elasticsearch answers: one result per bulk item (status, `result` or `error` with its
//! `type` and `reason`), and the error body of a refused request, shaped as Elasticsearch writes
//! them because clients read `status` and `error.type` to decide what to retry.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use logpipe_model::{Limits, LogEvent};
use serde_json::{json, Value};

use super::bulk::Item;
use super::document;
use crate::config::ElasticsearchFields;
use crate::http::{ApiError, RequestId};

/// Why one item was not stored.
#[derive(Debug)]
pub struct Failure {
    pub status: u16,
    /// Elasticsearch's error type, which clients match on.
    pub kind: &'static str,
    /// logpipe's rejection code, for `gateway_events_rejected_total`.
    pub code: &'static str,
    pub reason: String,
}

impl Failure {
    fn invalid(code: &'static str, reason: String) -> Self {
        Failure {
            status: 400,
            kind: "document_parsing_exception",
            code,
            reason,
        }
    }

    /// Kafka did not acknowledge the event: 429, which clients retry.
    pub fn unacknowledged() -> Self {
        Failure {
            status: 429,
            kind: "es_rejected_execution_exception",
            code: "unacknowledged",
            reason: "Kafka did not acknowledge this document; retry it".into(),
        }
    }
}

/// An item's outcome: waiting for Kafka (its index among the published events), or failed.
#[derive(Debug)]
pub enum ItemResult {
    Pending(usize),
    Failed(Failure),
}

/// The event an item stores, or why it stores none.
pub fn event(
    item: &Item<'_>,
    fields: &ElasticsearchFields,
    limits: &Limits,
    received: DateTime<Utc>,
) -> Result<LogEvent, Failure> {
    if !item.stores() {
        return Err(Failure {
            status: 400,
            kind: "illegal_argument_exception",
            code: "unsupported_action",
            reason: format!(
                "logpipe stores logs and takes only `index` and `create` actions, not `{}`",
                item.action
            ),
        });
    }
    let (Some(index), Some(source)) = (item.index.as_deref(), item.source) else {
        return Err(Failure {
            status: 400,
            kind: "action_request_validation_exception",
            code: "missing_index",
            reason: "Validation Failed: 1: index is missing; name it in the action or the path (/{index}/_bulk)".into(),
        });
    };
    let parts = document::parts(source, fields, index, item.id.as_deref())
        .map_err(|reason| Failure::invalid("invalid_document", reason))?;
    parts
        .into_event(limits, received)
        .map_err(|r| Failure::invalid(r.code(), format!("{}: {r}", r.code())))
}

/// The indexes (among the published events) Kafka did not acknowledge, when the publish failed
/// only for some; `None` when nothing was written.
pub fn failed_indexes(error: &ApiError) -> Option<Vec<usize>> {
    let failed = error.details.as_ref()?.get("failed")?.as_array()?;
    Some(
        failed
            .iter()
            .filter_map(|f| f["index"].as_u64().map(|i| i as usize))
            .collect(),
    )
}

/// The answer to a bulk request.
pub fn bulk_body(items: &[Item<'_>], results: Vec<ItemResult>, took: Duration) -> Value {
    let mut errors = false;
    let answers: Vec<Value> = items
        .iter()
        .zip(results)
        .map(|(item, result)| {
            let id = item
                .id
                .clone()
                .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
            let mut answer = json!({"_index": item.index, "_id": id});
            match result {
                ItemResult::Pending(_) => {
                    answer["_version"] = 1.into();
                    answer["result"] = "created".into();
                    answer["_shards"] = json!({"total": 1, "successful": 1, "failed": 0});
                    answer["status"] = 201.into();
                }
                ItemResult::Failed(failure) => {
                    errors = true;
                    answer["status"] = failure.status.into();
                    answer["error"] = json!({"type": failure.kind, "reason": failure.reason});
                }
            }
            json!({ item.action: answer })
        })
        .collect();
    json!({"took": took.as_millis() as u64, "errors": errors, "items": answers})
}

/// A refused request in Elasticsearch's error shape, keeping the status and `Retry-After`.
pub fn error(error: ApiError, id: &RequestId) -> Response {
    let kind = match error.status {
        StatusCode::TOO_MANY_REQUESTS => "es_rejected_execution_exception",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable_shards_exception",
        StatusCode::PAYLOAD_TOO_LARGE => "request_entity_too_large",
        _ => error.code,
    };
    let cause = json!({"type": kind, "reason": error.message});
    let body = json!({
        "error": {"root_cause": [cause], "type": kind, "reason": error.message, "request_id": &*id.0},
        "status": error.status.as_u16(),
    });
    let mut response = (error.status, Json(body)).into_response();
    crate::http::set_retry_after(&mut response, error.retry_after);
    response
}

#[cfg(test)]
mod tests {
    use axum::http::header;

    use super::*;
    use crate::gateway::elastic::bulk;

    #[test]
    fn per_item_answers() {
        let body = b"{\"create\":{\"_index\":\"logs\",\"_id\":\"a\"}}\n{\"message\":\"ok\",\"service.name\":\"api\"}\n\
            {\"create\":{\"_index\":\"logs\"}}\n{\"message\":\"\"}\n\
            {\"delete\":{\"_index\":\"logs\",\"_id\":\"b\"}}\n\
            {\"index\":{}}\n{\"message\":\"no index\"}\n\
            {\"index\":{\"_index\":\"logs\"}}\n{\"message\":\"m\"}\n";
        let items = bulk::split(body, None, 100).unwrap();
        let fields = ElasticsearchFields::default();
        let mut events = 0;
        let results: Vec<_> = items
            .iter()
            .map(
                |item| match event(item, &fields, &Limits::DEFAULT, Utc::now()) {
                    Ok(_) => {
                        events += 1;
                        ItemResult::Pending(events - 1)
                    }
                    Err(f) => ItemResult::Failed(f),
                },
            )
            .collect();
        let mut results = results;
        results[4] = ItemResult::Failed(Failure::unacknowledged());
        let answer = bulk_body(&items, results, Duration::from_millis(3));
        assert_eq!(answer["errors"], true);
        let items = answer["items"].as_array().unwrap();
        assert_eq!(items[0]["create"]["status"], 201);
        assert_eq!(items[0]["create"]["_id"], "a");
        assert_eq!(items[0]["create"]["result"], "created");
        assert_eq!(items[1]["create"]["status"], 400);
        assert_eq!(
            items[1]["create"]["error"]["type"],
            "document_parsing_exception"
        );
        assert!(items[1]["create"]["error"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("empty_message"));
        assert_eq!(
            items[2]["delete"]["error"]["type"],
            "illegal_argument_exception"
        );
        assert_eq!(
            items[3]["index"]["error"]["type"],
            "action_request_validation_exception"
        );
        assert_eq!(items[4]["index"]["status"], 429);
    }

    #[test]
    fn partial_publish_failures_name_their_events() {
        let mut details = serde_json::Map::new();
        details.insert("failed".into(), json!([{"index": 2, "reason": "x"}]));
        let error =
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "partial", "p").with_details(details);
        assert_eq!(failed_indexes(&error), Some(vec![2]));
        let whole = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "kafka_unavailable", "k");
        assert_eq!(failed_indexes(&whole), None);
    }

    #[test]
    fn errors_are_shaped_as_elasticsearch_writes_them() {
        let error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "kafka_unavailable", "down")
            .retry_after(Duration::from_secs(2));
        let response = error_response(error);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    fn error_response(e: ApiError) -> Response {
        error(e, &RequestId("r".into()))
    }
}
