//! The one retry policy: exponential backoff with jitter, and the two loops built on it.
//!
//! A wait grows from `base` by `multiplier` per step up to `cap`, and is spread by +/- a
//! `jitter` fraction so that many waiters (records, partitions, processes) do not all come back
//! at the same instant. [`Backoff::delay`] is the schedule without jitter, [`Backoff::jittered`]
//! with it, and [`Backoff::waits`] walks the schedule for loops that grow their wait after every
//! failure and start over after a success.
//!
//! Who uses it:
//! - the consumer's record retries: [`crate::config::RetryConfig::delay_before`] is
//!   [`Backoff::delay`] (attempt 1 at once, then 1 s, 2 s, 4 s by default), spread by
//!   `retry.jitter`;
//! - the consumer's outage circuits: 100 ms doubling to 5 s, +/-20 %;
//! - start-up waits for the cluster ([`until_ok`]: the producer's topic ensurer, 1 s doubling to
//!   30 s);
//! - periodic probes and chores ([`spawn_every`]: Kafka, producer-service and store health,
//!   log-store maintenance), which run at once and then every interval until stopped.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// An exponential schedule of waits: `base`, `base * multiplier`, ... at most `cap`, each
/// spread by +/- `jitter` (a fraction) when jittered.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The first wait.
    pub base: Duration,
    /// Each wait is the previous one times this (at least 1.0 for a growing schedule).
    pub multiplier: f64,
    /// The longest wait.
    pub cap: Duration,
    /// Random spread of each jittered wait, as a fraction (0.2 = +/-20 %; 0 = none).
    pub jitter: f64,
}

impl Backoff {
    pub const fn new(base: Duration, multiplier: f64, cap: Duration, jitter: f64) -> Self {
        Backoff {
            base,
            multiplier,
            cap,
            jitter,
        }
    }

    /// The `n`-th wait without jitter: wait 1 is `base`, wait `n` is
    /// `base * multiplier^(n-1)`, never above `cap`. Wait 0 is none (zero), so "the wait before
    /// attempt `a`" is `delay(a - 1)`.
    pub fn delay(&self, n: u32) -> Duration {
        if n == 0 || self.base.is_zero() {
            return Duration::ZERO;
        }
        let exponent = i32::try_from(n - 1).unwrap_or(i32::MAX);
        let seconds = self.base.as_secs_f64() * self.multiplier.powi(exponent);
        // An overflow to infinity lands on the cap too.
        if seconds.is_nan() || seconds >= self.cap.as_secs_f64() {
            return self.cap;
        }
        Duration::from_secs_f64(seconds.max(0.0))
    }

    /// The `n`-th wait spread by +/- `jitter` (see [`jitter`]).
    pub fn jittered(&self, n: u32) -> Duration {
        jitter(self.delay(n), self.jitter)
    }

    /// The waits from the first on, for a loop that waits longer after each failure.
    pub fn waits(self) -> Waits {
        Waits {
            backoff: self,
            next: 1,
        }
    }
}

/// `duration` spread uniformly by +/- `fraction` (0.1: somewhere in 90 %..110 %), never
/// negative. A fraction of 0 (or less) and a zero duration come back unchanged.
pub fn jitter(duration: Duration, fraction: f64) -> Duration {
    if fraction.is_nan() || fraction <= 0.0 || duration.is_zero() {
        return duration;
    }
    let factor = 1.0 + fraction * (2.0 * rand::random::<f64>() - 1.0);
    Duration::try_from_secs_f64(duration.as_secs_f64() * factor.max(0.0)).unwrap_or(Duration::MAX)
}

/// Where a loop stands in a [`Backoff`] schedule: each [`next_wait`](Waits::next_wait) is the
/// next wait, jittered, and moves on; [`reset`](Waits::reset) starts over after a success. Never
/// ends (the cap repeats).
#[derive(Debug, Clone)]
pub struct Waits {
    backoff: Backoff,
    /// The number of the wait `next` hands out.
    next: u32,
}

impl Waits {
    /// The wait `next` will hand out, without jitter (for log lines before the wait).
    pub fn peek(&self) -> Duration {
        self.backoff.delay(self.next)
    }

