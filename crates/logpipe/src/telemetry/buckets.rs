//! Histogram buckets as plain data: what a [`ReadableHistogram`] holds, what the consumer's
//! `/stats` sends, and the one place percentiles are estimated from buckets ([`Buckets::quantile`],
//! interpolated like PromQL's `histogram_quantile`).
//!
//! `prometheus_client` keeps a histogram's buckets to itself (they can only be rendered as text),
//! so [`ReadableHistogram`] counts every observation twice: in the exported histogram and in its
//! own buckets, which this process reads directly.

use std::sync::{Arc, Mutex};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use serde::{Deserialize, Serialize};

/// One cumulative bucket: observations at or below `le` (seconds); `le: None` is `+Inf`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub le: Option<f64>,
    pub count: u64,
}

impl Bucket {
    fn bound(&self) -> f64 {
        self.le.unwrap_or(f64::INFINITY)
    }
}

/// A histogram's cumulative buckets (ascending, `+Inf` last), count and sum.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Buckets {
    pub buckets: Vec<Bucket>,
    pub count: u64,
    pub sum: f64,
}

impl Buckets {
    /// The mean observation, when there was any.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The q-quantile (0..=1), interpolated linearly inside its bucket like PromQL's
    /// `histogram_quantile`. `None` when the histogram is empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.count as f64;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for bucket in &self.buckets {
            let (le, count) = (bucket.bound(), bucket.count as f64);
            if count >= rank {
                if le.is_infinite() {
                    // Beyond the largest finite bound: that bound is all we know.
                    return Some(lower);
                }
                if count <= below {
                    return Some(le);
                }
                return Some(lower + (le - lower) * (rank - below) / (count - below));
            }
            (lower, below) = (le, count);
        }
        Some(lower)
    }

    /// The observations since `before` (an earlier snapshot of the same histogram).
    pub fn since(&self, before: &Buckets) -> Buckets {
        let buckets = self
            .buckets
            .iter()
            .map(|b| {
                let earlier = before
                    .buckets
                    .iter()
                    .find(|e| e.le == b.le)
                    .map_or(0, |e| e.count);
                Bucket {
                    le: b.le,
                    count: b.count.saturating_sub(earlier),
                }
            })
            .collect();
        Buckets {
            buckets,
            count: self.count.saturating_sub(before.count),
            sum: (self.sum - before.sum).max(0.0),
        }
    }

    /// Adds another process's histogram (buckets matched by bound).
    pub fn add(&mut self, other: &Buckets) {
        for b in &other.buckets {
            match self.buckets.iter_mut().find(|mine| mine.le == b.le) {
                Some(mine) => mine.count += b.count,
                None => self.buckets.push(*b),
            }
        }
        self.buckets.sort_by(|a, b| a.bound().total_cmp(&b.bound()));
        self.count += other.count;
        self.sum += other.sum;
    }
}

/// A Prometheus histogram this process can also read: registered and rendered exactly like the
/// [`Histogram`] it wraps, with the same buckets kept readable beside it.
#[derive(Debug, Clone)]
pub struct ReadableHistogram {
    exported: Histogram,
    bounds: Arc<[f64]>,
    tally: Arc<Mutex<Tally>>,
}

#[derive(Debug, Default)]
struct Tally {
    /// Observations per bucket (not cumulative); the last is above every bound.
    counts: Vec<u64>,
    sum: f64,
}

impl ReadableHistogram {
    pub fn new(bounds: &[f64]) -> Self {
        Self {
            exported: Histogram::new(bounds.iter().copied()),
            bounds: bounds.into(),
            tally: Arc::new(Mutex::new(Tally {
                counts: vec![0; bounds.len() + 1],
                sum: 0.0,
            })),
        }
    }

    pub fn observe(&self, v: f64) {
        self.exported.observe(v);
        let slot = self.bounds.partition_point(|le| *le < v);
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        tally.counts[slot] += 1;
        tally.sum += v;
    }

