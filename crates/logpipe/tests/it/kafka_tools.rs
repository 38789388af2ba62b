//! logpipe's Kafka tools against Apache Kafka's own, on the same cluster and the same data:
//! `logpipe lag --json` against `kafka-consumer-groups --describe` (ConsumerGroupCommand), for a
//! classic group and a KIP-848 (`group.protocol=consumer`) group, each with a live member and
//! then empty; `logpipe dlq show --json` against `kafka-console-consumer` (ConsoleConsumer)
//! printing partitions, offsets, headers, keys and values.
//!
//! Needs the cluster in LOGPIPE_TEST_KAFKA_BROKERS and Kafka's jars in LOGPIPE_TEST_KAFKA_LIBS
//! (both set by `scripts/test.sh`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use logpipe::config::Config;
use logpipe::dlq::{headers, DlqContext, ErrorClass};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::support::{
    commit_offsets, create_topics, kafka_brokers, kafka_tool, logpipe, test_config, unique,
    IdleMember,
};

const GROUP_COMMAND: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
const CONSOLE_CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";

/// A config whose main topic has `partitions` partitions, created on the cluster.
async fn setup(partitions: i32) -> Config {
    let mut config = test_config(&kafka_brokers());
    config.kafka.partitions = partitions;
    create_topics(&config).await;
    config
}

