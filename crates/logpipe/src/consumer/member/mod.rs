//! One consumer-group member's Kafka side: a dedicated OS thread that owns the rdkafka
//! `BaseConsumer`, polls it, and hands records to the async pipeline ([`super::pipeline`]) over a
//! bounded channel.
//!
//! Why a thread: librdkafka runs rebalance callbacks inside `poll`, and a revoke must wait for
//! in-flight work to finish. On a dedicated thread that wait blocks nobody else; on a runtime
//! worker it would stall the async runtime.
//!
//! Backpressure without leaving the group: when the pipeline's channel is full, records wait in a
//! small local queue and the thread waits up to a second for room. If the stall lasts longer (a
//! store outage), every assigned partition is paused and the thread keeps polling (so rebalances
//! are served and `max.poll.interval.ms` is never exceeded); partitions resume when the queue has
//! drained.
//!
//! Rebalances: on revoke, the records already fetched are passed on, then a `Revoked` message; the
//! pipeline finishes and writes everything before it and answers with the final offsets, which
//! are committed synchronously before the partitions are released. The wait is bounded by
//! `consumer.drain_timeout`; past it the partitions are released without that commit and the next
//! owner re-reads those records (the stores are idempotent, so nothing is counted twice). On
//! assign, the pipeline is told before any record of the new partitions arrives.
//!
//! Incremental or eager: the callbacks here only run before and after rdkafka's default
//! `ConsumerContext::rebalance`, which calls `incremental_assign`/`incremental_unassign` when
//! librdkafka reports the COOPERATIVE rebalance protocol and `assign` (the full list, or none)
//! otherwise. librdkafka reports COOPERATIVE for `cooperative-sticky` and for every group of the
//! KIP-848 `consumer` protocol (whose assign and revoke lists are always increments), EAGER for
//! `range` and `roundrobin`. The bookkeeping works for both: an assign adds its partitions to
//! `owned`, a revoke removes its own, and an eager revoke lists every owned partition. Either way a
//!
//! Files: [`context`](mod@context) (the state the poll loop and the callbacks share), [`rebalance`] (assign,
//! revoke, rebalance errors), [`commit`] (offset commits and their cadence), [`poll`] (the loop).

pub mod commit;
pub mod context;
pub mod poll;
pub mod rebalance;

pub use context::{context, MemberContext};
pub use poll::{poll_loop, MemberHandle};
