//! The consumer against Apache Kafka, PostgreSQL and Redis (started by `scripts/test.sh`): exactly-once
//! effects, reprocessing, and three consumers sharing the partitions while one leaves and one
//! joins mid-stream, with either group protocol (`LOGPIPE_TEST_GROUP_PROTOCOL`, and the
//! `_consumer_protocol` variants for KIP-848 whatever it says).

use std::collections::HashSet;
use std::time::Duration;

use logpipe::app::{App, Roles};
use logpipe::config::{Config, GroupProtocol};
use rdkafka::consumer::{BaseConsumer, Consumer, RebalanceProtocol};

use crate::consumer_flow::{all_logs, exactly_once_flow, generate, post_all, stats};
use crate::support::{create_topics, eventually, external_config, metric, start, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_events_become_exactly_one_row_each_and_exact_aggregates() {
    exactly_once_flow(external_config().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_events_become_exactly_one_row_each_consumer_protocol() {
    let mut config = external_config().await;
    config.consumer.group_protocol = GroupProtocol::Consumer;
    exactly_once_flow(config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_three_consumers_share_partitions_and_survive_leave_and_join() {
    let config = external_config().await;
    leave_and_join(config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_three_consumers_survive_leave_and_join_consumer_protocol() {
    let mut config = external_config().await;
    config.consumer.group_protocol = GroupProtocol::Consumer;
    leave_and_join(config).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_three_consumers_survive_leave_and_join_consumer_protocol_range_assignor() {
    let mut config = external_config().await;
    config.consumer.group_protocol = GroupProtocol::Consumer;
    config.consumer.remote_assignor = "range".into();
    leave_and_join(config).await;
}

/// Three members share the 12 partitions; under load one leaves gracefully and one joins. Every
/// event must be stored and counted exactly once, and every handover must start where the
/// previous owner's commit on revoke left off: no member may re-read a record already stored
/// (`log_consumer_duplicates_total` stays 0), which only holds if each revoke committed the
/// completed work of the partitions it gave up before releasing them.
async fn leave_and_join(config: Config) {
    let protocol = config.consumer.group_protocol;
    let run = unique("g");
    // Ingest: producer service + gateway, and a gateway that can query.
    let producer = start(config.clone(), Roles::Producer).await;
    let mut gw = config.clone();
    gw.gateway.producer_url = format!("http://{}", producer.producer_addr.unwrap());
    let gateway = start(gw, Roles::Gateway).await;
    let base = format!("http://{}", gateway.gateway_addr.unwrap());

    let mut consumers: Vec<App> = Vec::new();
    for _ in 0..3 {
        consumers.push(App::start(config.clone(), Roles::Consumer).await.unwrap());
    }
    eventually(
        Duration::from_secs(60),
        &format!("{protocol:?}: 3 consumers own 4 partitions each"),
        || {
            let counts: Vec<usize> = consumers.iter().map(|c| c.assigned_partitions()).collect();
            async move { counts == vec![4, 4, 4] }
        },
    )
    .await;

    let events = generate(6000, 24, &run);
    let (first, rest) = events.split_at(2000);
    let (second, third) = rest.split_at(2000);
    assert_eq!(post_all(&base, first, 200).await, 2000);
    // One member leaves mid-stream (graceful: drain, commit, leave).
    let leaving = consumers.remove(0);
    let poster = {
        let base = base.clone();
        let second = second.to_vec();
        tokio::spawn(async move { post_all(&base, &second, 100).await })
    };
    leaving.shutdown().await.unwrap();
    assert_eq!(poster.await.unwrap(), 2000);
    // One joins mid-stream.
    consumers.push(App::start(config.clone(), Roles::Consumer).await.unwrap());
    assert_eq!(post_all(&base, third, 200).await, 2000);
    eventually(
        Duration::from_secs(60),
        &format!("{protocol:?}: the partitions are spread over the 3 members again"),
        || {
            let total: usize = consumers.iter().map(|c| c.assigned_partitions()).sum();
            let each: Vec<usize> = consumers.iter().map(|c| c.assigned_partitions()).collect();
            async move { total == 12 && each.iter().all(|n| *n >= 2) }
        },
    )
    .await;

    eventually(Duration::from_secs(120), "6000 rows", || {
        let base = base.clone();
        let run = run.clone();
        async move { all_logs(&base, &run).await.len() >= 6000 }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let logs = all_logs(&base, &run).await;
    let seqs: HashSet<u64> = logs
        .iter()
        .map(|l| l["attributes"]["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(logs.len(), 6000, "no duplicate rows");
    assert_eq!(seqs.len(), 6000, "no event lost");
    let s = stats(&base).await;
    let counted: u64 = s["by_service"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with(&run))
        .flat_map(|(_, levels)| {
            levels
                .as_object()
                .unwrap()
                .values()
                .map(|v| v.as_u64().unwrap())
        })
        .sum();
    assert_eq!(
        counted, 6000,
        "aggregates exact after the leave and the join"
    );
    let mut replayed = Vec::new();
    for c in &consumers {
        let base = format!("http://{}", c.consumer_addr.unwrap());
        replayed.push(metric(&base, "log_consumer_duplicates_total").await);
    }
    assert_eq!(
        replayed,
        vec![0.0; 3],
        "{protocol:?}: a member re-read stored records, so a revoke released partitions without committing the work done on them"
    );

    for c in consumers {
        c.shutdown().await.unwrap();
    }
    gateway.shutdown().await.unwrap();
    producer.shutdown().await.unwrap();
}

/// member.rs relies on rdkafka's default rebalance handler choosing incremental assign and
/// unassign for consumer-protocol groups; it does so only while librdkafka reports the
/// COOPERATIVE rebalance protocol for them. A member built with logpipe's group settings must.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_consumer_protocol_members_rebalance_incrementally() {
    let mut config = external_config().await;
    config.consumer.group_protocol = GroupProtocol::Consumer;
    create_topics(&config).await;
    let protocol = tokio::task::spawn_blocking(move || {
        let mut client = logpipe::kafka::client_config(
            &config.kafka,
            &config.kafka.brokers,
            "it-member",
            &Default::default(),
        );
        client.set("group.id", &config.consumer.group_id);
        logpipe::kafka::consumer::group_settings(&mut client, &config.consumer);
        let consumer: BaseConsumer = client.create().expect("a consumer-protocol member");
        consumer.subscribe(&[&config.kafka.topic]).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while consumer.assignment().map(|a| a.count()).unwrap_or(0) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the consumer-protocol member got no partitions within 30 s"
            );
            let _ = consumer.poll(Duration::from_millis(100));
        }
        consumer.rebalance_protocol()
    })
    .await
    .unwrap();
    assert!(
        matches!(protocol, RebalanceProtocol::Cooperative),
        "librdkafka reports a non-cooperative rebalance protocol for a consumer-protocol member"
    );
}

/// The start-up check of `consumer.drain_timeout` reads the group's session timeout from the
/// broker (Kafka 4.0+ describes the config of any group id).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_the_group_session_timeout_is_read_from_the_broker() {
    let config = external_config().await;
    let session = logpipe::kafka::consumer::group_session_timeout(&config, &config.kafka.brokers)
        .await
        .expect("the group's consumer.session.timeout.ms");
    // Kafka bounds it by group.consumer.{min,max}.session.timeout.ms: 45 s by default, 1 s to 1 h.
    assert!(
        (Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&session),
        "{session:?}"
    );
}
