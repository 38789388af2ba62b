//! `logpipe dlq stats | show | replay` against the Apache Kafka cluster `scripts/test.sh` starts
//! (address in LOGPIPE_TEST_KAFKA_BROKERS). Each test has topics and a replay group of its own
//! and writes synthetic DLQ records with [`DlqContext::to_headers`], in batches as producers do.
//! `kafka_tools` compares `dlq show` with Kafka's console consumer.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use logpipe::config::Config;
use logpipe::dlq::tools::{
    replay, show, stats, Action, DlqScan, Filter, ReplayOptions, ReplayReport,
};
use logpipe::dlq::{headers, DlqContext, ErrorClass};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{kafka_brokers, logpipe, test_config, unique};

/// A config with topics (main, DLQ, parked) and a replay group of its own, created on the broker.
async fn setup() -> Config {
    let mut config = test_config(&kafka_brokers());
    config.dlq.replay_group = unique("it-replay");
    crate::support::create_topics(&config).await;
    config
}

/// Minute `minute` of the tests' time line, counted from the start of yesterday's hour, not from a fixed date: replay keeps a record's
/// original Kafka timestamp, and the broker's time retention (7 days by default) deletes records
/// whose timestamps are older, within its next check (seen: replayed records gone from the main
/// topic before the test read them back).
fn time(minute: i64) -> DateTime<Utc> {
    use chrono::{DurationRound, TimeDelta};
    (Utc::now() - TimeDelta::days(1))
        .duration_trunc(TimeDelta::hours(1))
        .unwrap()
        + chrono::Duration::minutes(minute)
}

/// A DLQ context failing at minute `minute` (after the hour `time` counts from).
fn context(topic: &str, class: ErrorClass, error_type: &str, minute: i64) -> DlqContext {
    DlqContext {
        original_topic: topic.into(),
        original_partition: (minute % 12) as i32,
        original_offset: 1000 + minute,
        original_timestamp_ms: Some(time(minute).timestamp_millis() - 5_000),
        consumer_group: "log-processor-group".into(),
        instance_id: "it-host-1-0".into(),
        class,
        error_type: error_type.into(),
        error_message: format!("{error_type} failed at minute {minute}"),
        attempts: if class == ErrorClass::Poison { 1 } else { 4 },
        first_failure: time(minute) - chrono::Duration::seconds(7),
        last_failure: time(minute),
        version: "0.1.0".into(),
        replay_count: 0,
    }
}

struct Writer {
    producer: FutureProducer,
    topic: String,
    next_partition: i32,
}

impl Writer {
    fn new(config: &Config) -> Writer {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", &config.kafka.brokers)
            .set("linger.ms", "0")
            .create()
            .expect("test producer");
        Writer {
            producer,
            topic: config.kafka.dlq_topic.clone(),
            next_partition: 0,
        }
    }

    /// Writes one DLQ record, round-robin over the DLQ's 3 partitions.
    async fn put(&mut self, key: Option<&[u8]>, value: &[u8], headers: OwnedHeaders) {
        let partition = self.next_partition;
        self.next_partition = (self.next_partition + 1) % 3;
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.topic)
            .partition(partition)
            .payload(value)
            .headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .expect("DLQ record acknowledged");
    }

    async fn dlq(&mut self, context: &DlqContext, key: Option<&[u8]>, value: &[u8]) {
        self.put(key, value, context.to_headers(&[])).await;
    }
}

/// A record read back, bytes as they are.
#[derive(Debug, Clone)]
struct Raw {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp_ms: Option<i64>,
    owned_headers: OwnedHeaders,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap())
    }
}

