//! A reader for the Prometheus text format (and OpenMetrics text, which our `/metrics` serves),
//! just enough for the dashboard's gateway counters: samples with their labels and values, summed
//! or grouped by a label. (The consumer's figures are read as typed data instead:
//! [`super::stats`].) Comments, `# EOF`, timestamps and exemplars are skipped; a malformed line is skipped, never an error, so one odd
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

/// The samples of an exposition.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Sample>);

impl Samples {
    pub fn parse(text: &str) -> Self {
        Self(text.lines().filter_map(parse_line).collect())
    }

    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| s.name == name)
    }

    /// Sum over every sample of `name` (all label sets).
    pub fn sum(&self, name: &str) -> f64 {
        self.named(name).map(|s| s.value).sum()
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
        assert!(s.named("broken").next().is_none() && s.named("not").next().is_none());
    }

    #[test]
    fn sums_over_label_sets() {
        let a = Samples::parse(
            "c_total{kind=\"assign\"} 1\nc_total{kind=\"revoke\"} 2\nc_total{kind=\"assign\"} 3\n",
        );
        assert_eq!(a.sum("c_total"), 6.0);
        assert_eq!(a.by_label("c_total", "kind")["assign"], 4.0);
    }
}
