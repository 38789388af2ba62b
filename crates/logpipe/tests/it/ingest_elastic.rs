//! The Elasticsearch bulk subset driven by the official Python client (`elasticsearch`,
//! `helpers.bulk`), against the embedded pipeline and against Apache Kafka + PostgreSQL + Redis:
//! the per-item errors the client reports, and only the good documents stored, with their fields.

use logpipe::app::Roles;
use logpipe::config::Config;
use serde_json::{json, Value};

use crate::ingest_loki::{wait_stored, KEY};
use crate::support::{external_config, run_python, start, test_config, unique};

const BULK_SCRIPT: &str = r#"
import json, sys
from elasticsearch import Elasticsearch, helpers
url, key, service = sys.argv[1:4]
es = Elasticsearch(url, api_key=("shipper", key))
info = es.info()
assert info["tagline"] == "You Know, for Search", info
actions = [
    {"_op_type": "create", "_index": "app-logs", "_id": "doc-1", "_source": {
        "@timestamp": "2026-01-02T03:04:05.123456789Z", "message": "first",
        "log": {"level": "warn", "logger": "app"}, "service": {"name": service},
        "host": {"name": "web-1"}, "user": {"id": 7}}},
    {"_index": "app-logs", "_source": {"message": "second", "log.level": "error",
        "service.name": service, "@timestamp": "2026-01-02T03:04:06"}},
    {"_op_type": "create", "_index": "app-logs", "_source": {"message": "", "service.name": service}},
    {"_op_type": "create", "_index": "app-logs", "_source": {"msg": "no message", "service.name": service}},
    {"_op_type": "delete", "_index": "app-logs", "_id": "doc-1"},
]
ok, errors = helpers.bulk(es, actions, raise_on_error=False, stats_only=False)
# The index from the path (/{index}/_bulk).
ok2, errors2 = helpers.bulk(es, [{"_source": {"message": "third", "service.name": service}}],
                            index="path-index", raise_on_error=False)
print(json.dumps({"ok": ok, "errors": errors, "ok2": ok2, "errors2": errors2}))
"#;

