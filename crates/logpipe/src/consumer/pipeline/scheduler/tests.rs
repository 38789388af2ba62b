//! Paused-clock tests of the scheduler: the retry schedule, key holds, commit points, revokes.

use std::sync::Arc;
use std::time::Duration;

use super::*;

fn tp(p: i32) -> Tp {
    (Arc::from("t"), p)
}

/// The default schedule without jitter: attempt 1 at once, then 1 s, 2 s, 4 s.
fn scheduler(has_steps: bool) -> Scheduler {
    let retry = RetryConfig {
        jitter: 0.0,
        ..RetryConfig::default()
    };
    let mut s = Scheduler::new(retry, has_steps);
    s.assign(&[tp(0), tp(1)], 7);
    s
}

fn item(p: i32, offset: i64, key: u64) -> Item {
    Item::for_test(&tp(p), offset, Some(key))
}

fn offsets(items: &[Item]) -> Vec<i64> {
    items.iter().map(|i| i.offset).collect()
}

/// Fails `item` in the store, as the writer does with a refused row.
fn fail(s: &mut Scheduler, item: Item) -> Option<Duration> {
    s.failed(item, "store_rejected".into(), "no".into(), Stage::Store)
}

/// Stores every ready record (each finishes), returning their offsets.
fn store_all(s: &mut Scheduler) -> Vec<i64> {
    let ready = s.take_ready();
    for i in &ready {
        s.finished(&i.tp, i.key, i.offset);
    }
    offsets(&ready)
}

fn commit_offsets(s: &mut Scheduler) -> Vec<(i32, i64, Epoch)> {
    s.take_commits()
        .into_iter()
        .map(|p| (p.tp.1, p.offset, p.epoch))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_retry_schedule_is_immediate_then_one_two_four_seconds_then_the_dlq() {
    let mut s = scheduler(false);
    s.accept(vec![item(0, 0, 1)]);
    let mut record = s.take_ready().pop().expect("attempt 1 starts at once");
    let start = Instant::now();
    for (attempt, wait) in [(1, 1), (2, 2), (3, 4)] {
        let delay = fail(&mut s, record);
        assert_eq!(
            delay,
            Some(Duration::from_secs(wait)),
            "after attempt {attempt}"
        );
        assert_eq!(
            s.next_due(),
            Some(Instant::now() + Duration::from_secs(wait))
        );
        tokio::time::advance(Duration::from_secs(wait) - Duration::from_millis(1)).await;
        s.retry_due();
        assert!(
            s.take_ready().is_empty(),
            "attempt {} before its time",
            attempt + 1
        );
        tokio::time::advance(Duration::from_millis(1)).await;
        s.retry_due();
        record = s.take_ready().pop().expect("the retry is due");
        assert_eq!(record.failure.as_ref().map(|f| f.attempts), Some(attempt));
    }
    assert_eq!(Instant::now() - start, Duration::from_secs(7));
    assert_eq!(fail(&mut s, record), None, "attempt 4 was the last");
    let letters = s.take_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].1, ErrorClass::Exhausted);
    assert_eq!(letters[0].0.failure.as_ref().map(|f| f.attempts), Some(4));
    assert!(!s.has_retries());
}

