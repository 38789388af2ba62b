//! `logpipe dlq stats | show | replay`: the operator tools of the dead-letter topic, gathered
//! under one path for the binary, the command line and the tests.
//!
//! Each command is a library function that returns a struct ([`stats`] → [`DlqStats`], [`show`]
//! → [`Shown`], [`replay`] → [`ReplayReport`]) and a thin `run_*` wrapper that prints it as tables
//! or JSON. All three read the DLQ topic with the same bounded scan ([`DlqScan`]). The code lives
//! in the sibling modules: `filter` (the flags), `record` (a parsed DLQ record), `scan`, `stats`,
//! `show`, `replay`, `print` (the text) and `run` (the `run_*` wrappers).

pub use super::filter::{Filter, ReplayArgs, ShowArgs};
pub use super::print::{preview, truncate};
pub use super::record::{DlqRecord, Unreadable};
pub use super::replay::{
    parked_headers, replay, replay_headers, Action, ReplayAction, ReplayOptions, ReplayReport,
};
pub use super::run::{run_replay, run_show, run_stats};
pub use super::scan::{DlqScan, PartitionProgress, SCAN_IDLE_END, SCAN_STALL_LIMIT};
pub use super::show::{show, Shown};
pub use super::stats::{stats, ClassStats, DlqStats, TopicCount, TypeStats, UnreadableReason};
