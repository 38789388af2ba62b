//! What `logpipe aggregates verify|rebuild` print: readable tables (runs of consecutive minutes
//! with the same service, level and sign collapsed into one row, so a lost hour is one line),
//! summaries, or JSON for scripts.

use comfy_table::Cell;
use logpipe_model::Level;
use serde_json::json;

use super::rebuild::RebuildReport;
use super::verify::{Mismatch, VerifyReport};
use super::window::stamp;
use crate::commands::{new_table, right};

/// Consecutive minutes of one cell key with differences of one sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub first: i64,
    pub last: i64,
    pub service: String,
    pub key: String,
    pub aggregates: u64,
    pub store: u64,
}

impl Run {
    fn minutes(&self) -> String {
        if self.first == self.last {
            stamp(self.first)
        } else {
            let minutes = (self.last - self.first) / 60 + 1;
            let last = stamp(self.last);
            // Only the time of the last minute when both fall on the same day.
            let last = if last[..10] == stamp(self.first)[..10] {
                last[11..].to_owned()
            } else {
                last
            };
            format!("{}–{last} ({minutes} min)", stamp(self.first))
        }
    }

    fn diff(&self) -> i64 {
        self.store as i64 - self.aggregates as i64
    }
}

/// Collapses mismatches into runs: same service and key, same sign, minutes one after another.
pub fn runs(mismatches: &[Mismatch]) -> Vec<Run> {
    let mut sorted: Vec<&Mismatch> = mismatches.iter().collect();
    sorted.sort_by(|a, b| (&a.service, &a.key, a.minute).cmp(&(&b.service, &b.key, b.minute)));
    let mut runs: Vec<Run> = Vec::new();
    for m in sorted {
        if let Some(run) = runs.last_mut() {
            if run.service == m.service
                && run.key == m.key
                && run.last + 60 == m.minute
                && run.diff().signum() == m.diff().signum()
            {
                run.last = m.minute;
                run.aggregates += m.aggregates;
                run.store += m.store;
                continue;
            }
        }
        runs.push(Run {
            first: m.minute,
            last: m.minute,
            service: m.service.clone(),
            key: m.key.clone(),
            aggregates: m.aggregates,
            store: m.store,
        });
    }
    runs.sort_by(|a, b| {
        (a.first, &a.service, level_rank(&a.key)).cmp(&(b.first, &b.service, level_rank(&b.key)))
    });
    runs
}

/// Levels in severity order, fingerprints after them.
fn level_rank(key: &str) -> (usize, &str) {
    let rank = Level::ALL
        .iter()
        .position(|level| level.as_str() == key)
        .unwrap_or(Level::ALL.len());
    (rank, key)
}

/// `verify`'s output: the window, then a table per kind of difference (at most `limit` rows
/// each), then one summary line.
pub fn verify_text(report: &VerifyReport, limit: usize) -> String {
    let mut out = format!(
        "Compared {} minutes, {} – {} UTC{}: {} events in the aggregates, {} rows in the store at the same watermarks ({} rows read, {:.1} s).\n",
        report.window.minutes(),
        stamp(report.window.from),
        stamp(report.window.until),
        report.service.as_ref().map_or(String::new(), |s| format!(", service {s}")),
        report.live_events,
        report.store_events,
        report.rows,
        report.seconds,
    );
    if let Some(asked) = report.window.clamped_from {
        out.push_str(&format!(
            "Started at {} instead of {}: earlier minutes may expire from the aggregates (redis.minute_ttl) or the store (postgres.retention_days) during the run.\n",
            stamp(report.window.from),
            stamp(asked)
        ));
    }
    if let Some(holder) = &report.rebuilding {
        out.push_str(&format!(
            "A rebuild is running ({holder}): differences may be what it is about to correct.\n"
        ));
    }
    out.push_str(&uncut_text(&report.uncut));
    for (title, mismatches, key) in [
        ("Counts by level", &report.counts, "LEVEL"),
        ("Error fingerprints", &report.errors, "FINGERPRINT"),
    ] {
        let runs = runs(mismatches);
        if runs.is_empty() {
            continue;
        }
        let mut table = new_table(&[
            "MINUTES (UTC)",
            "SERVICE",
            key,
            "AGGREGATES",
            "STORE",
            "DIFF",
        ]);
        for run in runs.iter().take(limit) {
            table.add_row(vec![
                Cell::new(run.minutes()),
                Cell::new(&run.service),
                Cell::new(&run.key),
                right(run.aggregates),
                right(run.store),
                right(format!("{:+}", run.diff())),
            ]);
        }
        out.push_str(&format!("\n{title}:\n{table}\n"));
        if runs.len() > limit {
            out.push_str(&format!("… and {} more (--limit)\n", runs.len() - limit));
        }
    }
    if report.agrees() {
        out.push_str("\nOK: the aggregates agree with the store, minute by minute.\n");
    } else {
        let missing: i64 = report.counts.iter().map(Mismatch::diff).sum();
        out.push_str(&format!(
            "\nDIFFERENCES: {} count cells and {} error cells differ (store − aggregates = {missing:+} events). \
             `logpipe aggregates rebuild` with the same window corrects them.\n",
            report.counts.len(),
            report.errors.len()
        ));
    }
    out
}