    /// The next wait, jittered, and moves on (what [`Iterator::next`] hands out, without the
    /// `Option`: the schedule never ends).
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.backoff.jittered(self.next);
        self.next = self.next.saturating_add(1);
        wait
    }

    /// Back to the first wait.
    pub fn reset(&mut self) {
        self.next = 1;
    }
}

impl Iterator for Waits {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.next_wait())
    }
}

/// Runs `task` at once and then again `interval` after each run ends, until `stop` is
/// cancelled. A run in progress when `stop` is cancelled finishes; no new one starts.
pub async fn every<F, Fut>(interval: Duration, stop: CancellationToken, mut task: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        task().await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// [`every`] on its own task: periodic probes and chores.
pub fn spawn_every<F, Fut>(interval: Duration, stop: CancellationToken, task: F) -> JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(every(interval, stop, task))
}

/// Runs `attempt` until it succeeds (its value, `Some`) or `stop` is cancelled while waiting
/// (`None`). After each failure `on_failure` gets the error and the wait before the next attempt
/// (for its log line), and the wait follows `backoff`. The first attempt runs at once.
pub async fn until_ok<T, E, F, Fut>(
    backoff: Backoff,
    stop: &CancellationToken,
    mut attempt: F,
    mut on_failure: impl FnMut(E, Duration),
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut waits = backoff.waits();
    loop {
        let error = match attempt().await {
            Ok(value) => return Some(value),
            Err(error) => error,
        };
        let wait = waits.next_wait();
        on_failure(error, wait);
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::time::Instant;

    use super::*;

    const fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// The record-retry defaults of `retry.*`.
    const RECORDS: Backoff = Backoff::new(secs(1), 2.0, secs(30), 0.1);

    #[test]
    fn the_default_record_schedule_is_immediate_then_1_2_4_seconds() {
        let waits: Vec<_> = (0..=3).map(|n| RECORDS.delay(n)).collect();
        assert_eq!(waits, [0, 1, 2, 4].map(secs));
        assert_eq!(RECORDS.delay(5), secs(16));
    }

    #[test]
    fn waits_stop_growing_at_the_cap() {
        assert_eq!(RECORDS.delay(6), secs(30), "32 s is over the cap");
        assert_eq!(RECORDS.delay(1000), secs(30), "2^999 overflows to infinity");
        assert_eq!(RECORDS.delay(u32::MAX), secs(30));
        let steep = Backoff::new(secs(1), 1e10, secs(5), 0.0);
        assert_eq!(steep.delay(40), secs(5));
        let zero = Backoff::new(Duration::ZERO, 1e10, secs(5), 0.0);
        assert_eq!(
            zero.delay(40),
            Duration::ZERO,
            "nothing times anything stays nothing"
        );
    }

    #[test]
    fn waits_double_from_100ms_to_5s_and_start_over_on_reset() {
        let mut waits = Backoff::new(Duration::from_millis(100), 2.0, secs(5), 0.0).waits();
        let first: Vec<_> = waits.by_ref().take(8).map(|d| d.as_millis()).collect();
        assert_eq!(first, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(waits.peek(), secs(5));
        waits.reset();
        assert_eq!(waits.peek(), Duration::from_millis(100));
        assert_eq!(waits.next_wait(), Duration::from_millis(100));
        assert_eq!(waits.next(), Some(Duration::from_millis(200)));
    }

    #[test]
    fn jitter_stays_within_the_fraction_and_spreads_both_ways() {
        let base = secs(1);
        let samples: Vec<f64> = (0..10_000)
            .map(|_| jitter(base, 0.2).as_secs_f64())
            .collect();
        let (min, max) = samples
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        assert!(min >= 0.8 && max <= 1.2, "{min}..{max} outside 0.8..1.2");
        assert!(
            min < 0.82 && max > 1.18,
            "{min}..{max} does not cover the range"
        );
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");

        let jittered: Vec<_> = (0..1000).map(|_| RECORDS.jittered(3)).collect();
        assert!(jittered
            .iter()
            .all(|d| (secs_f(3.6)..=secs_f(4.4)).contains(d)));
    }

    fn secs_f(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn no_jitter_leaves_the_wait_alone_and_full_jitter_is_never_negative() {
        assert_eq!(jitter(secs(3), 0.0), secs(3));
        assert_eq!(jitter(secs(3), -1.0), secs(3));
        assert_eq!(jitter(secs(3), f64::NAN), secs(3));
        assert_eq!(jitter(Duration::ZERO, 0.5), Duration::ZERO);
        for _ in 0..1000 {
            assert!(jitter(secs(1), 1.0) <= secs(2));
            assert!(
                jitter(secs(1), 3.0) <= secs(4),
                "clamped at zero, not below"
            );
        }
    }

    /// The paused-clock instant of each call, relative to `start`.
    fn log_calls(start: Instant) -> (Arc<Mutex<Vec<Duration>>>, impl Fn() + Clone) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let log = calls.clone();
        (calls, move || log.lock().unwrap().push(start.elapsed()))
    }

    #[tokio::test(start_paused = true)]
    async fn spawn_every_runs_at_once_then_every_interval_until_stopped() {
        let stop = CancellationToken::new();
        let (calls, log) = log_calls(Instant::now());
        let handle = spawn_every(secs(2), stop.clone(), move || {
            log();
            async {}
        });
        tokio::time::sleep(Duration::from_millis(6500)).await;
        assert_eq!(*calls.lock().unwrap(), [0, 2, 4, 6].map(secs));

        stop.cancel();
        let cancelled = Instant::now();
        handle.await.unwrap();
        assert_eq!(
            cancelled.elapsed(),
            Duration::ZERO,
            "stopped without waiting"
        );
        assert_eq!(calls.lock().unwrap().len(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn every_measures_the_interval_from_the_end_of_a_run() {
        let stop = CancellationToken::new();
        let (calls, log) = log_calls(Instant::now());
        let handle = spawn_every(secs(2), stop.clone(), move || {
            log();
            tokio::time::sleep(secs(1))
        });
        tokio::time::sleep(Duration::from_millis(7500)).await;
        stop.cancel();
        handle.await.unwrap();
        assert_eq!(*calls.lock().unwrap(), [0, 3, 6].map(secs));
    }

    #[tokio::test(start_paused = true)]
    async fn until_ok_doubles_its_wait_up_to_the_cap_and_returns_the_value() {
        let stop = CancellationToken::new();
        let (calls, log) = log_calls(Instant::now());
        let mut failures = Vec::new();
        let backoff = Backoff::new(secs(1), 2.0, secs(3), 0.0);
        let value = until_ok(
            backoff,
            &stop,
            || {
                log();
                let tries = calls.lock().unwrap().len();
                async move {
                    if tries < 5 {
                        Err(tries)
                    } else {
                        Ok("up")
                    }
                }
            },
            |tries, wait| failures.push((tries, wait)),
        )
        .await;
        assert_eq!(value, Some("up"));
        assert_eq!(*calls.lock().unwrap(), [0, 1, 3, 6, 9].map(secs));
        assert_eq!(
            failures,
            [(1, secs(1)), (2, secs(2)), (3, secs(3)), (4, secs(3))]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn until_ok_gives_up_promptly_when_stopped() {
        let stop = CancellationToken::new();
        let (calls, log) = log_calls(Instant::now());
        let backoff = Backoff::new(secs(1), 2.0, secs(30), 0.0);
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                until_ok(
                    backoff,
                    &stop,
                    || {
                        log();
                        async { Err::<(), _>("down") }
                    },
                    |_, _| {},
                )
                .await
            })
        };
        tokio::time::sleep(Duration::from_millis(5500)).await;
        stop.cancel();
        let cancelled = Instant::now();
        assert_eq!(task.await.unwrap(), None);
        assert_eq!(
            cancelled.elapsed(),
            Duration::ZERO,
            "stopped without waiting"
        );
        assert_eq!(*calls.lock().unwrap(), [0, 1, 3].map(secs));
    }
}
