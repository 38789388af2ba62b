//! A partition's watermarks for the tools (`topics describe`, `lag`, `dlq`), asked again while
//! the partition's leader moves.

use std::time::{Duration, Instant};

use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};

/// How long to wait between two asks while the leader moves.
const PAUSE: Duration = Duration::from_millis(100);

/// A partition's (low, high) watermarks. A partition whose leader is moving (a topic created a
/// moment ago, a broker restarting) answers "not leader" or "leader not available" for a short
/// while: asked again within `timeout`, as Kafka's own clients do, instead of failing the whole
/// command on a leader election.
pub fn watermarks<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> KafkaResult<(i64, i64)> {
    let deadline = Instant::now() + timeout;
    loop {
        // Each ask gets what is left of the timeout, so the whole call stays within it.
        let left = deadline.saturating_duration_since(Instant::now());
        match client.fetch_watermarks(topic, partition, left) {
            Err(KafkaError::MetadataFetch(
                RDKafkaErrorCode::NotLeaderForPartition | RDKafkaErrorCode::LeaderNotAvailable,
            )) if Instant::now() + PAUSE < deadline => std::thread::sleep(PAUSE),
            answer => return answer,
        }
    }
}