pub fn verify_json(report: &VerifyReport) -> serde_json::Value {
    json!({
        "from": stamp(report.window.from),
        "until": stamp(report.window.until),
        "service": report.service,
        "agrees": report.agrees(),
        "aggregates_events": report.live_events,
        "store_events": report.store_events,
        "rows_read": report.rows,
        "seconds": report.seconds,
        "rebuilding": report.rebuilding,
        "uncut": report.uncut.iter().map(|(t, p, rows)| json!({"topic": t, "partition": p, "rows": rows})).collect::<Vec<_>>(),
        "counts": report.counts,
        "errors": report.errors,
    })
}

/// `rebuild`'s summary table.
pub fn rebuild_text(report: &RebuildReport) -> String {
    let mut table = new_table(&["", ""]);
    let mut row = |name: &str, value: String| {
        table.add_row(vec![Cell::new(name), Cell::new(value)]);
    };
    row(
        "window (UTC)",
        format!(
            "{} – {} ({} min, {} chunks)",
            stamp(report.from),
            stamp(report.until),
            (report.until - report.from) / 60,
            report.chunks
        ),
    );
    row(
        "services",
        report.service.clone().unwrap_or_else(|| "all".into()),
    );
    row(
        "read from the store",
        format!("{} rows, {:.0} rows/s", report.rows, report.rows_per_second),
    );
    row(
        "corrected",
        format!(
            "{} cells in {} minutes, {:+} events, {} batches",
            report.cells_changed, report.minutes_changed, report.events_added, report.batches
        ),
    );
    row("totals", totals_text(report));
    if report.clamped > 0 {
        row(
            "clamped at 0",
            format!(
                "{} cells (a key was lost during the run: run verify)",
                report.clamped
            ),
        );
    }
    row("took", format!("{:.1} s", report.seconds));
    let mut out = format!("{table}\n");
    out.push_str(&uncut_text(&report.uncut));
    out
}

fn totals_text(report: &RebuildReport) -> String {
    match (&report.totals_added, &report.totals_note) {
        (Some(added), _) => {
            let parts: Vec<String> = Level::ALL
                .iter()
                .zip(added)
                .filter(|(_, n)| **n != 0)
                .map(|(level, n)| format!("{} {n:+}", level.as_str()))
                .collect();
            if parts.is_empty() {
                "unchanged".into()
            } else {
                format!("adjusted: {}", parts.join(", "))
            }
        }
        (None, Some(note)) => note.clone(),
        (None, None) => "unchanged".into(),
    }
}

pub fn rebuild_json(report: &RebuildReport) -> serde_json::Value {
    let mut value = serde_json::to_value(report).unwrap_or_default();
    value["from"] = json!(stamp(report.from));
    value["until"] = json!(stamp(report.until));
    value
}

fn uncut_text(uncut: &[(String, i32, u64)]) -> String {
    if uncut.is_empty() {
        return String::new();
    }
    let rows: u64 = uncut.iter().map(|u| u.2).sum();
    let list: Vec<String> = uncut
        .iter()
        .take(6)
        .map(|(t, p, n)| format!("{t}/{p} ({n})"))
        .collect();
    format!(
        "NOT COUNTED: {rows} stored rows of {} partitions with no watermark in the aggregates ({}{}). \
         A consumer restores a lost watermark within seconds of owning the partition; start the consumers, then run again.\n",
        uncut.len(),
        list.join(", "),
        if uncut.len() > 6 { ", …" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(minute: i64, service: &str, key: &str, aggregates: u64, store: u64) -> Mismatch {
        Mismatch {
            minute,
            service: service.into(),
            key: key.into(),
            aggregates,
            store,
        }
    }

    #[test]
    fn consecutive_minutes_of_one_cell_and_sign_collapse() {
        let base = 1_764_950_400; // 2025-12-05 16:00 UTC
        let runs = runs(&[
            m(base, "api", "INFO", 0, 5),
            m(base + 60, "api", "INFO", 1, 4),
            m(base + 120, "api", "INFO", 9, 4), // sign flips: a new run
            m(base + 240, "api", "INFO", 0, 1), // a gap: a new run
            m(base, "api", "ERROR", 0, 2),
        ]);
        assert_eq!(runs.len(), 4);
        assert_eq!((runs[0].key.as_str(), runs[0].store), ("INFO", 9));
        assert_eq!(runs[0].minutes(), "2025-12-05 16:00–16:01 (2 min)");
        assert_eq!(runs[1].key, "ERROR");
        assert_eq!(runs[2].diff(), -5);
        assert_eq!(runs[3].first, base + 240);
    }
}
