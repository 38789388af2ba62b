//! KIP-848 groups: ConsumerGroupDescribe through librdkafka.
//!
//! Describes a group with librdkafka's admin call `rd_kafka_DescribeConsumerGroups`, which sends
//! ConsumerGroupDescribe (the KIP-848 describe) and falls back to DescribeGroups for classic
//! groups. rust-rdkafka has no safe wrapper for it, hence the one `unsafe` module of the crate:
//! every pointer read here belongs to the result event, which lives until the end of
//! [`describe`], and every string is copied before it is destroyed.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr, CString};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::consumer::{BaseConsumer, Consumer};

use super::assignment::TopicAssignment;
use super::group::{GroupView, Member};

/// The group as ConsumerGroupDescribe sees it; `Ok(None)` when it is not a consumer-protocol
/// group (classic, or unknown to the broker), which DescribeGroups describes instead.
pub(super) fn describe(
    consumer: &BaseConsumer,
    group: &str,
    timeout: Duration,
) -> Result<Option<GroupView>, String> {
    let name = CString::new(group).map_err(|_| "the group id contains a NUL byte".to_string())?;
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let rk = consumer.client().native_ptr();
    // SAFETY: `rk` is a live client for the whole call; the queue, options and event are
    // created and destroyed here; `names` outlives the call that reads it.
    unsafe {
        let queue = rd::rd_kafka_queue_new(rk);
        let options = rd::rd_kafka_AdminOptions_new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS,
        );
        let mut errstr = [0 as c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(
            options,
            timeout_ms,
            errstr.as_mut_ptr(),
            errstr.len(),
        );
        let mut names = [name.as_ptr()];
        rd::rd_kafka_DescribeConsumerGroups(rk, names.as_mut_ptr(), 1, options, queue);
        rd::rd_kafka_AdminOptions_destroy(options);
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
        let result = if event.is_null() {
            Err(format!(
                "DescribeConsumerGroups did not answer within {}ms",
                timeout_ms
            ))
        } else {
            let read = read_event(event);
            rd::rd_kafka_event_destroy(event);
            read
        };
        rd::rd_kafka_queue_destroy(queue);
        result
    }
}

/// Copies a C string (`None` for NULL).
unsafe fn text(ptr: *const c_char) -> Option<String> {
    (!ptr.is_null()).then(|| CStr::from_ptr(ptr).to_string_lossy().into_owned())
}

unsafe fn read_event(event: *mut rd::rd_kafka_event_t) -> Result<Option<GroupView>, String> {
    if rd::rd_kafka_event_error(event) != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        let why = text(rd::rd_kafka_event_error_string(event)).unwrap_or_default();
        return Err(format!("DescribeConsumerGroups failed: {why}"));
    }
    let result = rd::rd_kafka_event_DescribeConsumerGroups_result(event);
    if result.is_null() {
        return Err("DescribeConsumerGroups returned no result".into());
    }
    let mut count = 0usize;
    let groups = rd::rd_kafka_DescribeConsumerGroups_result_groups(result, &mut count);
    if groups.is_null() || count == 0 {
        return Err("DescribeConsumerGroups returned no group".into());
    }
    let desc = *groups;
    let error = rd::rd_kafka_ConsumerGroupDescription_error(desc);
    if !error.is_null() {
        let why = text(rd::rd_kafka_error_string(error)).unwrap_or_default();
        return Err(format!("DescribeConsumerGroups failed: {why}"));
    }
    if rd::rd_kafka_ConsumerGroupDescription_type(desc)
        != rd::rd_kafka_consumer_group_type_t::RD_KAFKA_CONSUMER_GROUP_TYPE_CONSUMER
    {
        return Ok(None);
    }
    let state = text(rd::rd_kafka_consumer_group_state_name(
        rd::rd_kafka_ConsumerGroupDescription_state(desc),
    ))
    .unwrap_or_default();
    let mut members = Vec::new();
    for i in 0..rd::rd_kafka_ConsumerGroupDescription_member_count(desc) {
        let m = rd::rd_kafka_ConsumerGroupDescription_member(desc, i);
        if m.is_null() {
            continue;
        }
        let assignment = rd::rd_kafka_MemberDescription_assignment(m);
        let partitions = if assignment.is_null() {
            std::ptr::null()
        } else {
            rd::rd_kafka_MemberAssignment_partitions(assignment)
        };
        let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        if !partitions.is_null() && !(*partitions).elems.is_null() {
            let list = &*partitions;
            for e in std::slice::from_raw_parts(list.elems, list.cnt.max(0) as usize) {
                if let Some(topic) = text(e.topic) {
                    topics.entry(topic).or_default().push(e.partition);
                }
            }
        }
        let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
        members.push(Member {
            consumer_id: text(rd::rd_kafka_MemberDescription_consumer_id(m)).unwrap_or_default(),
            client_id: nonempty(text(rd::rd_kafka_MemberDescription_client_id(m))),
            host: nonempty(text(rd::rd_kafka_MemberDescription_host(m))),
            assignment: Some(
                topics
                    .into_iter()
                    .map(|(topic, mut partitions)| {
                        partitions.sort_unstable();
                        TopicAssignment { topic, partitions }
                    })
                    .collect(),
            ),
            assignment_error: None,
        });
    }
    Ok(Some(GroupView {
        state,
        protocol_type: "consumer".into(),
        protocol: text(rd::rd_kafka_ConsumerGroupDescription_partition_assignor(
            desc,
        ))
        .unwrap_or_default(),
        members,
    }))
}
