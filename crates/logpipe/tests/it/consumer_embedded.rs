//! The consumer on embedded defaults (mock cluster, SQLite, in-process aggregates).

use crate::consumer_flow::exactly_once_flow;
use crate::support::test_config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_events_become_exactly_one_row_each_and_exact_aggregates() {
    exactly_once_flow(test_config("")).await;
}
