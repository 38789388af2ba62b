//! The consumer against Apache Kafka, PostgreSQL and Redis (started by `scripts/test.sh`): exactly-once
//! effects, reprocessing, and three consumers sharing the partitions while one leaves and one
//! joins mid-stream.

use std::collections::HashSet;
use std::time::Duration;

use logpipe::app::{App, Roles};

use crate::consumer_flow::{all_logs, exactly_once_flow, generate, post_all, stats};
use crate::support::{eventually, external_config, start, unique};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_events_become_exactly_one_row_each_and_exact_aggregates() {
    exactly_once_flow(external_config().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_three_consumers_share_partitions_and_survive_leave_and_join() {
    let config = external_config().await;
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
        "3 consumers own 4 partitions each",
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
        "the partitions are spread over the 3 members again",
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

    for c in consumers {
        c.shutdown().await.unwrap();
    }
    gateway.shutdown().await.unwrap();
    producer.shutdown().await.unwrap();
}