/// Every record of `topic`, read from the beginning until `expected` arrived (or 20 s passed),
/// then `settle` more to catch extras.
async fn read_raw(config: &Config, topic: &str, expected: usize, settle: Duration) -> Vec<Raw> {
    let bootstrap = config.kafka.brokers.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", unique("it-dlq-reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader");
        // Every partition with a leader: a metadata answer in the middle of a leader election
        // lists a partition with an error (or none), and assigning only the others would read
        // too little.
        let wait = Instant::now() + Duration::from_secs(15);
        let partitions: Vec<i32> = loop {
            let metadata = consumer
                .fetch_metadata(Some(&topic), Duration::from_secs(10))
                .expect("metadata");
            let t = &metadata.topics()[0];
            let ready = t.error().is_none()
                && !t.partitions().is_empty()
                && t.partitions()
                    .iter()
                    .all(|p| p.error().is_none() && p.leader() >= 0);
            if ready {
                break t.partitions().iter().map(|p| p.id()).collect();
            }
            assert!(
                Instant::now() < wait,
                "topic {topic} has no leader for every partition after 15 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(45);
        let mut until: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if now > deadline || until.is_some_and(|t| now > t) {
                break;
            }
            if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                let owned = m.headers().map(|h| h.detach()).unwrap_or_default();
                out.push(Raw {
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: owned
                        .iter()
                        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
                        .collect(),
                    timestamp_ms: m.timestamp().to_millis(),
                    owned_headers: owned,
                });
            }
            if out.len() >= expected && until.is_none() {
                until = Some(Instant::now() + settle);
            }
        }
        if out.len() < expected {
            // What the broker holds, to tell a slow read from records that are not there.
            for e in tpl.elements() {
                let marks =
                    consumer.fetch_watermarks(&topic, e.partition(), Duration::from_secs(5));
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|p| p.find_partition(&topic, e.partition()).map(|x| x.offset()));
                eprintln!(
                    "read_raw {topic}/{}: watermarks {marks:?}, position {position:?}",
                    e.partition()
                );
            }
        }
        out
    })
    .await
    .unwrap()
}

fn options(filter: Filter) -> ReplayOptions {
    ReplayOptions {
        filter,
        ..ReplayOptions::default()
    }
}

async fn run_replay(config: &Config, options: &ReplayOptions) -> ReplayReport {
    let report = replay(config, options, CancellationToken::new())
        .await
        .expect("replay runs");
    assert_eq!(report.failure, None, "{report:#?}");
    report
}

#[tokio::test]
async fn external_dlq_stats_counts_by_class_type_and_topic_and_reports_unreadable() {
    let config = setup().await;
    let mut w = Writer::new(&config);
    for minute in [0, 1, 2] {
        let c = context("orders", ErrorClass::Poison, "invalid_json", minute);
        w.dlq(&c, Some(b"svc"), b"{not json").await;
    }
    for minute in [10, 20] {
        let c = context("orders", ErrorClass::Exhausted, "store_rejected", minute);
        w.dlq(&c, Some(b"svc"), b"{}").await;
    }
    let c = context("payments", ErrorClass::Exhausted, "step:enrich", 30);
    w.dlq(&c, None, b"{}").await;
    // Two records that are not DLQ records: no headers at all, and a header missing.
    w.put(None, b"stray", OwnedHeaders::new()).await;
    let partial = OwnedHeaders::new().insert(Header {
        key: headers::ORIGINAL_TOPIC,
        value: Some(&b"orders"[..]),
    });
    w.put(None, b"stray", partial).await;

    let s = stats(&config).await.unwrap();
    assert_eq!((s.total, s.readable, s.unreadable), (8, 6, 2), "{s:#?}");
    let classes: Vec<(ErrorClass, u64, DateTime<Utc>, DateTime<Utc>)> = s
        .by_class
        .iter()
        .map(|c| {
            (
                c.class,
                c.count,
                c.oldest_last_failure,
                c.newest_last_failure,
            )
        })
        .collect();
    assert_eq!(
        classes,
        vec![
            (ErrorClass::Poison, 3, time(0), time(2)),
            (ErrorClass::Exhausted, 3, time(10), time(30)),
        ]
    );
    type Row<'a> = (ErrorClass, &'a str, u64, DateTime<Utc>, DateTime<Utc>);
    let types: Vec<Row> = s
        .by_type
        .iter()
        .map(|t| {
            (
                t.class,
                t.error_type.as_str(),
                t.count,
                t.oldest_last_failure,
                t.newest_last_failure,
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            (ErrorClass::Poison, "invalid_json", 3, time(0), time(2)),
            (
                ErrorClass::Exhausted,
                "store_rejected",
                2,
                time(10),
                time(20)
            ),
            (ErrorClass::Exhausted, "step:enrich", 1, time(30), time(30)),
        ]
    );
    let topics: Vec<(&str, u64)> = s
        .by_original_topic
        .iter()
        .map(|t| (t.topic.as_str(), t.count))
        .collect();
    assert_eq!(topics, vec![("orders", 5), ("payments", 1)]);
    let mut reasons: Vec<(String, u64)> = s
        .unreadable_reasons
        .iter()
        .map(|u| (u.reason.clone(), u.count))
        .collect();
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons[0].0.contains(headers::ERROR_CLASS),
        "the reason names the missing header: {reasons:?}"
    );
    assert_eq!(reasons[1].0, "no headers");
    assert_eq!(s.partitions.iter().map(|p| p.records).sum::<u64>(), 8);
}

