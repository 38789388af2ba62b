//! Against a multi-broker Apache Kafka cluster (address in LOGPIPE_TEST_KAFKA_BROKERS, Kafka's jars
//! in LOGPIPE_TEST_KAFKA_LIBS): the replication logpipe gives the topics it creates, what
//! `topics describe --json` reports checked against Kafka's own `TopicCommand --describe`, and
//! `topics ensure` reporting an existing topic whose replication differs from the configuration.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde_json::Value;

use crate::support::{kafka_brokers, kafka_tool, logpipe, unique};

const TOPIC_COMMAND: &str = "org.apache.kafka.tools.TopicCommand";

/// Topic names of one test, passed to every `logpipe` run as config overrides.
struct Topics {
    brokers: String,
    main: String,
    dlq: String,
    parked: String,
}

impl Topics {
    fn new(prefix: &str) -> Topics {
        Topics {
            brokers: kafka_brokers(),
            main: unique(&format!("{prefix}-logs")),
            dlq: unique(&format!("{prefix}-dlq")),
            parked: unique(&format!("{prefix}-parked")),
        }
    }

    /// `logpipe ARGS` with this test's topics and the default replication settings; its stdout,
    /// after checking it succeeded.
    fn logpipe(&self, args: &[&str]) -> String {
        let out = logpipe()
            .args(args)
            .args(["--kafka-brokers", &self.brokers])
            .args(["--set", &format!("kafka.topic={}", self.main)])
            .args(["--set", &format!("kafka.dlq_topic={}", self.dlq)])
            .args(["--set", &format!("kafka.parked_topic={}", self.parked)])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "logpipe {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    fn logpipe_json(&self, args: &[&str]) -> Value {
        let text = self.logpipe(args);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("logpipe {args:?}: {e}: {text}"))
    }

    /// Best effort: the shared cluster should not fill up with test topics.
    async fn delete(&self) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
            .unwrap();
        let _ = admin
            .delete_topics(
                &[&self.main, &self.dlq, &self.parked],
                &AdminOptions::new().request_timeout(Some(Duration::from_secs(10))),
            )
            .await;
    }
}

/// Brokers in the cluster's metadata, read with a plain client (not logpipe's code).
fn broker_count(brokers: &str) -> usize {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("cluster metadata")
        .brokers()
        .len()
}

/// What a cluster of `brokers` brokers should get with `"auto"`: (replication factor,
/// min.insync.replicas).
fn auto_replication(brokers: usize) -> (i64, i64) {
    let factor = brokers.min(3) as i64;
    (factor, (factor - 1).max(1))
}

