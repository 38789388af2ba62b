//! The text the `dlq` commands print: the tables of `stats`, `show` and `replay` and their
//! summaries, built as strings from the commands' reports (pure; `run` prints them).

use std::fmt::Write as _;

use comfy_table::Cell;

use super::filter::time_text;
use super::record::DlqRecord;
use super::replay::{Action, ReplayReport};
use super::show::Shown;
use super::stats::DlqStats;
use crate::commands::{new_table, right};

/// Rows of the `replay --dry-run` table at most.
const DRY_RUN_ROWS: usize = 500;
/// Widths of truncated columns in `show` tables.
const MESSAGE_WIDTH: usize = 40;
const PREVIEW_WIDTH: usize = 32;

/// `logpipe dlq stats` without `--json`: the totals, then tables by class, error type, original
/// topic and unreadable reason.
pub(super) fn stats_text(s: &DlqStats) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "DLQ topic {}: {} records ({} readable, {} unreadable) in {} partitions",
        s.topic,
        s.total,
        s.readable,
        s.unreadable,
        s.partitions.len()
    );
    if s.total == 0 {
        let _ = writeln!(out, "The dead-letter topic is empty.");
        return out;
    }
    if !s.by_class.is_empty() {
        let mut table = new_table(&[
            "CLASS",
            "COUNT",
            "OLDEST LAST FAILURE",
            "NEWEST LAST FAILURE",
        ]);
        for c in &s.by_class {
            table.add_row(vec![
                Cell::new(c.class.as_str()),
                right(c.count),
                Cell::new(time_text(c.oldest_last_failure)),
                Cell::new(time_text(c.newest_last_failure)),
            ]);
        }
        table.add_row(vec![
            Cell::new("total"),
            right(s.readable),
            Cell::new(""),
            Cell::new(""),
        ]);
        let _ = writeln!(out, "\nBy class\n{table}");
        let mut table = new_table(&[
            "CLASS",
            "TYPE",
            "COUNT",
            "OLDEST LAST FAILURE",
            "NEWEST LAST FAILURE",
        ]);
        for t in &s.by_type {
            table.add_row(vec![
                Cell::new(t.class.as_str()),
                Cell::new(&t.error_type),
                right(t.count),
                Cell::new(time_text(t.oldest_last_failure)),
                Cell::new(time_text(t.newest_last_failure)),
            ]);
        }
        let _ = writeln!(out, "\nBy error type\n{table}");
        let mut table = new_table(&["ORIGINAL TOPIC", "COUNT"]);
        for t in &s.by_original_topic {
            table.add_row(vec![Cell::new(&t.topic), right(t.count)]);
        }
        let _ = writeln!(out, "\nBy original topic\n{table}");
    }
    if !s.unreadable_reasons.is_empty() {
        let mut table = new_table(&["UNREADABLE: REASON", "COUNT", "FIRST AT (PARTITION/OFFSET)"]);
        for u in &s.unreadable_reasons {
            table.add_row(vec![
                Cell::new(&u.reason),
                right(u.count),
                Cell::new(format!("{}/{}", u.first_partition, u.first_offset)),
            ]);
        }
        let _ = writeln!(out, "\n{table}");
        let _ = writeln!(
            out,
            "Unreadable records lack logpipe's DLQ headers (written by another producer, or damaged); `dlq replay` \
             skips them. Inspect one with a Kafka client at the partition/offset shown."
        );
    }
    out
}

/// The table of `logpipe dlq show` (stdout), or `None` when no record is shown.
pub(super) fn show_table(records: &[DlqRecord]) -> Option<String> {
    if records.is_empty() {
        return None;
    }
    let mut table = new_table(&[
        "DLQ P/OFF",
        "ORIGINAL TOPIC/P/OFF",
        "CLASS",
        "TYPE",
        "TRIES",
        "REPLAYS",
        "LAST FAILURE",
        "ERROR",
        "VALUE",
    ]);
    // Fits the terminal when there is one (long cells wrap); piped output keeps one line each.
    table.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    for r in records {
        let c = &r.context;
        table.add_row(vec![
            Cell::new(format!("{}/{}", r.dlq_partition, r.dlq_offset)),
            Cell::new(format!(
                "{}/{}/{}",
                c.original_topic, c.original_partition, c.original_offset
            )),
            Cell::new(c.class.as_str()),
            Cell::new(&c.error_type),
            right(c.attempts),
            right(c.replay_count),
            Cell::new(time_text(c.last_failure)),
            Cell::new(truncate(&c.error_message, MESSAGE_WIDTH)),
            Cell::new(preview(r.value.as_deref(), PREVIEW_WIDTH)),
        ]);
    }
    Some(table.to_string())
}