    /// The buckets now.
    pub fn buckets(&self) -> Buckets {
        let tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        let mut cumulative = 0;
        let les = self.bounds.iter().map(|le| Some(*le)).chain([None]);
        let buckets = les
            .zip(&tally.counts)
            .map(|(le, n)| {
                cumulative += n;
                Bucket {
                    le,
                    count: cumulative,
                }
            })
            .collect();
        Buckets {
            buckets,
            count: cumulative,
            sum: tally.sum,
        }
    }
}

impl EncodeMetric for ReadableHistogram {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.exported.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.exported.metric_type()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(pairs: &[(Option<f64>, u64)]) -> Buckets {
        Buckets {
            buckets: pairs
                .iter()
                .map(|&(le, count)| Bucket { le, count })
                .collect(),
            count: pairs.last().map_or(0, |p| p.1),
            sum: 0.0,
        }
    }

    #[test]
    fn quantiles_interpolate_inside_buckets_like_histogram_quantile() {
        // 10 in (0, 0.1], 10 in (0.1, 0.2], none above.
        let b = buckets(&[(Some(0.1), 10), (Some(0.2), 20), (None, 20)]);
        assert_eq!(b.quantile(0.5), Some(0.1));
        assert!((b.quantile(0.25).unwrap() - 0.05).abs() < 1e-9);
        assert!((b.quantile(0.75).unwrap() - 0.15).abs() < 1e-9);
        // Everything above the largest bound: the largest bound.
        assert_eq!(
            buckets(&[(Some(0.1), 0), (None, 5)]).quantile(0.99),
            Some(0.1)
        );
        assert_eq!(buckets(&[(Some(0.1), 0), (None, 0)]).quantile(0.5), None);
        assert_eq!(Buckets::default().quantile(0.5), None);
    }

    #[test]
    fn buckets_of_a_run_are_the_difference_of_two_snapshots() {
        let before = buckets(&[(Some(0.01), 50), (Some(0.02), 50), (None, 50)]);
        let after = buckets(&[(Some(0.01), 50), (Some(0.02), 100), (None, 100)]);
        let run = after.since(&before);
        assert_eq!(
            run,
            buckets(&[(Some(0.01), 0), (Some(0.02), 50), (None, 50)])
        );
        assert!((run.quantile(0.5).unwrap() - 0.015).abs() < 1e-9);
    }

    #[test]
    fn processes_add_bucket_by_bucket() {
        let mut a = buckets(&[(Some(0.01), 5), (Some(0.1), 10), (None, 10)]);
        a.sum = 0.3;
        let mut b = buckets(&[(Some(0.01), 0), (Some(0.1), 10), (None, 10)]);
        b.sum = 1.0;
        a.add(&b);
        assert_eq!(a.count, 20);
        assert_eq!(a.buckets[0].count, 5);
        assert_eq!(
            a.buckets[2],
            Bucket {
                le: None,
                count: 20
            }
        );
        assert!((a.mean().unwrap() - 0.065).abs() < 1e-9);
        let mut empty = Buckets::default();
        empty.add(&a);
        assert_eq!(empty, a);
    }

    #[test]
    fn a_readable_histogram_reads_back_what_it_renders() {
        let h = ReadableHistogram::new(&[0.01, 0.1]);
        for v in [0.005, 0.01, 0.05, 5.0] {
            h.observe(v);
        }
        let b = h.buckets();
        let counts: Vec<_> = b.buckets.iter().map(|b| (b.le, b.count)).collect();
        // `le` is inclusive, as in Prometheus.
        assert_eq!(counts, vec![(Some(0.01), 2), (Some(0.1), 3), (None, 4)]);
        assert_eq!(b.count, 4);
        assert!((b.sum - 5.065).abs() < 1e-9);

        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("lat", "latency", h.clone());
        let text = crate::telemetry::metrics::render(&registry);
        assert!(text.contains("lat_bucket{le=\"0.1\"} 3"), "{text}");
        assert!(text.contains("lat_count 4"), "{text}");
    }
}
