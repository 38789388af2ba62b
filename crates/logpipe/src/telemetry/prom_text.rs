//! A reader for the Prometheus text format (and OpenMetrics text, which our `/metrics` serves),
//! just enough for the dashboard and `logpipe loadgen`: samples with their labels and values,
//! histogram buckets, and bucket quantiles. Comments, `# EOF`,
//! timestamps and exemplars are skipped; a malformed line is skipped, never an error, so one odd
//! line from a remote process cannot blank the dashboard.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",...} 1.5`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of one or more expositions (several processes' are simply appended).
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Sample>);

impl Samples {
    pub fn parse(text: &str) -> Self {
        Self(text.lines().filter_map(parse_line).collect())
    }

    /// Appends another exposition (another process of the same role).
    pub fn extend(&mut self, other: Samples) {
        self.0.extend(other.0);
    }

    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| s.name == name)
    }

    pub fn has(&self, name: &str) -> bool {
        self.named(name).next().is_some()
    }

    /// Sum over every sample of `name` (all label sets, all processes).
    pub fn sum(&self, name: &str) -> f64 {
        self.named(name).map(|s| s.value).sum()
    }

    /// The cumulative buckets of histogram `name` (its `<name>_bucket` series, summed over other
    /// labels and processes), ascending by upper bound with `+Inf` last.
    pub fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let mut buckets: Vec<(f64, f64)> = self
            .by_label(&format!("{name}_bucket"), "le")
            .into_iter()
            .filter_map(|(le, count)| le.parse::<f64>().ok().map(|le| (le, count)))
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }

    /// Sums of `name` grouped by the value of `label` (samples without it are left out).
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for s in self.named(name) {
            if let Some(v) = s.label(label) {
                *out.entry(v.to_string()).or_insert(0.0) += s.value;
            }
        }
        out
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let (parsed, remaining) = parse_labels(after)?;
        labels = parsed;
        rest = remaining;
    }
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Parses `a="x",b="y"}` (after the opening brace); returns the labels and what follows `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((labels, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.push((key, value));
        s = &s[end + 1..];
    }
}

/// Bucket-wise `after - before` of two snapshots of one histogram: the observations between them.
pub fn bucket_delta(before: &[(f64, f64)], after: &[(f64, f64)]) -> Vec<(f64, f64)> {
    after
        .iter()
        .map(|&(le, count)| {
            let earlier = before
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, c)| *c);
            (le, (count - earlier).max(0.0))
        })
        .collect()
}

/// The q-quantile (0..=1) of a cumulative histogram given as ascending `(upper bound, count)`
/// pairs ending with `+Inf`, interpolated linearly inside the bucket like PromQL's
/// `histogram_quantile`. `None` when the histogram is empty.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_counters_labels_histograms_and_skips_the_rest() {
        let text = r#"# HELP log_consumer_success Records durably stored
# TYPE log_consumer_success counter
log_consumer_success_total 42
log_consumer_partition_lag{topic="app-logs",partition="3"} 7
weird{msg="a \"quoted\" \\ back\nslash, and } brace",x="1"} 2.5 1700000000
lat_bucket{le="0.5"} 3 # {trace_id="abc"} 0.4
lat_bucket{le="+Inf"} 4
not a sample line
broken{le="1" 3
# EOF
"#;
        let s = Samples::parse(text);
        assert_eq!(s.sum("log_consumer_success_total"), 42.0);
        let lag: Vec<_> = s.named("log_consumer_partition_lag").collect();
        assert_eq!(lag.len(), 1);
        assert_eq!(lag[0].label("partition"), Some("3"));
        assert_eq!(lag[0].label("topic"), Some("app-logs"));
        let weird: Vec<_> = s.named("weird").collect();
        assert_eq!(
            weird[0].label("msg"),
            Some("a \"quoted\" \\ back\nslash, and } brace")
        );
        assert_eq!(weird[0].value, 2.5);
        let buckets = s.by_label("lat_bucket", "le");
        assert_eq!(buckets["0.5"], 3.0);
        assert_eq!(buckets["+Inf"], 4.0);
        assert!("+Inf".parse::<f64>().unwrap().is_infinite());
        assert!(!s.has("broken") && !s.has("not"));
    }

    #[test]
    fn buckets_of_a_run_are_the_difference_of_two_snapshots() {
        let before = Samples::parse(
            "lat_bucket{le=\"0.01\"} 50\nlat_bucket{le=\"0.02\"} 50\nlat_bucket{le=\"+Inf\"} 50\n",
        );
        let after = Samples::parse(
            "lat_bucket{le=\"+Inf\"} 100\nlat_bucket{le=\"0.02\"} 100\nlat_bucket{le=\"0.01\"} 50\n",
        );
        let (b, a) = (before.buckets("lat"), after.buckets("lat"));
        assert_eq!(a, vec![(0.01, 50.0), (0.02, 100.0), (f64::INFINITY, 100.0)]);
        let run = bucket_delta(&b, &a);
        assert_eq!(run, vec![(0.01, 0.0), (0.02, 50.0), (f64::INFINITY, 50.0)]);
        assert!((quantile(0.5, &run).unwrap() - 0.015).abs() < 1e-9);
    }

    #[test]
    fn sums_across_processes() {
        let mut a = Samples::parse("c_total{kind=\"assign\"} 1\nc_total{kind=\"revoke\"} 2\n");
        a.extend(Samples::parse("c_total{kind=\"assign\"} 3\n"));
        assert_eq!(a.sum("c_total"), 6.0);
        assert_eq!(a.by_label("c_total", "kind")["assign"], 4.0);
    }

    #[test]
    fn quantiles_interpolate_inside_buckets_like_histogram_quantile() {
        let inf = f64::INFINITY;
        // 10 in (0, 0.1], 10 in (0.1, 0.2], none above.
        let b = [(0.1, 10.0), (0.2, 20.0), (inf, 20.0)];
        assert_eq!(quantile(0.5, &b), Some(0.1));
        assert!((quantile(0.25, &b).unwrap() - 0.05).abs() < 1e-9);
        assert!((quantile(0.75, &b).unwrap() - 0.15).abs() < 1e-9);
        // Everything above the largest bound: the largest bound.
        assert_eq!(quantile(0.99, &[(0.1, 0.0), (inf, 5.0)]), Some(0.1));
        assert_eq!(quantile(0.5, &[(0.1, 0.0), (inf, 0.0)]), None);
        assert_eq!(quantile(0.5, &[]), None);
    }
}