/// What `logpipe dlq show` says on stderr after the records: how many were shown of how many,
/// where from and with which `filters`, and how many were unreadable.
pub(super) fn show_summary(shown: &Shown, dlq_topic: &str, filters: &str) -> String {
    let limited = if shown.matched > shown.records.len() as u64 {
        " (the most recent by last failure; raise --limit or narrow with --type/--since to see others)"
    } else {
        ""
    };
    let mut out = format!(
        "{} of {} matching records shown{limited}; {} records in `{dlq_topic}`, filters: {filters}\n",
        shown.records.len(),
        shown.matched,
        shown.scanned,
    );
    if !shown.unreadable.is_empty() {
        let _ = writeln!(
            out,
            "{} unreadable records left out (see `logpipe dlq stats`)",
            shown.unreadable.len()
        );
    }
    out
}

/// `logpipe dlq replay` without `--json`: on a dry run the planned actions, then the counts, the
/// offsets reviewed with `filters`, where the replay group stands, and the unreadable records.
pub(super) fn replay_text(
    r: &ReplayReport,
    dlq_topic: &str,
    parked_topic: &str,
    filters: &str,
) -> String {
    let mut out = String::new();
    if r.dry_run && !r.actions.is_empty() {
        let mut table = new_table(&[
            "DLQ P/OFFSET",
            "ORIGINAL TOPIC/P/OFFSET",
            "CLASS",
            "TYPE",
            "REPLAYS AFTER",
            "WOULD",
        ]);
        for a in r.actions.iter().take(DRY_RUN_ROWS) {
            table.add_row(vec![
                Cell::new(format!("{}/{}", a.dlq_partition, a.dlq_offset)),
                Cell::new(format!(
                    "{}/{}/{}",
                    a.original_topic, a.original_partition, a.original_offset
                )),
                Cell::new(a.class.as_str()),
                Cell::new(&a.error_type),
                right(a.replay_count),
                Cell::new(match a.action {
                    Action::Replay => format!("replay → {}", a.destination),
                    Action::Park => format!("park → {}", a.destination),
                }),
            ]);
        }
        let _ = writeln!(out, "{table}");
        if r.actions.len() > DRY_RUN_ROWS {
            let _ = writeln!(
                out,
                "... and {} more (--json lists them all)",
                r.actions.len() - DRY_RUN_ROWS
            );
        }
    }
    let verb = |done: &str, dry: &str| {
        if r.dry_run {
            dry.to_string()
        } else {
            done.to_string()
        }
    };
    let mut table = new_table(&["RESULT", "RECORDS"]);
    table.add_row(vec![
        Cell::new(verb(
            "replayed to original topics",
            "would replay to original topics",
        )),
        right(r.replayed),
    ]);
    table.add_row(vec![
        Cell::new(verb(
            &format!("parked in {parked_topic}"),
            &format!("would park in {parked_topic}"),
        )),
        right(r.parked),
    ]);
    table.add_row(vec![
        Cell::new("skipped by filter"),
        right(r.skipped_by_filter),
    ]);
    table.add_row(vec![
        Cell::new("unreadable (skipped)"),
        right(r.unreadable.len()),
    ]);
    let _ = writeln!(out, "{table}");
    let reviewed: Vec<String> = r
        .partitions
        .iter()
        .map(|p| format!("{}: {}..{}", p.partition, p.start_offset, p.end_offset))
        .collect();
    let _ = writeln!(
        out,
        "Reviewed `{dlq_topic}` partitions {} (filters: {filters}).",
        reviewed.join(", "),
    );
    if r.dry_run {
        let _ = writeln!(
            out,
            "Dry run: nothing was published and group `{}` was not moved. Run without --dry-run to do it.",
            r.group
        );
    } else if r.committed.is_empty() {
        let _ = writeln!(
            out,
            "Nothing new to review: group `{}` had already reviewed up to the end. --from-beginning reviews the whole topic again.",
            r.group
        );
    } else {
        let _ = writeln!(
            out,
            "Group `{}` now starts the next replay after what was reviewed here, skipped records included; \
             --from-beginning reviews the whole topic again.",
            r.group
        );
    }
    if r.limit_reached {
        let _ = writeln!(out, "Stopped at --limit; run again to continue.");
    }
    for u in &r.unreadable {
        let _ = writeln!(
            out,
            "unreadable DLQ record {}/{} skipped: {}",
            u.dlq_partition, u.dlq_offset, u.reason
        );
    }
    out
}

