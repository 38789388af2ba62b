//! Writes a [`LogEvent`] as its canonical Kafka record value: compact JSON, fixed key order.
//!
//! Written by hand instead of through serde: the shape is fixed and small, this runs for every
//! event, and appending to a caller's buffer cannot fail, so there is no `Result` to handle for an
//! error that cannot happen. The string escaping matches serde_json's byte for byte (a test holds
//! it to that), so the output is what `serde_json::to_vec` of the same fields would give.

use chrono::SecondsFormat;
use serde_json::value::RawValue;

use crate::event::LogEvent;

impl LogEvent {
    /// The canonical Kafka record value: compact JSON with keys in the order `timestamp`,
    /// `level`, `service`, `message`, `host`, `trace_id`, `span_id`, `attributes`.
    ///
    /// `timestamp` is always present, as RFC 3339 UTC with exactly six fractional digits
    /// (`2026-11-25T12:00:00.123000Z`; fixed width, so timestamps sort as strings); `level` is
    /// upper-case; optional fields are left out when absent.
    pub fn to_json(&self) -> Vec<u8> {
        // Fixed part plus the two free-text fields; one allocation for typical events.
        let estimate =
            160 + self.message.len() + self.attributes.as_deref().map_or(0, |raw| raw.get().len());
        let mut out = Vec::with_capacity(estimate);
        self.write_json(&mut out);
        out
    }

    /// Appends [`to_json`](LogEvent::to_json)'s output to `out`, so a producer can reuse one
    /// buffer for many records.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        out.extend_from_slice(
            self.timestamp
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .as_bytes(),
        );
        out.extend_from_slice(b"\",\"level\":\"");
        out.extend_from_slice(self.level.as_str().as_bytes());
        out.extend_from_slice(b"\",\"service\":");
        write_json_string(out, self.service.as_str());
        out.extend_from_slice(b",\"message\":");
        write_json_string(out, self.message.as_str());
        if let Some(host) = &self.host {
            out.extend_from_slice(b",\"host\":");
            write_json_string(out, host.as_str());
        }
        if let Some(trace_id) = &self.trace_id {
            out.extend_from_slice(b",\"trace_id\":");
            write_json_string(out, trace_id.as_str());
        }
        if let Some(span_id) = &self.span_id {
            out.extend_from_slice(b",\"span_id\":");
            write_json_string(out, span_id.as_str());
        }
        if let Some(attributes) = self.attributes.as_deref().map(RawValue::get) {
            out.extend_from_slice(b",\"attributes\":");
            out.extend_from_slice(attributes.as_bytes());
        }
        out.push(b'}');
    }
}

/// Appends `s` as a JSON string, escaping what JSON requires (`"`, `\` and control characters)
/// exactly as serde_json does. Unescaped runs are copied in one call each.
fn write_json_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.push(b'"');
    let mut run_start = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0x0f)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[run_start..i]);
        out.extend_from_slice(escape);
        run_start = i + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        write_json_string(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escaping_matches_serde_json() {
        let mut every_control: String = (0u8..0x20).map(char::from).collect();
        every_control.push_str("\"\\/\u{7f}é€😀\u{2028}");
        for s in [
            "",
            "plain",
            "a\"b\\c",
            "line\nbreak\r\n\ttab",
            every_control.as_str(),
        ] {
            assert_eq!(escaped(s), serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn escaping_matches_serde_json_on_pseudo_random_strings() {
        // xorshift64: deterministic, no dependency. Characters drawn mostly from the
        // interesting low range, plus some multi-byte ones.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2_000 {
            let mut s = String::new();
            for _ in 0..(state % 24) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let c = match state % 4 {
                    0 => char::from((state >> 8) as u8 & 0x7f),
                    1 => char::from_u32(((state >> 8) % 0x800) as u32).unwrap_or('x'),
                    2 => '"',
                    _ => char::from_u32(((state >> 8) % 0x11_0000) as u32).unwrap_or('\\'),
                };
                s.push(c);
            }
            assert_eq!(escaped(&s), serde_json::to_string(&s).unwrap(), "{s:?}");
        }
    }
}
