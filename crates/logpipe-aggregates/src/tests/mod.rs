//! Component and integration tests. Every scenario in `scenarios` runs twice, with the same body:
//! on the in-memory store (`memory::*`) and on Redis (`redis::*`, under a unique key prefix,
//! against `LOGPIPE_TEST_REDIS_URL`). Redis-only behaviour (key layout, TTLs, outages,
//! reconnection) is in `redis_only`; TLS and authentication (against the TLS-only servers of
//! `scripts/lib/redis_tls.sh`) in `redis_tls`.
//!
//! Inside the crate rather than in `tests/` so the Redis tests can reach the store's own
//! connection (to find and kill it) without widening the public API.
//!
//! The rebuild's scenarios (lease, snapshot, correction, requests) are in `rebuild`, which
//! declares its own `memory::*` and `redis::*` tests; its Redis-only checks are in
//! `rebuild_redis`.

/// Declares one `#[tokio::test]` per scenario of `$module` and backend, in modules `memory` and
/// `redis` where the macro is used. Multi-threaded runtime so the racing scenario really races.
/// Defined before the modules below so they can use it too.
macro_rules! on_both_backends {
    ($module:ident: $($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    crate::tests::support::run_memory(crate::tests::$module::$scenario).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    crate::tests::support::run_redis(crate::tests::$module::$scenario).await;
                }
            )*
        }
    };
}

mod rebuild;
mod rebuild_redis;
mod redis_only;
mod redis_tls;
mod scenarios;
pub(crate) mod support;

on_both_backends!(
    scenarios:
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