/// At most `width` characters, control characters shown as spaces, `…` when cut.
pub fn truncate(text: &str, width: usize) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if clean.chars().count() <= width {
        clean
    } else {
        let mut out: String = clean.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A value as text for a table cell: UTF-8 truncated, or `<N bytes, not UTF-8>`.
pub fn preview(value: Option<&[u8]>, width: usize) -> String {
    match value {
        None => "<null>".into(),
        Some(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => truncate(text, width),
            Err(_) => format!("<{} bytes, not UTF-8>", bytes.len()),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::dlq::record::Unreadable;
    use crate::dlq::scan::PartitionProgress;
    use crate::dlq::test_support::context;

    #[test]
    fn previews_truncate_and_mark_binary() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("a\nb", 10), "a b");
        assert_eq!(preview(Some(&[0xff, 0x00]), 10), "<2 bytes, not UTF-8>");
        assert_eq!(preview(None, 10), "<null>");
    }

    #[test]
    fn an_empty_dlq_says_so_and_prints_no_tables() {
        let s = DlqStats {
            topic: "dlq".into(),
            total: 0,
            readable: 0,
            unreadable: 0,
            by_class: Vec::new(),
            by_type: Vec::new(),
            by_original_topic: Vec::new(),
            unreadable_reasons: Vec::new(),
            partitions: Vec::new(),
        };
        assert_eq!(
            stats_text(&s),
            "DLQ topic dlq: 0 records (0 readable, 0 unreadable) in 0 partitions\n\
             The dead-letter topic is empty.\n"
        );
    }

    #[test]
    fn the_show_summary_tells_when_the_limit_cut_and_counts_unreadable_records() {
        let record = DlqRecord {
            dlq_partition: 0,
            dlq_offset: 1,
            dlq_timestamp_ms: None,
            context: context(),
            key: None,
            value: Some(b"{\"msg\":\"x\"}".to_vec()),
            headers: Vec::new(),
        };
        let shown = Shown {
            records: vec![record],
            matched: 3,
            scanned: 5,
            unreadable: vec![Unreadable {
                dlq_partition: 0,
                dlq_offset: 4,
                reason: "no headers".into(),
            }],
        };
        let text = show_summary(&shown, "dlq", "none");
        assert!(
            text.starts_with("1 of 3 matching records shown (the most recent by last failure;"),
            "{text}"
        );
        assert!(
            text.contains("; 5 records in `dlq`, filters: none\n"),
            "{text}"
        );
        assert!(text.ends_with("1 unreadable records left out (see `logpipe dlq stats`)\n"));
        let table = show_table(&shown.records).unwrap();
        assert!(table.contains("application-logs/1/10"), "{table}");
        assert!(show_table(&[]).is_none());
    }

    #[test]
    fn a_dry_run_lists_what_it_would_do_and_moves_no_group() {
        let r = ReplayReport {
            dry_run: true,
            group: "replayers".into(),
            replayed: 0,
            parked: 1,
            skipped_by_filter: 2,
            unreadable: Vec::new(),
            actions: vec![super::super::replay::ReplayAction {
                dlq_partition: 0,
                dlq_offset: 7,
                original_topic: "application-logs".into(),
                original_partition: 1,
                original_offset: 10,
                class: crate::dlq::ErrorClass::Exhausted,
                error_type: "step:enrich".into(),
                replay_count: 4,
                action: Action::Park,
                destination: "parked".into(),
            }],
            committed: BTreeMap::new(),
            partitions: vec![PartitionProgress {
                partition: 0,
                start_offset: 0,
                high_watermark_at_start: 8,
                end_offset: 8,
                records: 8,
            }],
            limit_reached: false,
            failure: None,
        };
        let text = replay_text(&r, "dlq", "parked", "none");
        assert!(text.contains("park → parked"), "{text}");
        assert!(text.contains("would park in parked"), "{text}");
        assert!(text.contains("Reviewed `dlq` partitions 0: 0..8 (filters: none)."));
        assert!(
            text.contains("Dry run: nothing was published and group `replayers` was not moved.")
        );
    }
}
