//! Burrow-style statuses: what one partition's samples over the window say about its consumer
//! (the rules are in the `lag` module docs). Pure: no I/O.

use std::fmt;

use serde::Serialize;

use super::degrade;

/// A partition's status over the window. The order is the severity, worst last (Burrow's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Caught up at some point of the window, or consuming without falling behind steadily.
    #[value(name = "OK")]
    Ok,
    /// Consuming, but the lag grew between every two samples of the window.
    #[value(name = "WARN")]
    Warn,
    /// Not consuming: the offset did not move, the lag is above 0 and no member owns the partition.
    #[value(name = "STOP")]
    Stop,
    /// Stuck: the offset did not move and the lag is above 0 while a member owns the partition.
    #[value(name = "STALL")]
    Stall,
    /// The committed offset went backwards (an offset reset, or a rewinding consumer).
    #[value(name = "REWIND")]
    Rewind,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Stop => "STOP",
            Status::Stall => "STALL",
            Status::Rewind => "REWIND",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One sample of one partition, as [`evaluate`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    /// The group's committed offset (`None`: never committed).
    pub committed: Option<i64>,
    /// The log-end offset (high watermark).
    pub end: i64,
    /// Whether a member of the group owns the partition (`None`: unknown, e.g. mid-rebalance or
    /// the broker does not describe groups).
    pub owned: Option<bool>,
}

impl Observation {
    /// `end - committed`, never below 0 (`None` without a committed offset).
    pub fn lag(&self) -> Option<i64> {
        self.committed.map(|c| degrade::lag(c, self.end))
    }
}

/// The status of one partition over a window of samples, oldest first (rules in the `lag` module
/// docs). `None` when no sample has a committed offset, or when fewer than two do and the lag
/// was never 0.
pub fn evaluate(window: &[Observation]) -> Option<Status> {
    let seen: Vec<(i64, i64, Option<bool>)> = window
        .iter()
        .filter_map(|o| Some((o.committed?, o.lag()?, o.owned)))
        .collect();
    let (first, last) = (seen.first()?, seen.last()?);
    if seen.windows(2).any(|w| w[1].0 < w[0].0) {
        return Some(Status::Rewind);
    }
    if seen.iter().any(|&(_, lag, _)| lag == 0) {
        return Some(Status::Ok);
    }
    if seen.len() < 2 {
        return None;
    }
    if first.0 == last.0 {
        return Some(if last.2 == Some(false) {
            Status::Stop
        } else {
            Status::Stall
        });
    }
    if seen.windows(2).all(|w| w[1].1 > w[0].1) {
        return Some(Status::Warn);
    }
    Some(Status::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(committed: Option<i64>, end: i64, owned: Option<bool>) -> Observation {
        Observation {
            committed,
            end,
            owned,
        }
    }

    /// (committed, end) pairs, owned by a member throughout.
    fn owned(samples: &[(i64, i64)]) -> Vec<Observation> {
        samples
            .iter()
            .map(|&(c, e)| obs(Some(c), e, Some(true)))
            .collect()
    }

    #[test]
    fn status_rules_table() {
        use Status::*;
        let cases: Vec<(&str, Vec<Observation>, Option<Status>)> = vec![
            (
                "caught up throughout",
                owned(&[(10, 10), (12, 12), (15, 15)]),
                Some(Ok),
            ),
            (
                "idle and caught up",
                owned(&[(10, 10), (10, 10), (10, 10)]),
                Some(Ok),
            ),
            (
                "advancing, lag shrinking",
                owned(&[(10, 50), (30, 60), (55, 65)]),
                Some(Ok),
            ),
            (
                "advancing, lag flat",
                owned(&[(10, 20), (20, 30), (30, 40)]),
                Some(Ok),
            ),
            (
                "advancing, lag up then down",
                owned(&[(10, 20), (12, 30), (30, 35)]),
                Some(Ok),
            ),
            (
                "advancing, lag growing every sample",
                owned(&[(10, 20), (12, 30), (14, 40), (16, 50)]),
                Some(Warn),
            ),
            (
                "lag growing but flat once: not every sample",
                owned(&[(10, 20), (12, 30), (22, 40), (24, 50)]),
                Some(Ok),
            ),
            (
                "offset still, lag > 0, owned: stuck consumer",
                owned(&[(10, 20), (10, 20), (10, 20)]),
                Some(Stall),
            ),
            (
                "offset still, end moving, owned",
                owned(&[(10, 20), (10, 25), (10, 30)]),
                Some(Stall),
            ),
            (
                "offset still, lag > 0, nobody owns it",
                vec![
                    obs(Some(10), 20, Some(false)),
                    obs(Some(10), 25, Some(false)),
                    obs(Some(10), 30, Some(false)),
                ],
                Some(Stop),
            ),
            (
                "owner left during the window: the last sample decides",
                vec![
                    obs(Some(10), 20, Some(true)),
                    obs(Some(10), 20, Some(true)),
                    obs(Some(10), 20, Some(false)),
                ],
                Some(Stop),
            ),
            (
                "offset still, ownership unknown: never claims STOP",
                vec![obs(Some(10), 20, None), obs(Some(10), 20, None)],
                Some(Stall),
            ),
            (
                "offset went backwards",
                owned(&[(10, 20), (15, 20), (5, 20)]),
                Some(Rewind),
            ),
            (
                "rewind beats a zero lag",
                owned(&[(20, 20), (5, 20), (20, 20)]),
                Some(Rewind),
            ),
            (
                "lag 0 earlier in the window: OK (Burrow's first rule)",
                owned(&[(10, 10), (10, 15), (10, 20)]),
                Some(Ok),
            ),
            (
                "committed beyond an under-reported end counts as lag 0",
                owned(&[(12, 10), (12, 11)]),
                Some(Ok),
            ),
            ("never committed", vec![obs(None, 20, Some(false)); 3], None),
            (
                "one sample with lag: not enough to judge",
                owned(&[(10, 20)]),
                None,
            ),
            ("one sample caught up", owned(&[(10, 10)]), Some(Ok)),
            (
                "samples without a commit are skipped",
                vec![
                    obs(None, 20, Some(true)),
                    obs(Some(10), 20, Some(true)),
                    obs(Some(10), 22, Some(true)),
                ],
                Some(Stall),
            ),
            ("empty window", vec![], None),
        ];
        for (name, window, want) in cases {
            assert_eq!(evaluate(&window), want, "{name}: {window:?}");
        }
    }

    #[test]
    fn severity_order_is_burrows() {
        use Status::*;
        let mut all = vec![Rewind, Ok, Stall, Warn, Stop];
        all.sort();
        assert_eq!(all, vec![Ok, Warn, Stop, Stall, Rewind]);
    }
}