#[tokio::test]
async fn external_dlq_show_filters_by_class_type_and_time_and_keeps_bytes() {
    let config = setup().await;
    let mut w = Writer::new(&config);
    for minute in [0, 1, 2] {
        let c = context("orders", ErrorClass::Poison, "invalid_utf8", minute);
        w.dlq(&c, Some(&[0xfe, 0x01]), &[0xff, 0x00, minute as u8])
            .await;
    }
    for (minute, error_type) in [
        (10, "store_rejected"),
        (20, "step:enrich"),
        (30, "step:geo"),
    ] {
        let c = context("orders", ErrorClass::Exhausted, error_type, minute);
        w.dlq(
            &c,
            Some(b"checkout"),
            format!("{{\"minute\":{minute}}}").as_bytes(),
        )
        .await;
    }

    let minutes = |records: &[logpipe::dlq::tools::DlqRecord]| -> Vec<i64> {
        records
            .iter()
            .map(|r| (r.context.last_failure - time(0)).num_minutes())
            .collect()
    };
    let all = show(&config, &Filter::default(), 50).await.unwrap();
    assert_eq!((all.matched, all.scanned), (6, 6));
    assert_eq!(minutes(&all.records), vec![0, 1, 2, 10, 20, 30]);

    let poison = Filter {
        class: Some(ErrorClass::Poison),
        ..Filter::default()
    };
    let shown = show(&config, &poison, 50).await.unwrap();
    assert_eq!(minutes(&shown.records), vec![0, 1, 2]);

    let steps = Filter {
        error_type: Some("step:*".into()),
        ..Filter::default()
    };
    assert_eq!(
        minutes(&show(&config, &steps, 50).await.unwrap().records),
        vec![20, 30]
    );
    let exact = Filter {
        error_type: Some("step:geo".into()),
        ..Filter::default()
    };
    assert_eq!(
        minutes(&show(&config, &exact, 50).await.unwrap().records),
        vec![30]
    );

    let window = Filter {
        since: Some(time(1)),
        until: Some(time(20)),
        ..Filter::default()
    };
    assert_eq!(
        minutes(&show(&config, &window, 50).await.unwrap().records),
        vec![1, 2, 10]
    );

    // --limit keeps the most recent matches and says how many matched.
    let limited = show(&config, &Filter::default(), 2).await.unwrap();
    assert_eq!(limited.matched, 6);
    assert_eq!(minutes(&limited.records), vec![20, 30]);

    // JSON: binary key and value as base64, UTF-8 as text, every context field present.
    let first = all.records[0].to_json();
    assert_eq!(first["key_base64"], "/gE=");
    assert_eq!(first["value_base64"], "/wAA");
    assert_eq!(first["class"], "poison");
    assert_eq!(first["error_type"], "invalid_utf8");
    assert_eq!(first["attempts"], 1);
    let last = all.records[5].to_json();
    assert_eq!(last["key"], "checkout");
    assert_eq!(last["value"], "{\"minute\":30}");
    assert!(last["headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h["name"] == headers::LAST_FAILURE));
}

#[tokio::test]
async fn external_dlq_replay_republishes_bytes_unchanged_once_and_tracks_group_progress() {
    let config = setup().await;
    let topic = config.kafka.topic.clone();
    let mut w = Writer::new(&config);
    // (key, value, carried headers)
    let originals: Vec<(Option<Vec<u8>>, Vec<u8>, bool)> = vec![
        (
            Some(b"checkout".to_vec()),
            br#"{"service":"checkout","level":"ERROR","message":"a"}"#.to_vec(),
            true,
        ),
        (None, b"plain text, no key".to_vec(), false),
        (
            Some(vec![0x00, 0xff, 0x10]),
            vec![0xde, 0xad, 0xbe, 0xef],
            true,
        ),
        (
            Some(b"billing".to_vec()),
            b"\n\t trailing whitespace \r\n".to_vec(),
            false,
        ),
    ];
    for (i, (key, value, carried)) in originals.iter().enumerate() {
        let c = context(&topic, ErrorClass::Exhausted, "store_rejected", i as i64);
        let request_id = format!("req-{i}");
        let headers = if *carried {
            c.to_headers(&[
                (logpipe::kafka::headers::INGEST_TIME_MS, b"1768464000000"),
                (logpipe::kafka::headers::REQUEST_ID, request_id.as_bytes()),
            ])
        } else {
            c.to_headers(&[])
        };
        w.put(key.as_deref(), value, headers).await;
    }

    let first = run_replay(&config, &options(Filter::default())).await;
    assert_eq!(
        (first.replayed, first.parked, first.skipped_by_filter),
        (4, 0, 0),
        "{first:#?}"
    );
    assert!(first.unreadable.is_empty());
    assert_eq!(
        first.committed.values().sum::<i64>(),
        4,
        "the next offset of each DLQ partition is committed: {first:#?}"
    );

    let replayed = read_raw(&config, &topic, 4, Duration::from_millis(500)).await;
    assert_eq!(replayed.len(), 4, "{replayed:#?}");
    for (i, (key, value, carried)) in originals.iter().enumerate() {
        let r = replayed
            .iter()
            .find(|r| r.key == *key && r.value.as_ref() == Some(value))
            .unwrap_or_else(|| panic!("record {i} not republished byte for byte: {replayed:#?}"));
        assert_eq!(r.header(headers::REPLAY_COUNT), Some("1"));
        assert!(
            r.headers
                .iter()
                .all(|(k, _)| !k.starts_with("logpipe-dlq-")),
            "no DLQ headers on the original topic: {:?}",
            r.headers
        );
        if *carried {
            assert_eq!(
                r.header(logpipe::kafka::headers::REQUEST_ID),
                Some(format!("req-{i}").as_str())
            );
            assert_eq!(
                r.header(logpipe::kafka::headers::INGEST_TIME_MS),
                Some("1768464000000")
            );
        } else {
            assert_eq!(r.headers.len(), 1, "{:?}", r.headers);
        }
        assert_eq!(
            r.timestamp_ms,
            Some(time(i as i64).timestamp_millis() - 5_000),
            "the original Kafka timestamp is kept"
        );
    }

    // The group remembers how far the DLQ was reviewed: nothing to do the second time.
    let second = run_replay(&config, &options(Filter::default())).await;
    assert_eq!(
        (second.replayed, second.parked, second.skipped_by_filter),
        (0, 0, 0),
        "{second:#?}"
    );

    // New failures: a filter replays the matching one and reviews (commits past) the other.
    let c = context(&topic, ErrorClass::Poison, "invalid_json", 40);
    w.dlq(&c, Some(b"k"), b"{bad").await;
    let c = context(&topic, ErrorClass::Exhausted, "store_rejected", 41);
    w.dlq(&c, Some(b"k"), b"{}").await;
    let exhausted = Filter {
        class: Some(ErrorClass::Exhausted),
        ..Filter::default()
    };
    let filtered = run_replay(&config, &options(exhausted)).await;
    assert_eq!(
        (filtered.replayed, filtered.skipped_by_filter),
        (1, 1),
        "{filtered:#?}"
    );
    assert_eq!(filtered.actions[0].error_type, "store_rejected");
    let after = run_replay(&config, &options(Filter::default())).await;
    assert_eq!(
        (after.replayed, after.skipped_by_filter),
        (0, 0),
        "the skipped record was reviewed: {after:#?}"
    );
    // --from-beginning reviews everything again (dry, so nothing changes).
    let again = run_replay(
        &config,
        &ReplayOptions {
            dry_run: true,
            from_beginning: true,
            ..ReplayOptions::default()
        },
    )
    .await;
    assert_eq!(again.replayed, 6, "{again:#?}");
    assert_eq!(
        read_raw(&config, &topic, 5, Duration::from_secs(1))
            .await
            .len(),
        5
    );
}

#[tokio::test]
async fn external_dlq_replay_parks_records_replayed_max_times_with_their_headers() {
    let config = setup().await;
    assert_eq!(config.dlq.max_replays, 3);
    let topic = config.kafka.topic.clone();
    let mut w = Writer::new(&config);
    let tired = DlqContext {
        replay_count: 3,
        ..context(&topic, ErrorClass::Exhausted, "store_rejected", 1)
    };
    w.put(
        Some(b"tired"),
        b"{\"n\":1}",
        tired.to_headers(&[(logpipe::kafka::headers::REQUEST_ID, b"req-tired")]),
    )
    .await;
    let once_more = DlqContext {
        replay_count: 2,
        ..context(&topic, ErrorClass::Exhausted, "store_rejected", 2)
    };
    w.dlq(&once_more, Some(b"again"), b"{\"n\":2}").await;

    let report = run_replay(
        &config,
        &ReplayOptions {
            rate: Some(20.0),
            ..ReplayOptions::default()
        },
    )
    .await;
    assert_eq!((report.replayed, report.parked), (1, 1), "{report:#?}");
    let park = report
        .actions
        .iter()
        .find(|a| a.action == Action::Park)
        .unwrap();
    assert_eq!(park.destination, config.kafka.parked_topic);
    assert_eq!(park.replay_count, 4);

    let parked = read_raw(
        &config,
        &config.kafka.parked_topic,
        1,
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(parked.len(), 1, "{parked:#?}");
    let p = &parked[0];
    assert_eq!(p.key.as_deref(), Some(&b"tired"[..]));
    assert_eq!(p.value.as_deref(), Some(&b"{\"n\":1}"[..]));
    let back = DlqContext::from_headers(&p.owned_headers).expect("DLQ headers kept");
    assert_eq!(
        back,
        DlqContext {
            replay_count: 4,
            ..tired
        }
    );
    assert_eq!(
        p.header(logpipe::kafka::headers::REQUEST_ID),
        Some("req-tired")
    );
    assert_eq!(
        p.headers
            .iter()
            .filter(|(k, _)| k == headers::REPLAY_COUNT)
            .count(),
        1
    );

    let replayed = read_raw(&config, &topic, 1, Duration::from_millis(500)).await;
    assert_eq!(replayed.len(), 1, "{replayed:#?}");
    assert_eq!(replayed[0].key.as_deref(), Some(&b"again"[..]));
    assert_eq!(replayed[0].header(headers::REPLAY_COUNT), Some("3"));
}

#[tokio::test]
async fn external_dlq_replay_dry_run_produces_and_commits_nothing() {
    let config = setup().await;
    let topic = config.kafka.topic.clone();
    let mut w = Writer::new(&config);
    for minute in 0..3 {
        let c = context(&topic, ErrorClass::Exhausted, "store_rejected", minute);
        w.dlq(&c, Some(b"k"), b"{}").await;
    }
    let parked = DlqContext {
        replay_count: 5,
        ..context(&topic, ErrorClass::Poison, "invalid_json", 9)
    };
    w.dlq(&parked, Some(b"k"), b"{").await;

    let dry = run_replay(
        &config,
        &ReplayOptions {
            dry_run: true,
            ..ReplayOptions::default()
        },
    )
    .await;
    assert_eq!((dry.replayed, dry.parked), (3, 1), "{dry:#?}");
    assert_eq!(dry.actions.len(), 4);
    assert!(dry.committed.is_empty());

    // Nothing published, nothing committed.
    assert!(read_raw(&config, &topic, 0, Duration::from_secs(2))
        .await
        .is_empty());
    let scan = DlqScan::open(
        &config,
        &config.kafka.brokers,
        Some(&config.dlq.replay_group),
        false,
    )
    .await
    .unwrap();
    assert!(scan.committed().await.unwrap().is_empty());
    drop(scan);

    // So the real run still does everything.
    let real = run_replay(&config, &ReplayOptions::default()).await;
    assert_eq!((real.replayed, real.parked), (3, 1), "{real:#?}");
}

#[test]
fn external_dlq_cli_stats_json() {
    let brokers = kafka_brokers();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = runtime.block_on(setup());
    let mut w = Writer::new(&config);
    runtime.block_on(async {
        w.dlq(
            &context("orders", ErrorClass::Poison, "invalid_json", 0),
            None,
            b"{",
        )
        .await;
        w.dlq(
            &context("orders", ErrorClass::Exhausted, "step:enrich", 1),
            None,
            b"{}",
        )
        .await;
    });
    let out = logpipe()
        .args(["dlq", "stats", "--json", "--kafka-brokers", &brokers])
        .args([
            "--set",
            &format!("kafka.dlq_topic={}", config.kafka.dlq_topic),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["total"], 2);
    assert_eq!(json["by_class"][0]["class"], "poison");
    assert_eq!(json["by_type"][1]["error_type"], "step:enrich");

    let out = logpipe()
        .args([
            "dlq",
            "show",
            "--class",
            "exhausted",
            "--kafka-brokers",
            &brokers,
        ])
        .args([
            "--set",
            &format!("kafka.dlq_topic={}", config.kafka.dlq_topic),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("step:enrich") && !stdout.contains("invalid_json"),
        "{stdout}"
    );
}

#[test]
fn dlq_help_texts_have_content() {
    for sub in ["stats", "show", "replay"] {
        let out = logpipe().args(["dlq", sub, "--help"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "dlq {sub} --help");
        assert!(stdout.len() > 200, "dlq {sub} help is too thin:\n{stdout}");
    }
    let out = logpipe()
        .args(["dlq", "replay", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--dry-run",
        "--rate",
        "--from-beginning",
        "--class",
        "--type",
        "--since",
        "--until",
        "--limit",
    ] {
        assert!(help.contains(flag), "replay help lacks {flag}");
    }
}

#[test]
fn dlq_commands_need_brokers_and_say_so() {
    for sub in ["stats", "show", "replay"] {
        let out = logpipe().args(["dlq", sub]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains("--kafka-brokers"), "{stderr}");
    }
    let out = logpipe()
        .args(["dlq", "show", "--class", "fatal"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("poison") && stderr.contains("exhausted"),
        "{stderr}"
    );
}

/// Writes `n` DLQ records to DLQ partition `partition` in as few produce batches as possible.
async fn write_batched(config: &Config, partition: i32, n: usize, context: &DlqContext) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("linger.ms", "50")
        .create()
        .unwrap();
    let values: Vec<String> = (0..n).map(|i| format!("{partition}-{i}")).collect();
    let sends = values.iter().map(|v| {
        producer.send(
            FutureRecord::<[u8], [u8]>::to(&config.kafka.dlq_topic)
                .partition(partition)
                .payload(v.as_bytes())
                .headers(context.to_headers(&[])),
            Duration::from_secs(10),
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.expect("DLQ record acknowledged");
    }
}

/// Partitions written in multi-record batches are read to their end: the high watermark at the
/// start of the scan is the exact end, and every record below it is read once.
#[tokio::test]
async fn external_dlq_scan_reads_batched_partitions_to_their_end() {
    let config = setup().await;
    let c = context("orders", ErrorClass::Poison, "invalid_json", 0);
    for partition in 0..3 {
        write_batched(&config, partition, 100, &c).await;
    }
    let s = stats(&config).await.unwrap();
    assert_eq!(s.total, 300, "{:?}", s.partitions);
    for p in &s.partitions {
        assert_eq!(
            (
                p.start_offset,
                p.high_watermark_at_start,
                p.end_offset,
                p.records
            ),
            (0, 100, 100, 100),
            "{p:?}"
        );
    }
}

/// A replay that resumes from a committed offset inside a multi-record batch replays exactly the
/// rest of the partition, once.
#[tokio::test]
async fn external_dlq_replay_resuming_inside_a_batch_skips_nothing() {
    let config = setup().await;
    let topic = config.kafka.topic.clone();
    let c = context(&topic, ErrorClass::Exhausted, "store_rejected", 0);
    write_batched(&config, 0, 30, &c).await;
    let first = run_replay(
        &config,
        &ReplayOptions {
            limit: Some(10),
            ..ReplayOptions::default()
        },
    )
    .await;
    assert_eq!(first.replayed, 10);
    assert!(first.limit_reached);
    assert_eq!(first.committed.get(&0), Some(&10), "{first:#?}");
    let second = run_replay(&config, &ReplayOptions::default()).await;
    let offsets: Vec<i64> = second.actions.iter().map(|a| a.dlq_offset).collect();
    assert_eq!(offsets, (10..30).collect::<Vec<_>>(), "{second:#?}");
    assert_eq!(second.committed.get(&0), Some(&30));
    let back = read_raw(&config, &topic, 30, Duration::from_millis(500)).await;
    let mut values: Vec<String> = back
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap()).unwrap())
        .collect();
    values.sort();
    values.dedup();
    assert_eq!((back.len(), values.len()), (30, 30), "{values:?}");
}
