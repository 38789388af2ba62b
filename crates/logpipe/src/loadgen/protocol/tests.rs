//! Each protocol's batch decodes back through the gateway's own decoders and mappers into the
//! same 500 events, and each protocol's answers are counted its way.

use chrono::Utc;
use logpipe_model::{Limits, LogEvent, ServiceName};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use serde_json::json;

use super::{Outcome, Protocol};
use crate::config::ElasticsearchFields;
use crate::gateway::elastic::{bulk, document};
use crate::gateway::loki;
use crate::gateway::otlp::map::{map_request, Context};
use crate::gateway::otlp::Encoding;
use crate::loadgen::events::bodies;

const BATCH: usize = 500;

fn batch(protocol: Protocol) -> Vec<u8> {
    bodies(protocol, BATCH, 10, 0.0, false).unwrap()[0]
        .bytes
        .to_vec()
}

fn from_otlp(request: ExportLogsServiceRequest) -> Vec<LogEvent> {
    let default_service: ServiceName = "unknown_service".parse().unwrap();
    let mapped = map_request(
        request,
        &Context {
            limits: &Limits::default(),
            default_service: &default_service,
            received: Utc::now(),
        },
    );
    assert!(mapped.rejected.is_empty(), "{:?}", mapped.rejected);
    assert_eq!(mapped.dropped_attributes, 0);
    mapped.events
}

/// The events the gateway makes of one batch of `protocol`, through the route's decoders.
fn decoded(protocol: Protocol) -> Vec<LogEvent> {
    let body = batch(protocol);
    let limits = Limits::default();
    match protocol {
        Protocol::Logpipe => serde_json::from_slice::<Vec<serde_json::Value>>(&body)
            .unwrap()
            .into_iter()
            .map(|v| LogEvent::parse(v.to_string().as_bytes(), &limits, Utc::now()).unwrap())
            .collect(),
        Protocol::OtlpProto => from_otlp(Encoding::Protobuf.decode(&body).unwrap()),
        Protocol::OtlpJson => from_otlp(Encoding::Json.decode(&body).unwrap()),
        Protocol::Loki => {
            let streams = loki::push::decode_json(&body).unwrap();
            let settings = loki::map::Settings {
                service_labels: vec!["service_name".into()],
                default_service: "unknown_service".into(),
            };
            let (events, rejected) =
                loki::map::events(streams, &settings, None, &limits, Utc::now());
            assert!(rejected.is_empty(), "{rejected:?}");
            events
        }
        Protocol::Elasticsearch => {
            let items = bulk::split(&body, None, 10_000).unwrap();
            let fields = ElasticsearchFields::default();
            items
                .iter()
                .map(|item| {
                    assert_eq!(item.action, "create");
                    assert_eq!(item.index.as_deref(), Some("bench"));
                    document::parts(item.source.unwrap(), &fields, "bench", None)
                        .unwrap()
                        .into_event(&limits, Utc::now())
                        .unwrap()
                })
                .collect()
        }
    }
}

/// What every protocol must carry alike, order aside (OTLP and Loki group by service and host).
fn content(events: &[LogEvent]) -> Vec<(String, String, String)> {
    let mut content: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.service.as_str().to_string(),
                e.level.as_str().to_string(),
                e.message.as_str().to_string(),
            )
        })
        .collect();
    content.sort();
    content
}

#[test]
fn every_protocol_decodes_to_the_same_500_events() {
    let reference = decoded(Protocol::Logpipe);
    assert_eq!(reference.len(), BATCH);
    let mut traced: Vec<_> = reference.iter().map(|e| e.trace_id.clone()).collect();
    traced.sort();
    for protocol in [
        Protocol::OtlpProto,
        Protocol::OtlpJson,
        Protocol::Loki,
        Protocol::Elasticsearch,
    ] {
        let events = decoded(protocol);
        assert_eq!(events.len(), BATCH, "{protocol:?}");
        assert_eq!(content(&events), content(&reference), "{protocol:?}");
        if matches!(protocol, Protocol::OtlpProto | Protocol::OtlpJson) {
            let mut ids: Vec<_> = events.iter().map(|e| e.trace_id.clone()).collect();
            ids.sort();
            assert_eq!(ids, traced, "{protocol:?} keeps the trace ids");
        }
        if protocol != Protocol::Loki {
            assert!(events.iter().all(|e| e.host.is_some()), "{protocol:?}");
        }
    }
}

#[test]
fn routes_and_content_types() {
    assert_eq!(Protocol::Logpipe.path(500), "/api/v1/logs/batch");
    assert_eq!(Protocol::Logpipe.path(1), "/api/v1/logs");
    assert_eq!(Protocol::OtlpProto.content_type(), "application/x-protobuf");
    assert_eq!(Protocol::OtlpJson.path(500), "/v1/logs");
    assert_eq!(Protocol::Loki.path(500), "/loki/api/v1/push");
    assert_eq!(Protocol::Elasticsearch.path(500), "/_bulk");
    assert_eq!(
        Protocol::Elasticsearch.content_type(),
        "application/x-ndjson"
    );
}

#[test]
fn answers_are_counted_the_protocols_way() {
    let rejected = |n| ExportLogsServiceResponse {
        partial_success: Some(ExportLogsPartialSuccess {
            rejected_log_records: n,
            error_message: String::new(),
        }),
    };
    let ok = ExportLogsServiceResponse::default().encode_to_vec();
    assert_eq!(
        Protocol::OtlpProto.outcome(200, &ok, 500),
        Outcome::Accepted(500)
    );
    let some = rejected(3).encode_to_vec();
    assert_eq!(
        Protocol::OtlpProto.outcome(200, &some, 500),
        Outcome::Accepted(497)
    );
    let some = serde_json::to_vec(&rejected(3)).unwrap();
    assert_eq!(
        Protocol::OtlpJson.outcome(200, &some, 500),
        Outcome::Accepted(497)
    );
    assert_eq!(
        Protocol::OtlpJson.outcome(200, b"{}", 500),
        Outcome::Accepted(500)
    );
    assert_eq!(Protocol::OtlpProto.outcome(503, b"", 500), Outcome::Failed);

    assert_eq!(
        Protocol::Loki.outcome(204, b"", 500),
        Outcome::Accepted(500)
    );
    assert_eq!(Protocol::Loki.outcome(400, b"bad", 500), Outcome::Refused);
    assert_eq!(Protocol::Loki.outcome(200, b"", 500), Outcome::Failed);

    let all = json!({"errors": false, "items": []}).to_string();
    assert_eq!(
        Protocol::Elasticsearch.outcome(200, all.as_bytes(), 2),
        Outcome::Accepted(2)
    );
    let partly = json!({"errors": true, "items": [
        {"create": {"status": 201}}, {"create": {"status": 429}}
    ]})
    .to_string();
    assert_eq!(
        Protocol::Elasticsearch.outcome(200, partly.as_bytes(), 2),
        Outcome::Accepted(1)
    );
    assert_eq!(
        Protocol::Elasticsearch.outcome(503, b"{}", 2),
        Outcome::Failed
    );

    assert_eq!(
        Protocol::Logpipe.outcome(200, br#"{"accepted":499}"#, 500),
        Outcome::Accepted(499)
    );
    assert_eq!(Protocol::Logpipe.outcome(413, b"{}", 500), Outcome::Refused);
}