async fn python_bulk(config: Config) {
    let mut config = config;
    config.gateway.api_keys = vec![KEY.into()];
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let service = unique("es");
    let (status, stdout, stderr) = run_python(BULK_SCRIPT, &[&base, KEY, &service], &[]);
    assert!(status.success(), "{stdout}\n{stderr}");
    let out: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(out["ok"], 2, "{out:#}");
    assert_eq!(out["ok2"], 1, "{out:#}");
    assert_eq!(out["errors2"], json!([]));
    let errors = out["errors"].as_array().unwrap();
    let seen: Vec<(&str, u64, &str)> = errors
        .iter()
        .map(|e| {
            let (action, item) = e.as_object().unwrap().iter().next().unwrap();
            (
                action.as_str(),
                item["status"].as_u64().unwrap(),
                item["error"]["type"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("create", 400, "document_parsing_exception"),
            ("create", 400, "document_parsing_exception"),
            ("delete", 400, "illegal_argument_exception"),
        ],
        "{out:#}"
    );
    let reason = |i: usize| errors[i]["create"]["error"]["reason"].as_str().unwrap();
    assert!(reason(0).starts_with("empty_message"), "{out:#}");
    assert!(reason(1).contains("no `message` field"), "{out:#}");

    let logs = wait_stored(&base, &service, 3).await;
    let by_message = |m: &str| logs.iter().find(|l| l["message"] == m).unwrap();
    let first = by_message("first");
    assert_eq!(first["level"], "WARN");
    assert_eq!(first["host"], "web-1");
    let at = |log: &Value| -> chrono::DateTime<chrono::Utc> {
        log["timestamp"].as_str().unwrap().parse().unwrap()
    };
    // Nanoseconds truncated to microseconds; a time without an offset is UTC, as in Elasticsearch.
    assert_eq!(at(first).to_rfc3339(), "2026-01-02T03:04:05.123456+00:00");
    assert_eq!(
        first["attributes"],
        json!({"log": {"logger": "app"}, "user": {"id": 7}, "index": "app-logs", "_id": "doc-1"})
    );
    let second = by_message("second");
    assert_eq!(second["level"], "ERROR");
    assert_eq!(at(second).to_rfc3339(), "2026-01-02T03:04:06+00:00");
    assert_eq!(second["attributes"], json!({"index": "app-logs"}));
    let third = by_message("third");
    assert_eq!(third["level"], "INFO");
    assert_eq!(third["attributes"], json!({"index": "path-index"}));
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_client_bulk_stores_the_good_documents_and_reports_the_rest() {
    python_bulk(test_config("")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_elasticsearch_client_bulk_stores_the_good_documents_and_reports_the_rest() {
    python_bulk(external_config().await).await;
}

/// Every answer on the Elasticsearch routes carries the product header (the official clients
/// refuse a server without it), a 401 and a malformed bulk included; an ingest-only key passes
/// the root's product check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_elasticsearch_answer_names_the_product() {
    let mut config = test_config("");
    config.gateway.api_keys = vec![KEY.into()];
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let client = reqwest::Client::new();
    let product = |r: &reqwest::Response| {
        r.headers()
            .get("x-elastic-product")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let unauthorized = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(product(&unauthorized).as_deref(), Some("Elasticsearch"));
    let root = client
        .get(format!("{base}/"))
        .header("authorization", format!("ApiKey {KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 200);
    assert_eq!(product(&root).as_deref(), Some("Elasticsearch"));
    let body: Value = root.json().await.unwrap();
    assert_eq!(body["version"]["build_flavor"], "default");

    let malformed = client
        .post(format!("{base}/_bulk"))
        .header("authorization", format!("ApiKey {KEY}"))
        .header(
            "content-type",
            "application/vnd.elasticsearch+x-ndjson; compatible-with=9",
        )
        .body("{\"upsert\":{}}\n{}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    assert_eq!(product(&malformed).as_deref(), Some("Elasticsearch"));
    let body: Value = malformed.json().await.unwrap();
    assert_eq!(body["error"]["type"], "illegal_argument_exception");
    assert_eq!(body["status"], 400);
    app.shutdown().await.unwrap();
}

/// With Kafka down, both shipper protocols answer what their clients retry: Loki 503 in plain
/// text, Elasticsearch a whole-request 503 in its error shape, each with `Retry-After`, and
/// nothing is reported as stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_is_a_retryable_503_on_both_protocols() {
    let mut config = test_config("");
    config.producer.delivery_timeout = std::time::Duration::from_secs(2);
    config.gateway.request_timeout = std::time::Duration::from_secs(4);
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let broker = app.embedded().unwrap();
    broker.with_cluster(|c| c.broker_down(1)).unwrap().unwrap();
    let client = reqwest::Client::new();

    let push = json!({"streams": [{"stream": {"job": "down"}, "values": [["1700000000000000000", "line"]]}]});
    let loki = client
        .post(format!("{base}/loki/api/v1/push"))
        .json(&push)
        .send()
        .await
        .unwrap();
    assert_eq!(loki.status(), 503);
    assert!(loki.headers().contains_key("retry-after"));
    assert!(loki.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));

    let es = client
        .post(format!("{base}/_bulk"))
        .header("content-type", "application/x-ndjson")
        .body("{\"create\":{\"_index\":\"a\"}}\n{\"message\":\"m\"}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(es.status(), 503);
    assert!(es.headers().contains_key("retry-after"));
    assert_eq!(es.headers()["x-elastic-product"], "Elasticsearch");
    let body: Value = es.json().await.unwrap();
    assert_eq!(body["status"], 503, "{body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    app.shutdown().await.unwrap();
}