/// Writes `n` records to `partition` of `topic`, batched as a producer does by default.
async fn produce(brokers: &str, topic: &str, partition: i32, n: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let values: Vec<String> = (0..n)
        .map(|i| format!("record {i} of {partition}"))
        .collect();
    let sends = values.iter().map(|v| {
        producer.send(
            FutureRecord::<str, str>::to(topic)
                .partition(partition)
                .payload(v),
            Duration::from_secs(10),
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.expect("record acknowledged");
    }
}

/// Writes `n` records to `partition` of `topic` in a transaction it leaves open: the log end
/// (high watermark) moves past them, the last stable offset stays before them. The transaction
/// stays open while the returned producer lives (and up to 5 minutes after).
fn produce_open_transaction(
    brokers: &str,
    topic: &str,
    partition: i32,
    n: usize,
) -> rdkafka::producer::BaseProducer {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("transactional.id", unique("it-tools-tx"))
        .set("transaction.timeout.ms", "300000")
        .create()
        .unwrap();
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("transactions initialised");
    producer.begin_transaction().unwrap();
    for i in 0..n {
        let value = format!("uncommitted {i}");
        producer
            .send(
                BaseRecord::<str, str>::to(topic)
                    .partition(partition)
                    .payload(&value),
            )
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer
        .flush(Duration::from_secs(30))
        .expect("records written");
    producer
}

/// One row of `kafka-consumer-groups --describe`, `-` as `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    current: Option<i64>,
    end: i64,
    lag: Option<i64>,
    consumer_id: Option<String>,
    host: Option<String>,
    client_id: Option<String>,
}

/// What `kafka-consumer-groups --describe --group GROUP` says about `topic`: rows per partition,
/// and whether it said the group has no active members.
fn kafka_describe(group: &str, topic: &str) -> (BTreeMap<i32, Row>, bool) {
    let brokers = kafka_brokers();
    let out = kafka_tool(
        GROUP_COMMAND,
        &[
            "--bootstrap-server",
            &brokers,
            "--describe",
            "--group",
            group,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "kafka-consumer-groups failed:\n{stdout}\n{stderr}"
    );
    let dash = |s: &str| (s != "-").then(|| s.to_string());
    let mut rows = BTreeMap::new();
    for line in stdout.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 9 || f[0] != group || f[1] != topic {
            continue;
        }
        rows.insert(
            f[2].parse().unwrap(),
            Row {
                current: dash(f[3]).map(|s| s.parse().unwrap()),
                end: f[4].parse().unwrap(),
                lag: dash(f[5]).map(|s| s.parse().unwrap()),
                consumer_id: dash(f[6]),
                host: dash(f[7]),
                client_id: dash(f[8]),
            },
        );
    }
    // Printed on stderr, before the table of committed offsets.
    let empty = stderr.contains("has no active members");
    (rows, empty)
}

/// Polls `kafka-consumer-groups` until `ready` holds for what it shows (60 s at most).
fn wait_for_kafka(
    group: &str,
    topic: &str,
    what: &str,
    ready: impl Fn(&BTreeMap<i32, Row>, bool) -> bool,
) -> BTreeMap<i32, Row> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (rows, empty) = kafka_describe(group, topic);
        if ready(&rows, empty) {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for kafka-consumer-groups to show {what}: {rows:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `logpipe lag --json` for `group` on `topic`.
fn logpipe_lag(group: &str, topic: &str) -> Value {
    let out = logpipe()
        .args(["lag", "--json", "--samples", "2", "--interval", "300ms"])
        .args(["--kafka-brokers", &kafka_brokers(), "--group", group])
        .args(["--topic", topic])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "logpipe lag failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// logpipe's rows in the shape of Kafka's.
fn logpipe_rows(report: &Value) -> BTreeMap<i32, Row> {
    let text = |v: &Value| v.as_str().map(str::to_string);
    report["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partition"].as_i64().unwrap() as i32,
                Row {
                    current: p["current_offset"].as_i64(),
                    end: p["log_end_offset"].as_i64().unwrap(),
                    lag: p["lag"].as_i64(),
                    consumer_id: text(&p["consumer_id"]),
                    host: text(&p["host"]),
                    client_id: text(&p["client_id"]),
                },
            )
        })
        .collect()
}

/// Every row Kafka shows is logpipe's row for that partition, column for column. logpipe also
/// shows the partitions Kafka leaves out (neither committed nor assigned): with no offset and
/// no owner.
fn assert_same_rows(kafka: &BTreeMap<i32, Row>, report: &Value) {
    let ours = logpipe_rows(report);
    for (partition, theirs) in kafka {
        assert_eq!(
            ours.get(partition),
            Some(theirs),
            "partition {partition}: logpipe lag (left) differs from kafka-consumer-groups (right)\n{report:#}"
        );
    }
    for (partition, row) in &ours {
        if !kafka.contains_key(partition) {
            assert_eq!(
                (row.current, row.lag, &row.consumer_id),
                (None, None, &None),
                "partition {partition} is missing from kafka-consumer-groups, so it has neither a commit nor an owner: {report:#}"
            );
        }
    }
}

fn statuses(report: &Value) -> BTreeMap<i32, Value> {
    report["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["partition"].as_i64().unwrap() as i32, p["status"].clone()))
        .collect()
}

/// A group with commits on partitions 0 and 1 (lag 4 and 0) and none on 2 and 3 (3 ends with an
/// open transaction); first with a live member owning every partition, then empty.
fn lag_matches_kafka_consumer_groups(protocol: &str) {
    let brokers = kafka_brokers();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = runtime.block_on(setup(4));
    let topic = config.kafka.topic.clone();
    runtime.block_on(async {
        for (partition, n) in [(0, 10), (1, 6), (2, 3), (3, 1)] {
            produce(&brokers, &topic, partition, n).await;
        }
    });
    let transaction = produce_open_transaction(&brokers, &topic, 3, 2);
    let group = unique(&format!("it-tools-{protocol}"));
    commit_offsets(&brokers, &group, &topic, &[(0, 6), (1, 6)]);
    let client_id = format!("it-tools-member-{protocol}");
    let member = IdleMember::join(&brokers, &group, &topic, &client_id, protocol);

    let kafka = wait_for_kafka(&group, &topic, "every partition owned", |rows, _| {
        rows.len() == 4 && rows.values().all(|r| r.consumer_id.is_some())
    });
    eprintln!("kafka-consumer-groups: {kafka:#?}");
    let report = logpipe_lag(&group, &topic);
    assert_same_rows(&kafka, &report);
    assert_eq!(kafka[&0].client_id.as_deref(), Some(client_id.as_str()));
    assert_eq!(kafka[&0].lag, Some(4));
    assert_eq!(
        kafka[&3].end, 3,
        "the log end counts the open transaction's records"
    );
    assert_eq!(report["state"], "Stable", "{report:#}");
    assert_eq!(report["members"].as_array().unwrap().len(), 1, "{report:#}");
    assert_eq!(
        statuses(&report),
        BTreeMap::from([
            (0, Value::from("STALL")),
            (1, Value::from("OK")),
            (2, Value::Null),
            (3, Value::Null),
        ]),
        "a member owns partition 0 and does not commit: STALL. {report:#}"
    );

    drop(member);
    let kafka = wait_for_kafka(&group, &topic, "the group empty", |_, empty| empty);
    eprintln!("kafka-consumer-groups, empty: {kafka:#?}");
    assert_eq!(kafka.keys().copied().collect::<Vec<_>>(), vec![0, 1]);
    let report = logpipe_lag(&group, &topic);
    assert_same_rows(&kafka, &report);
    assert_eq!(report["state"], "Empty", "{report:#}");
    assert_eq!(
        statuses(&report),
        BTreeMap::from([
            (0, Value::from("STOP")),
            (1, Value::from("OK")),
            (2, Value::Null),
            (3, Value::Null),
        ]),
        "nobody owns partition 0: STOP. {report:#}"
    );
    drop(transaction);
}

#[test]
fn external_kafka_tools_lag_matches_consumer_groups_classic() {
    lag_matches_kafka_consumer_groups("classic");
}

#[test]
fn external_kafka_tools_lag_matches_consumer_groups_kip848() {
    lag_matches_kafka_consumer_groups("consumer");
}

// ------------------------------------------------------------------------------------------
// dlq show against the console consumer
// ------------------------------------------------------------------------------------------

/// Separators given to the console consumer's formatter, absent from the test's data.
const RECORD_END: &[u8] = b"<<end-of-record>>";
const HEADER_SEPARATOR: &str = "<<h>>";

/// A record as Kafka's console consumer prints it: partition, offset, headers (`name`,
/// `value` text), key and value bytes (`None`: Kafka printed `null`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Printed {
    partition: i32,
    offset: i64,
    headers: Vec<(String, String)>,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fn split_bytes<'a>(mut bytes: &'a [u8], separator: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(at) = bytes.windows(separator.len()).position(|w| w == separator) {
        out.push(&bytes[..at]);
        bytes = &bytes[at + separator.len()..];
    }
    out.push(bytes);
    out
}

/// Every record of `topic`, printed by Kafka's console consumer.
fn console_consumer(topic: &str, expected: usize) -> Vec<Printed> {
    let brokers = kafka_brokers();
    let line_end = String::from_utf8(RECORD_END.to_vec()).unwrap();
    let out = kafka_tool(
        CONSOLE_CONSUMER,
        &[
            "--bootstrap-server",
            &brokers,
            "--topic",
            topic,
            "--from-beginning",
            "--max-messages",
            &expected.to_string(),
            "--timeout-ms",
            "20000",
            "--formatter-property",
            "print.partition=true",
            "--formatter-property",
            "print.offset=true",
            "--formatter-property",
            "print.headers=true",
            "--formatter-property",
            "print.key=true",
            "--formatter-property",
            &format!("headers.separator={HEADER_SEPARATOR}"),
            "--formatter-property",
            &format!("line.separator={line_end}"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("Processed a total of {expected} messages")),
        "the console consumer did not print {expected} records: {stderr}"
    );
    let null = |b: &[u8]| (b != b"null").then(|| b.to_vec());
    let mut printed: Vec<Printed> = split_bytes(&out.stdout, RECORD_END)
        .into_iter()
        .filter(|r| r.starts_with(b"Partition:"))
        .map(|record| {
            let fields: Vec<&[u8]> = record.splitn(5, |&b| b == b'\t').collect();
            assert_eq!(fields.len(), 5, "{}", String::from_utf8_lossy(record));
            let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
            let number = |b: &[u8], prefix: &str| {
                text(b)
                    .strip_prefix(prefix)
                    .unwrap()
                    .parse::<i64>()
                    .unwrap()
            };
            let header_text = text(fields[2]);
            let headers = if header_text == "NO_HEADERS" {
                Vec::new()
            } else {
                header_text
                    .split(HEADER_SEPARATOR)
                    .map(|h| {
                        let (name, value) = h.split_once(':').unwrap();
                        (name.to_string(), value.to_string())
                    })
                    .collect()
            };
            Printed {
                partition: number(fields[0], "Partition:") as i32,
                offset: number(fields[1], "Offset:"),
                headers,
                key: null(fields[3]),
                value: null(fields[4]),
            }
        })
        .collect();
    printed.sort();
    printed
}

/// Bytes from `show --json`: `name` as text, `name_base64`, or `null`.
fn json_bytes(object: &Value, name: &str) -> Option<Vec<u8>> {
    if let Some(text) = object[name].as_str() {
        return Some(text.as_bytes().to_vec());
    }
    let b64 = object[format!("{name}_base64")].as_str()?;
    Some(decode_base64(b64))
}

fn decode_base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|&c| c != b'=') {
        bits = (bits << 6) | ALPHABET.iter().position(|&a| a == c).unwrap() as u32;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

/// Every record `logpipe dlq show --json` lists, in the console consumer's shape, with its
/// context fields; and what it said on stderr.
fn dlq_show(config: &Config) -> (Vec<(Printed, Value)>, String) {
    let out = logpipe()
        .args(["dlq", "show", "--json", "--limit", "0"])
        .args(["--kafka-brokers", &kafka_brokers()])
        .args([
            "--set",
            &format!("kafka.dlq_topic={}", config.kafka.dlq_topic),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "logpipe dlq show failed: {stderr}");
    let records: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut shown: Vec<(Printed, Value)> = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let headers = r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    let value = json_bytes(h, "value").expect("header value");
                    (
                        h["name"].as_str().unwrap().to_string(),
                        String::from_utf8(value).unwrap(),
                    )
                })
                .collect();
            let printed = Printed {
                partition: r["dlq_partition"].as_i64().unwrap() as i32,
                offset: r["dlq_offset"].as_i64().unwrap(),
                headers,
                key: json_bytes(r, "key"),
                value: json_bytes(r, "value"),
            };
            (printed, r.clone())
        })
        .collect();
    shown.sort_by(|a, b| a.0.cmp(&b.0));
    (shown, stderr)
}

