//! How a report is shown: the table with its summary line and notes, or one JSON object.

use comfy_table::Cell;

use super::report::LagReport;
use crate::commands::{new_table, right};

/// Prints `report` as the table, or as one line of JSON.
pub(super) fn print_report(report: &LagReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        println!("{}", render(report));
    }
    Ok(())
}

/// The table and the summary, as printed.
pub fn render(report: &LagReport) -> String {
    let mut table = new_table(&[
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "LAG-TIME",
        "STATUS",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    let dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    for p in &report.partitions {
        table.add_row(vec![
            Cell::new(&p.group),
            Cell::new(&p.topic),
            right(p.partition.to_string()),
            right(dash(p.current_offset.map(|o| o.to_string()))),
            right(p.log_end_offset.to_string()),
            right(dash(p.lag.map(|l| l.to_string()))),
            right(dash(p.lag_seconds.map(format_seconds))),
            Cell::new(dash(p.status.map(|s| s.to_string()))),
            Cell::new(dash(p.consumer_id.clone())),
            Cell::new(dash(p.host.clone())),
            Cell::new(dash(p.client_id.clone())),
        ]);
    }
    let s = &report.summary;
    let mut out = format!("{table}\n");
    let group_line = match (&report.state, &report.protocol) {
        (Some(state), Some(protocol)) => {
            format!("{state}, {} member(s), {protocol}", report.members.len())
        }
        (Some(state), None) => format!("{state}, {} member(s)", report.members.len()),
        _ => "members unknown".into(),
    };
    let statuses: Vec<String> = s
        .status_counts
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    out.push_str(&format!(
        "group {} ({group_line}) | total lag {} | max lag {}{} | max lag time {} | worst status {}{} | window {} sample{} over {}",
        report.group,
        s.total_lag,
        s.max_lag,
        s.max_lag_partition
            .as_ref()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default(),
        s.max_lag_seconds.map(format_seconds).unwrap_or_else(|| "-".into()),
        s.worst_status.map(|w| w.to_string()).unwrap_or_else(|| "-".into()),
        if statuses.is_empty() {
            String::new()
        } else {
            format!(" ({})", statuses.join(", "))
        },
        report.window.samples,
        if report.window.samples == 1 { "" } else { "s" },
        format_seconds(report.window.seconds),
    ));
    for note in &report.notes {
        out.push_str(&format!("\nnote: {note}"));
    }
    out
}

/// `0s`, `4.2s`, `3m05s`, `2h07m`, `3d04h`.
pub fn format_seconds(seconds: f64) -> String {
    if seconds < 60.0 {
        let tenths = (seconds * 10.0).round() / 10.0;
        return if tenths.fract() == 0.0 {
            format!("{tenths:.0}s")
        } else {
            format!("{tenths:.1}s")
        };
    }
    let total = seconds.round() as u64;
    let (d, h, m, s) = (
        total / 86_400,
        total / 3600 % 24,
        total / 60 % 60,
        total % 60,
    );
    if d > 0 {
        format!("{d}d{h:02}h")
    } else if h > 0 {
        format!("{h}h{m:02}m")
    } else {
        format!("{m}m{s:02}s")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::lag::fixtures::{busy_lag_seconds, busy_window, members_unknown_window};
    use crate::lag::report::build_report;

    #[test]
    fn table_summary_and_notes() {
        let report = build_report("grp", &busy_window(), &busy_lag_seconds());
        let text = render(&report);
        assert!(
            text.contains("CURRENT-OFFSET") && text.contains("CLIENT-ID"),
            "{text}"
        );
        assert!(
            text.contains("total lag 10") && text.contains("worst status STALL"),
            "{text}"
        );
        assert!(text.contains("42.5s"), "{text}");

        // Members unknown: the summary says so.
        let report = build_report("grp", &members_unknown_window(), &BTreeMap::new());
        assert!(render(&report).contains("members unknown"));
    }

    #[test]
    fn seconds_are_formatted_for_people() {
        for (s, want) in [
            (0.0, "0s"),
            (4.23, "4.2s"),
            (59.94, "59.9s"),
            (185.0, "3m05s"),
            (7620.0, "2h07m"),
            (273_600.0, "3d04h"),
        ] {
            assert_eq!(format_seconds(s), want, "{s}");
        }
    }
}