fn kafka_topic_command(args: &[&str]) -> String {
    let out = kafka_tool(TOPIC_COMMAND, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "TopicCommand {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// One partition as `TopicCommand --describe` prints it.
#[derive(Debug, PartialEq)]
struct KafkaPartition {
    partition: i64,
    /// -1 for `none`, as logpipe reports a partition without a leader.
    leader: i64,
    replicas: Vec<i64>,
    isr: Vec<i64>,
}

/// `TopicCommand --describe` of one topic: the replication factor, the topic's configs, and its
/// partitions.
#[derive(Debug)]
struct KafkaDescribe {
    replication_factor: i64,
    configs: BTreeMap<String, String>,
    partitions: Vec<KafkaPartition>,
}

/// Parses Kafka's tab-separated `Key: value` lines: a topic line, then one line per partition.
fn parse_topic_command(text: &str) -> KafkaDescribe {
    let fields = |line: &str| -> BTreeMap<String, String> {
        line.split('\t')
            .filter_map(|field| field.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    };
    let ids = |list: &str| -> Vec<i64> {
        list.split(',')
            .filter(|id| !id.is_empty())
            .map(|id| id.parse().unwrap())
            .collect()
    };
    let mut header = None;
    let mut partitions = Vec::new();
    for line in text.lines() {
        let f = fields(line);
        if f.contains_key("PartitionCount") {
            header = Some(f);
        } else if let Some(partition) = f.get("Partition") {
            partitions.push(KafkaPartition {
                partition: partition.parse().unwrap(),
                leader: match f["Leader"].as_str() {
                    "none" => -1,
                    id => id.parse().unwrap(),
                },
                replicas: ids(&f["Replicas"]),
                isr: ids(&f["Isr"]),
            });
        }
    }
    let header = header.unwrap_or_else(|| panic!("no topic line in TopicCommand output: {text}"));
    let configs = header["Configs"]
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    KafkaDescribe {
        replication_factor: header["ReplicationFactor"].parse().unwrap(),
        configs,
        partitions,
    }
}

/// Partitions of a `topics describe --json` topic in the shape Kafka's tool prints.
fn logpipe_partitions(topic: &Value) -> Vec<KafkaPartition> {
    let ids = |v: &Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_i64().unwrap())
            .collect()
    };
    topic["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| KafkaPartition {
            partition: p["partition"].as_i64().unwrap(),
            leader: p["leader"].as_i64().unwrap(),
            replicas: ids(&p["replicas"]),
            isr: ids(&p["isr"]),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_describe_json_matches_kafka_topic_command() {
    let topics = Topics::new("it-describe");
    let brokers = broker_count(&topics.brokers);
    let (factor, min_insync) = auto_replication(brokers);
    topics.logpipe(&["topics", "ensure"]);

    // A fresh topic's followers may still be joining the ISR; compare once every partition has
    // all its replicas in sync, so both tools see the same settled state.
    let mut settled = None;
    for _ in 0..60 {
        let described = topics.logpipe_json(&["topics", "describe", "--json", &topics.main]);
        let partitions = logpipe_partitions(&described[0]);
        if partitions
            .iter()
            .all(|p| p.leader >= 0 && p.isr.len() == p.replicas.len())
        {
            settled = Some(partitions);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let settled = settled.expect("every partition has a leader and a full ISR within 30 s");
    assert_eq!(settled.len(), 12);

    let kafka = parse_topic_command(&kafka_topic_command(&[
        "--bootstrap-server",
        &topics.brokers,
        "--describe",
        "--topic",
        &topics.main,
    ]));
    let described = topics.logpipe_json(&["topics", "describe", "--json", &topics.main]);
    let ours = &described[0];

    assert_eq!(ours["name"], topics.main.as_str());
    assert_eq!(kafka.partitions.len(), 12, "{kafka:?}");
    let mut theirs = kafka.partitions;
    theirs.sort_by_key(|p| p.partition);
    let mut mine = logpipe_partitions(ours);
    // The ISR is a set: Kafka's tool and the metadata response need not list it in one order.
    for p in theirs.iter_mut().chain(mine.iter_mut()) {
        p.isr.sort_unstable();
    }
    for (k, l) in theirs.iter().zip(&mine) {
        assert_eq!(
            l, k,
            "partition {}: logpipe (left) and TopicCommand (right) disagree",
            k.partition
        );
        assert_eq!(k.replicas.len() as i64, factor, "{k:?}");
    }
    assert_eq!(mine.len(), theirs.len());

    // The replication logpipe chose for this cluster, as both tools report it.
    assert_eq!(kafka.replication_factor, factor);
    assert_eq!(ours["replication_factor"].as_i64(), Some(factor));
    assert_eq!(
        kafka.configs.get("min.insync.replicas").map(String::as_str),
        Some(min_insync.to_string().as_str()),
        "TopicCommand shows the topic's own configs: {:?}",
        kafka.configs
    );
    assert_eq!(ours["min_insync_replicas"].as_i64(), Some(min_insync));
    let config = ours["configs"]["Ok"]
        .as_array()
        .unwrap_or_else(|| panic!("configs readable: {ours}"))
        .iter()
        .find(|c| c["name"] == "min.insync.replicas")
        .unwrap_or_else(|| panic!("min.insync.replicas among the configs: {ours}"));
    assert_eq!(config["value"], min_insync.to_string().as_str());

    // The table carries the same facts.
    let table = topics.logpipe(&["topics", "describe", &topics.main]);
    assert!(
        table.contains(&format!(
            "Topic: {}   partitions: 12   replication factor: {factor}   min.insync.replicas: {min_insync}",
            topics.main
        )),
        "{table}"
    );
    let first = &theirs[0];
    let list = |ids: &[i64]| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    assert!(table.contains(&list(&first.replicas)), "{table}");
    topics.delete().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn topics_ensure_reports_an_existing_topic_with_other_replication() {
    let topics = Topics::new("it-drift");
    let brokers = broker_count(&topics.brokers);
    assert!(
        brokers >= 2,
        "this test needs a cluster of 2 or more brokers (on one broker the defaults are replication factor 1 and \
         min.insync.replicas 1, nothing to differ from); LOGPIPE_TEST_KAFKA_BROKERS lists a cluster of {brokers}"
    );
    let (factor, min_insync) = auto_replication(brokers);

    // Made by hand the way a quick setup would: one replica, min.insync.replicas 1.
    kafka_topic_command(&[
        "--bootstrap-server",
        &topics.brokers,
        "--create",
        "--topic",
        &topics.main,
        "--partitions",
        "12",
        "--replication-factor",
        "1",
        "--config",
        "min.insync.replicas=1",
    ]);

    let report = topics.logpipe_json(&["topics", "ensure", "--json"]);
    let by_topic = |name: &str| -> &Value {
        report
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["topic"] == name)
            .unwrap_or_else(|| panic!("{name} in {report:#}"))
    };
    let main = by_topic(&topics.main);
    assert_eq!(main["status"], "exists");
    assert_eq!(
        (
            &main["partitions"],
            &main["replication_factor"],
            &main["min_insync_replicas"]
        ),
        (&Value::from(12), &Value::from(1), &Value::from(1)),
        "{main:#}"
    );
    assert_eq!(
        (
            &main["configured"]["replication_factor"],
            &main["configured"]["min_insync_replicas"]
        ),
        (&Value::from(factor), &Value::from(min_insync)),
        "{main:#}"
    );
    let differences: Vec<(String, i64, i64)> = main["differences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["setting"].as_str().unwrap().to_string(),
                d["actual"].as_i64().unwrap(),
                d["configured"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        differences,
        vec![
            ("replication.factor".to_string(), 1, factor),
            ("min.insync.replicas".to_string(), 1, min_insync),
        ],
        "{main:#}"
    );
    for created in [&topics.dlq, &topics.parked] {
        let o = by_topic(created);
        assert_eq!(o["status"], "created", "{o:#}");
        assert_eq!(o["replication_factor"].as_i64(), Some(factor), "{o:#}");
        assert_eq!(o["min_insync_replicas"].as_i64(), Some(min_insync), "{o:#}");
        assert_eq!(o["differences"], Value::Array(vec![]), "{o:#}");
    }

    // The table says it too, with what to do; the topic itself is left as it was.
    let table = topics.logpipe(&["topics", "ensure"]);
    let row = table
        .lines()
        .find(|l| l.contains(&topics.main))
        .unwrap_or_else(|| panic!("a row for {}: {table}", topics.main));
    assert!(
        row.contains("exists, DIFFERS")
            && row.contains(&format!("1 (configured {factor})"))
            && row.contains(&format!("1 (configured {min_insync})")),
        "{row}"
    );
    for advice in [
        "logpipe never alters an existing topic".to_string(),
        "kafka-reassign-partitions.sh".to_string(),
        format!(
            "--entity-name {} --add-config min.insync.replicas={min_insync}",
            topics.main
        ),
        "kafka.replication_factor = 1".to_string(),
    ] {
        assert!(table.contains(&advice), "`{advice}` in {table}");
    }
    let after = parse_topic_command(&kafka_topic_command(&[
        "--bootstrap-server",
        &topics.brokers,
        "--describe",
        "--topic",
        &topics.main,
    ]));
    assert_eq!(after.replication_factor, 1);
    assert_eq!(
        after.configs.get("min.insync.replicas").map(String::as_str),
        Some("1")
    );
    topics.delete().await;
}
