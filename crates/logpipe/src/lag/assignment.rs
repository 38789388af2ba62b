//! The consumer protocol's `MemberAssignment`: the bytes DescribeGroups returns for each member of
//! a classic consumer group, decoded into topics and partitions. Pure: no I/O.

use serde::Serialize;

/// The partitions of one topic a member is assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopicAssignment {
    pub topic: String,
    pub partitions: Vec<i32>,
}

/// Parses the consumer protocol's `MemberAssignment` (what DescribeGroups returns per member of
/// a group with protocol type `consumer`, whatever the assignor: range, roundrobin,
/// cooperative-sticky):
///
/// ```text
/// version: int16
/// assigned_partitions: int32 count, then per topic: topic string (int16 length + UTF-8),
///                      int32 count of int32 partitions
/// user_data: int32 length + bytes (-1: null)   (ignored, as is anything after it)
/// ```
///
/// Empty bytes (a member between rebalance phases) mean no assignment.
pub fn parse_assignment(bytes: &[u8]) -> Result<Vec<TopicAssignment>, String> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = Reader { bytes, at: 0 };
    let version = r.i16("version")?;
    if version < 0 {
        return Err(format!("unsupported assignment version {version}"));
    }
    let topics = r.count("topic count", 2 + 4)?;
    let mut out = Vec::with_capacity(topics);
    for _ in 0..topics {
        let topic = r.string("topic name")?;
        let n = r.count("partition count", 4)?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            partitions.push(r.i32("partition")?);
        }
        out.push(TopicAssignment { topic, partitions });
    }
    Ok(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let Some(end) = end else {
            return Err(format!(
                "truncated at byte {} reading {what} ({} bytes in all)",
                self.at,
                self.bytes.len()
            ));
        };
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn i16(&mut self, what: &str) -> Result<i16, String> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, String> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An array length; -1 (null) is empty. `min_item` bytes per item bound it by what is left.
    fn count(&mut self, what: &str, min_item: usize) -> Result<usize, String> {
        let n = self.i32(what)?;
        if n == -1 {
            return Ok(0);
        }
        let n = usize::try_from(n).map_err(|_| format!("negative {what} {n}"))?;
        if n.saturating_mul(min_item) > self.bytes.len() - self.at {
            return Err(format!(
                "{what} {n} exceeds the {} bytes left",
                self.bytes.len() - self.at
            ));
        }
        Ok(n)
    }

    fn string(&mut self, what: &str) -> Result<String, String> {
        let len = self.i16(what)?;
        let len = usize::try_from(len).map_err(|_| format!("null or negative-length {what}"))?;
        let b = self.take(len, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lag::fixtures::ta;

    /// Builds a MemberAssignment the way the Java client and librdkafka write it.
    fn encode(version: i16, topics: &[(&str, &[i32])], user_data: Option<&[u8]>) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (topic, partitions) in topics {
            b.extend((topic.len() as i16).to_be_bytes());
            b.extend(topic.as_bytes());
            b.extend((partitions.len() as i32).to_be_bytes());
            for p in *partitions {
                b.extend(p.to_be_bytes());
            }
        }
        match user_data {
            Some(d) => {
                b.extend((d.len() as i32).to_be_bytes());
                b.extend(d);
            }
            None => b.extend((-1i32).to_be_bytes()),
        }
        b
    }

    #[test]
    fn assignment_parser_table() {
        type Case = (
            &'static str,
            Vec<u8>,
            Result<Vec<TopicAssignment>, &'static str>,
        );
        let cases: Vec<Case> = vec![
            ("empty bytes: no assignment", vec![], Ok(vec![])),
            (
                "v0, two topics, null user data",
                encode(
                    0,
                    &[("application-logs", &[0, 3, 6]), ("logs-dlq", &[1])],
                    None,
                ),
                Ok(vec![
                    ta("application-logs", &[0, 3, 6]),
                    ta("logs-dlq", &[1]),
                ]),
            ),
            (
                "v1 (cooperative-sticky) with user data",
                encode(1, &[("t", &[2])], Some(b"sticky")),
                Ok(vec![ta("t", &[2])]),
            ),
            ("v3, no topics", encode(3, &[], Some(b"")), Ok(vec![])),
            (
                "topic with no partitions",
                encode(0, &[("t", &[])], None),
                Ok(vec![ta("t", &[])]),
            ),
            (
                "without the trailing user data (old writers)",
                encode(0, &[("t", &[0, 1])], None)[..2 + 4 + 2 + 1 + 4 + 8].to_vec(),
                Ok(vec![ta("t", &[0, 1])]),
            ),
            ("truncated version", vec![0], Err("truncated")),
            (
                "partition list shorter than its count",
                encode(0, &[("t", &[0, 1])], None)[..2 + 4 + 2 + 1 + 4 + 5].to_vec(),
                Err("partition count 2 exceeds the 5 bytes left"),
            ),
            (
                "truncated topic name",
                encode(0, &[("application-logs", &[0])], None)[..2 + 4 + 2 + 8].to_vec(),
                Err("truncated at byte 8 reading topic name"),
            ),
            (
                "absurd topic count",
                {
                    let mut b = 0i16.to_be_bytes().to_vec();
                    b.extend(i32::MAX.to_be_bytes());
                    b
                },
                Err("exceeds"),
            ),
            (
                "negative version",
                encode(-1, &[("t", &[0])], None),
                Err("unsupported assignment version"),
            ),
            (
                "null topic name",
                {
                    let mut b = 0i16.to_be_bytes().to_vec();
                    b.extend(1i32.to_be_bytes());
                    b.extend((-1i16).to_be_bytes());
                    b.extend(0i32.to_be_bytes());
                    b
                },
                Err("null or negative-length topic name"),
            ),
            (
                "topic name not UTF-8",
                {
                    let mut b = 0i16.to_be_bytes().to_vec();
                    b.extend(1i32.to_be_bytes());
                    b.extend(1i16.to_be_bytes());
                    b.push(0xff);
                    b.extend(0i32.to_be_bytes());
                    b
                },
                Err("not UTF-8"),
            ),
        ];
        for (name, bytes, want) in cases {
            let got = parse_assignment(&bytes);
            match (got, want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{name}"),
                (Err(got), Err(want)) => assert!(got.contains(want), "{name}: {got}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }
}