#[tokio::test(start_paused = true)]
async fn a_waiting_record_holds_only_its_key_and_its_partitions_commit_point() {
    let mut s = scheduler(false);
    // Partition 0: offsets 0..5, keys 1 2 1 3 1; partition 1: offset 0, key 1.
    s.accept(vec![item(0, 0, 1), item(0, 1, 2)]);
    let first = s.take_ready();
    let mut first = first.into_iter();
    let held = first.next().expect("offset 0");
    fail(&mut s, held);
    let other = first.next().expect("offset 1");
    s.finished(&other.tp, other.key, other.offset);
    s.accept(vec![
        item(0, 2, 1),
        item(0, 3, 3),
        item(0, 4, 1),
        item(1, 0, 1),
    ]);
    assert_eq!(
        store_all(&mut s),
        vec![3, 0],
        "key 3, and key 1 of another partition, flow; key 1 of partition 0 waits"
    );
    assert_eq!(
        commit_offsets(&mut s),
        vec![(0, 0, 7), (1, 1, 7)],
        "partition 0 stays at the waiting record"
    );

    tokio::time::advance(Duration::from_secs(1)).await;
    s.retry_due();
    assert_eq!(store_all(&mut s), vec![0], "the retry succeeds");
    assert_eq!(
        store_all(&mut s),
        vec![2, 4],
        "then the records that waited behind its key, in offset order"
    );
    assert_eq!(commit_offsets(&mut s), vec![(0, 5, 7)]);
    assert_eq!(s.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_later_record_that_fails_queues_behind_the_earlier_one_of_its_key() {
    let mut s = scheduler(false);
    s.accept(vec![item(0, 0, 1), item(0, 1, 1), item(0, 2, 1)]);
    let mut ready = s.take_ready().into_iter();
    let (a, b, c) = (
        ready.next().unwrap(),
        ready.next().unwrap(),
        ready.next().unwrap(),
    );
    // One store round refuses offsets 0 and 2: 0 holds the key, 2 waits behind it.
    assert!(fail(&mut s, a).is_some());
    assert!(fail(&mut s, c).is_some());
    s.finished(&b.tp, b.key, b.offset);
    tokio::time::advance(Duration::from_secs(1)).await;
    s.retry_due();
    assert_eq!(
        offsets(&s.take_ready()[..]),
        vec![0],
        "only the holder is retried"
    );
    s.finished(&tp(0), Some(1), 0);
    let again = s.take_ready();
    assert_eq!(offsets(&again), vec![2], "then the one behind it, at once");
    assert_eq!(again[0].failure.as_ref().map(|f| f.attempts), Some(1));
    assert_eq!(commit_offsets(&mut s), vec![(0, 2, 7)]);
}

#[tokio::test(start_paused = true)]
async fn records_without_a_key_never_wait_for_each_other() {
    let mut s = scheduler(false);
    s.accept(vec![Item::for_test(&tp(0), 0, None)]);
    let failed = s.take_ready().pop().unwrap();
    fail(&mut s, failed);
    s.accept(vec![Item::for_test(&tp(0), 1, None)]);
    assert_eq!(store_all(&mut s), vec![1]);
    assert_eq!(commit_offsets(&mut s), vec![(0, 0, 7)]);
}

#[tokio::test(start_paused = true)]
async fn a_revoke_mid_retry_abandons_the_waiting_records_at_the_commit_point() {
    let mut s = scheduler(false);
    s.accept(vec![
        item(0, 0, 1),
        item(0, 1, 1),
        item(0, 2, 2),
        item(1, 0, 1),
    ]);
    let mut ready = s.take_ready().into_iter();
    fail(&mut s, ready.next().unwrap());
    for done in ready {
        s.finished(&done.tp, done.key, done.offset);
    }
    assert_eq!(s.abandon(&[tp(0)]), 1, "one record waited for a retry");
    assert_eq!(
        s.release(&[tp(0)]),
        vec![CommitPoint {
            tp: tp(0),
            offset: 0,
            epoch: 7
        }],
        "the next owner re-reads from the failed record"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    s.retry_due();
    assert!(s.take_ready().is_empty(), "the abandoned retry never runs");
    // A late step result or batch of the revoked assignment is dropped.
    let mut late = item(0, 1, 1);
    late.epoch = 7;
    assert!(!s.is_current(&late));
    s.passed_steps(late);
    s.accept(vec![item(0, 3, 3)]);
    assert!(s.take_ready().is_empty());
    assert_eq!(
        s.in_flight(),
        0,
        "partition 1 finished, partition 0 forgotten"
    );
    // The partition comes back under a new epoch: its commit points carry that epoch.
    s.assign(&[tp(0)], 8);
    s.accept(vec![item(0, 0, 1)]);
    assert_eq!(store_all(&mut s), vec![0]);
    assert_eq!(commit_offsets(&mut s), vec![(0, 1, 8), (1, 1, 7)]);
}

#[tokio::test(start_paused = true)]
async fn steps_hold_the_key_and_a_rejected_record_goes_to_the_dlq_as_poison() {
    let mut s = scheduler(true);
    s.accept(vec![item(0, 0, 1), item(0, 1, 1), item(0, 2, 2)]);
    let running = s.take_to_run();
    assert_eq!(
        offsets(&running),
        vec![0, 2],
        "offset 1 waits for offset 0's steps"
    );
    let mut running = running.into_iter();
    let first = running.next().unwrap();
    s.rejected(first, "step:lookup".into(), "never".into());
    let letters = s.take_letters();
    assert_eq!(letters[0].1, ErrorClass::Poison);
    assert_eq!(letters[0].0.error(), ("step:lookup", "never"));
    s.finished(&tp(0), Some(1), 0);
    assert_eq!(
        offsets(&s.take_to_run()),
        vec![1],
        "the DLQ ack releases the key"
    );
    s.passed_steps(running.next().unwrap());
    assert_eq!(store_all(&mut s), vec![2]);
}

#[tokio::test(start_paused = true)]
async fn a_record_failing_its_steps_is_retried_from_the_steps() {
    let mut s = scheduler(true);
    s.accept(vec![item(0, 0, 1)]);
    let record = s.take_to_run().pop().unwrap();
    s.failed(record, "step:x".into(), "later".into(), Stage::Steps);
    tokio::time::advance(Duration::from_secs(1)).await;
    s.retry_due();
    assert_eq!(offsets(&s.take_to_run()), vec![0]);
    assert!(s.take_ready().is_empty());
}

#[test]
fn poison_goes_to_the_dlq_at_once_without_holding_its_key() {
    let mut s = scheduler(false);
    let mut poison = item(0, 0, 1);
    poison.poison = Some(Box::new(("invalid_json".into(), "not JSON".into())));
    s.accept(vec![poison, item(0, 1, 1)]);
    assert_eq!(s.take_letters()[0].1, ErrorClass::Poison);
    assert_eq!(offsets(&s.take_ready()), vec![1]);
    assert_eq!(
        commit_offsets(&mut s),
        vec![(0, 0, 7)],
        "until the DLQ acknowledges"
    );
}
