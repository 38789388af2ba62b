//! Component and integration tests. Every scenario in `scenarios` runs twice, with the same body:
//! on the in-memory store (`memory::*`) and on Redis (`redis::*`, under a unique key prefix,
//! against `LOGPIPE_TEST_REDIS_URL`). Redis-only behaviour (key layout, TTLs, outages,
//! reconnection) is in `redis_only`.
//!
//! Inside the crate rather than in `tests/` so the Redis tests can reach the store's own
//! connection (to find and kill it) without widening the public API.

mod redis_only;
mod scenarios;
pub(crate) mod support;

/// Declares one `#[tokio::test]` per scenario and backend. Multi-threaded runtime so the racing
/// scenario really races.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::support::run_memory(super::scenarios::$scenario).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::support::run_redis(super::scenarios::$scenario).await;
                }
            )*
        }
    };
}

on_both_backends!(
    exact_counts,
    replay_is_refused,
    stale_watermark_conflicts_then_rebuild_is_exact,
    one_conflicting_partition_blocks_the_whole_delta,
    service_filter,
    range_is_clamped_and_minute_aligned,
    top_n_ranks_errors,
    racing_applies_one_wins,
    watermarks_start_at_minus_one_and_follow_applies,
    empty_and_fence_deltas,
);