fn dlq_context(topic: &str, class: ErrorClass, error_type: &str, n: i64) -> DlqContext {
    let failed = chrono::DateTime::parse_from_rfc3339("2026-01-15T08:00:00Z")
        .unwrap()
        .with_timezone(&chrono::Utc)
        + chrono::Duration::seconds(n);
    DlqContext {
        original_topic: topic.into(),
        original_partition: (n % 12) as i32,
        original_offset: 5000 + n,
        original_timestamp_ms: (n % 2 == 0).then_some(1_768_464_000_000 + n),
        consumer_group: "log-processor-group".into(),
        instance_id: "it-host-7-0".into(),
        class,
        error_type: error_type.into(),
        error_message: format!("{error_type}: attempt failed (record {n})"),
        attempts: if class == ErrorClass::Poison { 1 } else { 4 },
        first_failure: failed - chrono::Duration::seconds(3),
        last_failure: failed,
        version: "0.1.0".into(),
        replay_count: (n % 3) as u32,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_kafka_tools_dlq_show_matches_console_consumer() {
    let config = setup(3).await;
    let brokers = kafka_brokers();
    let dlq = config.kafka.dlq_topic.clone();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "20")
        .create()
        .unwrap();
    // Batched records across the DLQ's 3 partitions: text and binary keys and values, a record
    // without key or value, carried headers, replay counts, and one record that is not a DLQ
    // record (no headers: the console consumer prints it, show leaves it out and says so).
    let mut sends = Vec::new();
    for n in 0..24i64 {
        let (class, error_type) = match n % 4 {
            0 => (ErrorClass::Poison, "invalid_json"),
            1 => (ErrorClass::Poison, "invalid_utf8"),
            2 => (ErrorClass::Exhausted, "store_rejected"),
            _ => (ErrorClass::Exhausted, "step:enrich"),
        };
        let context = dlq_context(&config.kafka.topic, class, error_type, n);
        let request_id = format!("req-{n}");
        let carried: Vec<(&str, &[u8])> = if n % 2 == 1 {
            vec![(logpipe::kafka::headers::REQUEST_ID, request_id.as_bytes())]
        } else {
            Vec::new()
        };
        let headers = context.to_headers(&carried);
        let key: Option<Vec<u8>> = match n % 3 {
            0 => Some(format!("svc-{n}").into_bytes()),
            1 => Some(vec![0xfe, n as u8, 0x00]),
            _ => None,
        };
        let value: Option<Vec<u8>> = match n % 5 {
            0 => Some(format!("{{\"n\":{n},\"message\":\"tab\\there\"}}").into_bytes()),
            1 => Some(vec![0xff, 0x00, n as u8, b'\n']),
            2 => None,
            _ => Some(format!("line one\nline two {n}\r\n").into_bytes()),
        };
        sends.push(((n % 3) as i32, key, value, headers));
    }
    let futures = sends.iter().map(|(partition, key, value, headers)| {
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&dlq)
            .partition(*partition)
            .headers(headers.clone());
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(value) = value {
            record = record.payload(value);
        }
        producer.send(record, Duration::from_secs(10))
    });
    for sent in futures::future::join_all(futures).await {
        sent.expect("DLQ record acknowledged");
    }
    let stray = OwnedHeaders::new().insert(Header {
        key: "unrelated",
        value: Some(&b"x"[..]),
    });
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(&dlq)
                .partition(1)
                .payload(&b"not a DLQ record"[..])
                .headers(stray),
            Duration::from_secs(10),
        )
        .await
        .expect("stray record acknowledged");

    let total = sends.len() + 1;
    let printed = tokio::task::spawn_blocking(move || console_consumer(&dlq, total))
        .await
        .unwrap();
    assert_eq!(printed.len(), total, "{printed:#?}");
    let (shown, stderr) = tokio::task::spawn_blocking({
        let config = config.clone();
        move || dlq_show(&config)
    })
    .await
    .unwrap();

    // The same records, headers in the same order, the same key and value bytes; only the
    // record without DLQ headers is left out, and stderr says so.
    let readable: Vec<&Printed> = printed
        .iter()
        .filter(|p| p.headers.iter().any(|(k, _)| k == headers::ERROR_CLASS))
        .collect();
    assert_eq!(readable.len(), total - 1);
    let ours: Vec<&Printed> = shown.iter().map(|(p, _)| p).collect();
    assert_eq!(
        ours, readable,
        "logpipe dlq show (left) vs the console consumer (right)"
    );
    assert!(
        stderr.contains(&format!(
            "{} of {} matching records shown",
            total - 1,
            total - 1
        )) && stderr.contains(&format!("{total} records in"))
            && stderr.contains("1 unreadable records left out"),
        "{stderr}"
    );
    // The context show reports is what the headers say.
    for (p, json) in &shown {
        let header = |name: &str| {
            p.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            json["class"].as_str(),
            header(headers::ERROR_CLASS).as_deref()
        );
        assert_eq!(
            json["error_type"].as_str(),
            header(headers::ERROR_TYPE).as_deref()
        );
        assert_eq!(
            json["error_message"].as_str(),
            header(headers::ERROR_MESSAGE).as_deref()
        );
        assert_eq!(
            json["original_topic"].as_str(),
            header(headers::ORIGINAL_TOPIC).as_deref()
        );
        assert_eq!(
            json["original_partition"].to_string(),
            header(headers::ORIGINAL_PARTITION).unwrap()
        );
        assert_eq!(
            json["original_offset"].to_string(),
            header(headers::ORIGINAL_OFFSET).unwrap()
        );
        let time = |text: &str| chrono::DateTime::parse_from_rfc3339(text).unwrap();
        assert_eq!(
            time(json["last_failure"].as_str().unwrap()),
            time(&header(headers::LAST_FAILURE).unwrap())
        );
        assert_eq!(
            json["replay_count"].as_u64().unwrap().to_string(),
            header(headers::REPLAY_COUNT).unwrap_or_else(|| "0".into())
        );
    }
}
