//! `logpipe lag` against the Apache Kafka cluster `scripts/test.sh` starts (address in
//! LOGPIPE_TEST_KAFKA_BROKERS): exact offsets and members of a running logpipe consumer,
//! statuses driven by committing offsets by hand, an unknown group, and the binary with `--json`
//! and `--fail-on`. Records are produced in batches, as producers do: Kafka's log end is exact
//! whatever the batching. `kafka_tools` compares the same reports with `kafka-consumer-groups`.

use std::collections::BTreeMap;
use std::time::Duration;

use logpipe::app::{App, Roles};
use logpipe::config::Config;
use logpipe::lag::{
    build_report, measure, threshold_reached, LagReader, LagReport, PartitionLag, Snapshot, Status,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::support::{
    commit_offsets, create_topics, eventually, external_config, kafka_brokers, logpipe,
    test_config, unique, IdleMember,
};

/// A config with a topic of `partitions` partitions (and the DLQ topics) created on the broker,
/// and a group of its own.
async fn setup(partitions: i32) -> Config {
    let mut config = test_config(&kafka_brokers());
    config.kafka.partitions = partitions;
    create_topics(&config).await;
    config
}

/// Writes `n` valid log events to `partition` of the main topic, batched.
async fn produce(config: &Config, partition: i32, n: usize) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka.brokers)
        .set("linger.ms", "20")
        .create()
        .unwrap();
    let key = format!("k{partition}");
    let values: Vec<String> = (0..n)
        .map(|i| {
            serde_json::json!({
                "timestamp": chrono::Utc::now().to_rfc3339(),
                "service": "lag-test",
                "level": "info",
                "message": format!("record {i} of partition {partition}"),
            })
            .to_string()
        })
        .collect();
    let sends = values.iter().map(|value| {
        producer.send(
            FutureRecord::<str, str>::to(&config.kafka.topic)
                .partition(partition)
                .key(&key)
                .payload(value),
            Duration::from_secs(10),
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.expect("record acknowledged");
    }
}

/// Waits until DescribeGroups shows the group Stable with exactly one member.
async fn wait_stable_with_one_member(reader: &LagReader) {
    eventually(
        Duration::from_secs(30),
        "the group is Stable with one member",
        || {
            let reader = reader.clone();
            async move {
                let s = reader.snapshot().await.unwrap();
                s.group
                    .is_ok_and(|g| g.state == "Stable" && g.members.len() == 1)
            }
        },
    )
    .await;
}

fn row(report: &LagReport, partition: i32) -> &PartitionLag {
    report
        .partitions
        .iter()
        .find(|p| p.partition == partition)
        .unwrap_or_else(|| panic!("no row for partition {partition}: {report:#?}"))
}

/// (current, end, lag) per partition.
fn offsets(report: &LagReport) -> BTreeMap<i32, (Option<i64>, i64, Option<i64>)> {
    report
        .partitions
        .iter()
        .map(|p| (p.partition, (p.current_offset, p.log_end_offset, p.lag)))
        .collect()
}

async fn report_of(reader: &LagReader, window: &[Snapshot]) -> LagReport {
    let seconds = reader
        .lag_seconds(window.last().unwrap(), logpipe::lag::LAG_SECONDS_BUDGET)
        .await;
    build_report(reader.group(), window, &seconds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_lag_of_a_logpipe_consumer_is_exact_and_lists_its_member() {
    let mut config = external_config().await;
    config.kafka.partitions = 3;
    create_topics(&config).await;
    let counts = [5usize, 3, 1];
    for (partition, n) in counts.iter().enumerate() {
        produce(&config, partition as i32, *n).await;
    }
    let app = App::start(config.clone(), Roles::Consumer)
        .await
        .expect("consumer starts");
    let reader = LagReader::new(&config, &config.consumer.group_id, &[]).unwrap();
    eventually(
        Duration::from_secs(60),
        "the consumer committed every record",
        || {
            let reader = reader.clone();
            async move {
                let s = reader.snapshot().await.unwrap();
                s.offsets.values().all(|o| o.committed == Some(o.end))
            }
        },
    )
    .await;
    wait_stable_with_one_member(&reader).await;

    let report = measure(&reader, 2, Duration::from_millis(300))
        .await
        .unwrap();
    eprintln!("{}", logpipe::lag::render(&report));
    assert_eq!(
        offsets(&report),
        BTreeMap::from([
            (0, (Some(5), 5, Some(0))),
            (1, (Some(3), 3, Some(0))),
            (2, (Some(1), 1, Some(0))),
        ]),
        "{report:#?}"
    );
    assert_eq!(report.state.as_deref(), Some("Stable"));
    assert_eq!(report.members.len(), 1, "{report:#?}");
    let member = &report.members[0];
    // A classic member id is the client id plus a broker-made suffix.
    assert!(
        member.consumer_id.starts_with("logpipe-consumer-"),
        "{member:?}"
    );
    for p in &report.partitions {
        assert_eq!(p.topic, config.kafka.topic);
        assert_eq!(p.group, config.consumer.group_id);
        assert_eq!(p.status, Some(Status::Ok));
        assert_eq!(p.lag_seconds, Some(0.0));
    }
    // The assignment names the owner of every partition.
    assert_eq!(report.protocol.as_deref(), Some("cooperative-sticky"));
    let client_id = member.client_id.as_deref().unwrap();
    assert!(client_id.starts_with("logpipe-consumer-"), "{member:?}");
    assert_eq!(member.host.as_deref(), Some("/127.0.0.1"), "{member:?}");
    for p in &report.partitions {
        assert_eq!(p.consumer_id.as_ref(), Some(&member.consumer_id));
        assert_eq!(p.client_id.as_deref(), Some(client_id));
        assert_eq!(p.host, member.host);
    }
    assert!(report.notes.is_empty(), "{:?}", report.notes);
    assert_eq!(report.summary.total_lag, 0);
    assert_eq!(report.summary.worst_status, Some(Status::Ok));

    // The consumer stops; records keep arriving on partition 0: lag 4 there, nobody owns it.
    app.shutdown().await.unwrap();
    produce(&config, 0, 4).await;
    eventually(Duration::from_secs(30), "the group is empty", || {
        let reader = reader.clone();
        async move {
            let s = reader.snapshot().await.unwrap();
            s.group.is_ok_and(|g| g.members.is_empty())
        }
    })
    .await;
    let report = measure(&reader, 3, Duration::from_millis(300))
        .await
        .unwrap();
    eprintln!("{}", logpipe::lag::render(&report));
    assert_eq!(
        offsets(&report),
        BTreeMap::from([
            (0, (Some(5), 9, Some(4))),
            (1, (Some(3), 3, Some(0))),
            (2, (Some(1), 1, Some(0))),
        ]),
        "{report:#?}"
    );
    let p0 = row(&report, 0);
    assert_eq!(p0.status, Some(Status::Stop), "{report:#?}");
    assert_eq!(p0.consumer_id, None);
    let age = p0.lag_seconds.expect("lag in seconds measured");
    assert!((0.0..60.0).contains(&age), "{age}");
    assert_eq!(row(&report, 1).status, Some(Status::Ok));
    assert_eq!(report.summary.total_lag, 4);
    assert_eq!(report.summary.max_lag, 4);
    assert_eq!(report.state.as_deref(), Some("Empty"));
    assert!(report.members.is_empty());
}

/// Statuses from a window, driving the group's offsets by hand: STOP (empty group, offset
/// still), WARN (advancing, lag growing every sample), REWIND (offset back), STALL (a member owns
/// the partition and never commits).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_lag_statuses_follow_hand_committed_offsets() {
    let config = setup(2).await;
    let group = unique("it-lag-group");
    produce(&config, 0, 10).await;
    produce(&config, 1, 10).await;
    commit_offsets(
        &config.kafka.brokers,
        &group,
        &config.kafka.topic,
        &[(0, 10), (1, 4)],
    );
    let reader =
        LagReader::new(&config, &group, std::slice::from_ref(&config.kafka.topic)).unwrap();

    // Empty group, partition 1 stuck at 4 of 10.
    let s1 = reader.snapshot().await.unwrap();
    let s2 = reader.snapshot().await.unwrap();
    let report = report_of(&reader, &[s1, s2.clone()]).await;
    eprintln!("{}", logpipe::lag::render(&report));
    assert_eq!(
        offsets(&report),
        BTreeMap::from([(0, (Some(10), 10, Some(0))), (1, (Some(4), 10, Some(6)))])
    );
    assert_eq!(report.state.as_deref(), Some("Empty"), "{report:#?}");
    assert_eq!(row(&report, 0).status, Some(Status::Ok));
    assert_eq!(row(&report, 1).status, Some(Status::Stop));
    let age = row(&report, 1)
        .lag_seconds
        .expect("lag in seconds measured");
    assert!((0.0..60.0).contains(&age), "{age}");
    assert_eq!(row(&report, 0).lag_seconds, Some(0.0));
    assert_eq!(
        threshold_reached(&report, Status::Stop).map(|t| t.count),
        Some(1)
    );
    assert!(threshold_reached(&report, Status::Stall).is_none());

    // The committed offset goes back from 4 to 2.
    commit_offsets(
        &config.kafka.brokers,
        &group,
        &config.kafka.topic,
        &[(1, 2)],
    );
    let s3 = reader.snapshot().await.unwrap();
    let report = report_of(&reader, &[s2, s3.clone()]).await;
    assert_eq!(row(&report, 1).current_offset, Some(2));
    assert_eq!(row(&report, 1).status, Some(Status::Rewind));
    assert_eq!(report.summary.worst_status, Some(Status::Rewind));

    // Advancing, but the lag grows at every sample: 8 → 8+3-1 → ...
    let mut window = vec![s3];
    for step in 1..=3 {
        produce(&config, 1, 3).await;
        commit_offsets(
            &config.kafka.brokers,
            &group,
            &config.kafka.topic,
            &[(1, 2 + step)],
        );
        window.push(reader.snapshot().await.unwrap());
    }
    let report = report_of(&reader, &window).await;
    assert_eq!(row(&report, 1).lag, Some(19 - 5), "{report:#?}");
    assert_eq!(row(&report, 1).status, Some(Status::Warn), "{report:#?}");

    // A member joins, owns both partitions and never commits: STALL where there is lag.
    let member = IdleMember::join(
        &config.kafka.brokers,
        &group,
        &config.kafka.topic,
        "it-idle-member",
        "classic",
    );
    wait_stable_with_one_member(&reader).await;
    let report = measure(&reader, 3, Duration::from_millis(300))
        .await
        .unwrap();
    eprintln!("{}", logpipe::lag::render(&report));
    assert_eq!(row(&report, 1).status, Some(Status::Stall), "{report:#?}");
    assert_eq!(row(&report, 0).status, Some(Status::Ok));
    assert_eq!(report.members.len(), 1);
    assert!(report.members[0].consumer_id.starts_with("it-idle-member-"));
    assert_eq!(
        report.members[0].client_id.as_deref(),
        Some("it-idle-member")
    );
    assert_eq!(row(&report, 1).client_id.as_deref(), Some("it-idle-member"));
    assert_eq!(
        row(&report, 1).consumer_id.as_ref(),
        Some(&report.members[0].consumer_id)
    );
    let mut assigned: Vec<i32> = report.members[0]
        .assignment
        .iter()
        .flatten()
        .flat_map(|t| t.partitions.clone())
        .collect();
    assigned.sort_unstable();
    assert_eq!(assigned, vec![0, 1], "{report:#?}");
    drop(member);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_lag_unknown_group_says_so_and_lists_groups() {
    let config = setup(1).await;
    let known = unique("it-lag-known");
    produce(&config, 0, 2).await;
    commit_offsets(
        &config.kafka.brokers,
        &known,
        &config.kafka.topic,
        &[(0, 1)],
    );
    let missing = unique("it-lag-missing");
    let reader =
        LagReader::new(&config, &missing, std::slice::from_ref(&config.kafka.topic)).unwrap();
    let err = measure(&reader, 2, Duration::from_millis(100))
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains(&format!("consumer group `{missing}` is unknown")),
        "{text}"
    );
    assert!(text.contains("--group"), "{text}");
    assert!(text.contains(&known), "the known groups are listed: {text}");

    let reader = LagReader::new(&config, &known, &["no-such-topic-lag".to_string()]).unwrap();
    let err = reader.snapshot().await.unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("`no-such-topic-lag` does not exist") && text.contains("--topic"),
        "{text}"
    );
}

#[test]
fn external_lag_cli_json_and_fail_on() {
    let brokers = kafka_brokers();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = runtime.block_on(setup(2));
    let group = unique("it-lag-cli");
    runtime.block_on(async {
        produce(&config, 0, 3).await;
        produce(&config, 1, 2).await;
    });
    commit_offsets(
        &config.kafka.brokers,
        &group,
        &config.kafka.topic,
        &[(0, 3), (1, 1)],
    );
    let args = |extra: &[&str]| {
        let mut args = vec![
            "lag".to_string(),
            "--kafka-brokers".into(),
            brokers.clone(),
            "--group".into(),
            group.clone(),
            "--set".into(),
            format!("kafka.topic={}", config.kafka.topic),
            "--samples".into(),
            "2".into(),
            "--interval".into(),
            "200ms".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let out = logpipe().args(args(&["--json"])).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["group"], group.as_str());
    assert_eq!(json["window"]["samples"], 2);
    let parts = json["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{json:#}");
    assert_eq!(parts[0]["current_offset"], 3);
    assert_eq!(parts[0]["log_end_offset"], 3);
    assert_eq!(parts[0]["lag"], 0);
    assert_eq!(parts[0]["status"], "OK");
    assert_eq!(parts[1]["current_offset"], 1);
    assert_eq!(parts[1]["log_end_offset"], 2);
    assert_eq!(parts[1]["lag"], 1);
    assert_eq!(parts[1]["status"], "STOP");
    assert_eq!(parts[1]["consumer_id"], Value::Null);
    assert!(parts[1]["lag_seconds"].as_f64().is_some(), "{json:#}");
    assert_eq!(json["summary"]["total_lag"], 1);
    assert_eq!(json["summary"]["worst_status"], "STOP");

    // The table, and --fail-on: 3 at or past the threshold, 0 below it.
    let out = logpipe()
        .args(args(&["--fail-on", "warn"]))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("LOG-END-OFFSET") && stdout.contains("STOP"),
        "{stdout}"
    );
    assert!(stdout.contains("total lag 1"), "{stdout}");
    assert!(
        stderr.contains("1 partition(s) at or worse than WARN"),
        "{stderr}"
    );
    let out = logpipe()
        .args(args(&["--fail-on", "REWIND"]))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn lag_help_has_content_and_lag_needs_brokers() {
    let out = logpipe().args(["lag", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(help.len() > 200, "lag help is too thin:\n{help}");
    for word in [
        "--group",
        "--topic",
        "--samples",
        "--interval",
        "--watch",
        "--json",
        "--fail-on",
        "STALL",
        "REWIND",
    ] {
        assert!(help.contains(word), "lag help lacks {word}:\n{help}");
    }
    let out = logpipe().args(["lag"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr.contains("--kafka-brokers"), "{stderr}");
    let out = logpipe()
        .args(["lag", "--watch", "--fail-on", "STALL"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "--watch and --fail-on conflict");
    let out = logpipe().args(["lag", "--samples", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "a window needs 2 samples");
}
