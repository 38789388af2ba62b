//! Runs the processing steps ([`crate::consumer::steps`]) of records as tasks: at most `workers`
//! at once, each attempt bounded by `retry.attempt_timeout`, a panicking step caught as a failed
//! attempt. The scheduler keeps one record per key in its steps; this only runs them.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::item::Item;
use crate::consumer::steps::{Step, StepError};

/// How a record's steps went.
pub(super) enum StepOutcome {
    Passed(Item),
    /// A step failed this attempt (retry later): the step's name and its error.
    Failed(Item, String, String),
    /// A step said the record can never pass.
    Rejected(Item, String, String),
}

/// A record back from its steps: the failing step's name and error, if one failed.
type StepRun = (Item, Result<(), (String, StepError)>);

pub(super) struct StepRunner {
    steps: Arc<Vec<Arc<dyn Step>>>,
    timeout: Duration,
    permits: Arc<Semaphore>,
    running: JoinSet<StepRun>,
}

impl StepRunner {
    pub fn new(steps: Arc<Vec<Arc<dyn Step>>>, timeout: Duration, workers: usize) -> Self {
        StepRunner {
            steps,
            timeout,
            permits: Arc::new(Semaphore::new(workers)),
            running: JoinSet::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Starts the steps of a decoded record.
    pub fn spawn(&mut self, item: Item) {
        let steps = self.steps.clone();
        let timeout = self.timeout;
        let permits = self.permits.clone();
        self.running.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let run = async {
                // Each event of the record through every step; the record passes when all did.
                for log in &item.logs {
                    for step in steps.iter() {
                        match tokio::time::timeout(timeout, step.run(log)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return Err((step.name().to_string(), e)),
                            Err(_) => {
                                return Err((
                                    step.name().to_string(),
                                    StepError::retryable(format!(
                                        "attempt timed out after {}",
                                        humantime::format_duration(timeout)
                                    )),
                                ))
                            }
                        }
                    }
                }
                Ok(())
            };
            let result = std::panic::AssertUnwindSafe(run)
                .catch_unwind()
                .await
                .unwrap_or_else(|_| {
                    Err((
                        "panic".to_string(),
                        StepError::retryable("a processing step panicked"),
                    ))
                });
            (item, result)
        });
    }

    /// The next record whose steps finished (waits for one; None when none runs), then any
    /// others already finished.
    pub async fn finished(&mut self) -> Vec<StepOutcome> {
        let mut out = Vec::new();
        if let Some(done) = self.running.join_next().await {
            out.extend(outcome(done));
            while let Some(done) = self.running.try_join_next() {
                out.extend(outcome(done));
            }
        }
        out
    }
}

fn outcome(done: Result<StepRun, tokio::task::JoinError>) -> Option<StepOutcome> {
    let Ok((item, result)) = done else {
        // Unreachable (the task catches panics); the record stays in flight, so its offset is
        // never committed and the next owner re-reads it.
        tracing::error!(
            "a processing step task was lost; its record will be re-read after the next rebalance"
        );
        return None;
    };
    Some(match result {
        Ok(()) => StepOutcome::Passed(item),
        Err((step, e)) if e.permanent => {
            StepOutcome::Rejected(item, format!("step:{step}"), e.message)
        }
        Err((step, e)) => StepOutcome::Failed(item, format!("step:{step}"), e.message),
    })
}
