//! What replay does with a matching DLQ record, decided from the record alone (pure): republish
//! it to its original topic, or park it once it has been replayed `dlq.max_replays` times; and
//! the headers and timestamp the published copy carries.

use rdkafka::message::{Header, OwnedHeaders};
use serde::Serialize;

use crate::dlq::record::DlqRecord;
use crate::dlq::{headers, ErrorClass};

/// What replay does with a matching record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Republished to its original topic.
    Replay,
    /// Written to the parked topic: it was replayed `dlq.max_replays` times already.
    Park,
}

/// One matching record and what replay did (or, dry, would do) with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayAction {
    pub dlq_partition: i32,
    pub dlq_offset: i64,
    pub original_topic: String,
    pub original_partition: i32,
    pub original_offset: i64,
    pub class: ErrorClass,
    pub error_type: String,
    /// The replay count the published record carries.
    pub replay_count: u32,
    pub action: Action,
    /// Topic written to.
    pub destination: String,
}

/// The action for `record`: parked in `parked_topic` when it was replayed `max_replays` times
/// already, else replayed to its original topic; either way with its replay count plus one.
pub(super) fn plan(record: &DlqRecord, max_replays: u32, parked_topic: &str) -> ReplayAction {
    let c = &record.context;
    let (action, destination) = if c.replay_count >= max_replays {
        (Action::Park, parked_topic.to_string())
    } else {
        (Action::Replay, c.original_topic.clone())
    };
    ReplayAction {
        dlq_partition: record.dlq_partition,
        dlq_offset: record.dlq_offset,
        original_topic: c.original_topic.clone(),
        original_partition: c.original_partition,
        original_offset: c.original_offset,
        class: c.class,
        error_type: c.error_type.clone(),
        replay_count: c.replay_count.saturating_add(1),
        action,
        destination,
    }
}

/// The headers and Kafka timestamp of the copy of `record` that `action` publishes, carrying
/// `replay_count`: a replay keeps the original record's timestamp, a parked record gets the time
/// it is written.
pub(super) fn outgoing(
    record: &DlqRecord,
    action: Action,
    replay_count: u32,
) -> (OwnedHeaders, Option<i64>) {
    match action {
        Action::Replay => (
            replay_headers(&record.headers, replay_count),
            record.context.original_timestamp_ms,
        ),
        Action::Park => (parked_headers(&record.headers, replay_count), None),
    }
}

/// Headers of the record republished to its original topic: every header of the DLQ record
/// except `logpipe-dlq-*` (what remains is the original record's own headers), with
/// `logpipe-replay-count` set to `replay_count`.
pub fn replay_headers(
    dlq_headers: &[(String, Option<Vec<u8>>)],
    replay_count: u32,
) -> OwnedHeaders {
    build_headers(dlq_headers, replay_count, |name| {
        !name.starts_with("logpipe-dlq-")
    })
}

/// Headers of a parked record: every header of the DLQ record, with `logpipe-replay-count` set
/// to `replay_count`.
pub fn parked_headers(
    dlq_headers: &[(String, Option<Vec<u8>>)],
    replay_count: u32,
) -> OwnedHeaders {
    build_headers(dlq_headers, replay_count, |_| true)
}

fn build_headers(
    dlq_headers: &[(String, Option<Vec<u8>>)],
    replay_count: u32,
    keep: impl Fn(&str) -> bool,
) -> OwnedHeaders {
    let count = replay_count.to_string();
    let mut out = OwnedHeaders::new_with_capacity(dlq_headers.len() + 1);
    for (name, value) in dlq_headers {
        if name != headers::REPLAY_COUNT && keep(name) {
            out = out.insert(Header {
                key: name,
                value: value.as_deref(),
            });
        }
    }
    out.insert(Header {
        key: headers::REPLAY_COUNT,
        value: Some(count.as_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dlq::test_support::context;
    use crate::dlq::DlqContext;
    use rdkafka::message::Headers;

    #[test]
    fn replay_headers_drop_dlq_headers_and_bump_the_count() {
        let c = DlqContext {
            replay_count: 1,
            ..context()
        };
        let hs = c.to_headers(&[
            ("logpipe-ingest-ms", b"123"),
            ("logpipe-request-id", b"r-1"),
        ]);
        let list: Vec<(String, Option<Vec<u8>>)> = hs
            .iter()
            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
            .collect();
        let names = |hs: &OwnedHeaders| -> Vec<(String, String)> {
            hs.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        };
        let replayed = names(&replay_headers(&list, 2));
        assert_eq!(
            replayed,
            vec![
                ("logpipe-ingest-ms".into(), "123".into()),
                ("logpipe-request-id".into(), "r-1".into()),
                (headers::REPLAY_COUNT.into(), "2".into()),
            ]
        );
        let parked = parked_headers(&list, 2);
        let back = DlqContext::from_headers(&parked).unwrap();
        assert_eq!(
            back,
            DlqContext {
                replay_count: 2,
                ..c
            }
        );
        assert_eq!(
            names(&parked)
                .iter()
                .filter(|(k, _)| k == headers::REPLAY_COUNT)
                .count(),
            1
        );
    }

    fn record(replay_count: u32) -> DlqRecord {
        let context = DlqContext {
            replay_count,
            original_timestamp_ms: Some(1_700_000_000_000),
            ..context()
        };
        DlqRecord {
            dlq_partition: 3,
            dlq_offset: 42,
            dlq_timestamp_ms: None,
            headers: context
                .to_headers(&[])
                .iter()
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect(),
            context,
            key: None,
            value: None,
        }
    }

    #[test]
    fn a_record_is_replayed_until_it_reached_max_replays_then_parked() {
        let fresh = record(2);
        let planned = plan(&fresh, 3, "parked");
        assert_eq!(
            planned,
            ReplayAction {
                dlq_partition: 3,
                dlq_offset: 42,
                original_topic: "application-logs".into(),
                original_partition: 1,
                original_offset: 10,
                class: ErrorClass::Exhausted,
                error_type: "step:enrich".into(),
                replay_count: 3,
                action: Action::Replay,
                destination: "application-logs".into(),
            }
        );
        let (hs, timestamp) = outgoing(&fresh, planned.action, planned.replay_count);
        assert_eq!(
            timestamp,
            Some(1_700_000_000_000),
            "a replay keeps the time"
        );
        assert!(hs.iter().all(|h| !h.key.starts_with("logpipe-dlq-")));

        let worn = record(3);
        let planned = plan(&worn, 3, "parked");
        assert_eq!(
            (
                planned.action,
                planned.destination.as_str(),
                planned.replay_count
            ),
            (Action::Park, "parked", 4)
        );
        let (hs, timestamp) = outgoing(&worn, planned.action, planned.replay_count);
        assert_eq!(timestamp, None);
        assert_eq!(DlqContext::from_headers(&hs).unwrap().replay_count, 4);
    }
}
