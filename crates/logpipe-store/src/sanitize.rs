//! Text PostgreSQL cannot hold, made storable.
//!
//! PostgreSQL `text` cannot contain NUL (U+0000) and `jsonb` rejects the escape `\u0000`, yet a
//! client's JSON can carry both (`"message": "a\u0000b"` is valid JSON). Failing the batch for it
//! would send a whole batch to the retry path for one odd record, so NUL is stored as U+FFFD
//! (the replacement character), in `text` columns and inside JSON strings alike. `jsonb` also
//! rejects lone UTF-16 surrogate escapes (`\ud800` without its pair), which JSON parsers let
//! through; those become `\ufffd` too.
//!
//! SQLite could store all of these, but both backends store the same thing, so a record reads
//! back the same whichever store holds it.

use std::borrow::Cow;

/// What NUL and unpaired surrogates are replaced with, as a JSON escape.
const REPLACEMENT_ESCAPE: &str = "\\ufffd";

/// `text` with every NUL replaced by U+FFFD; borrowed (no copy) when there is none.
pub(crate) fn text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// JSON text with every `\u0000` escape and every unpaired surrogate escape replaced by
/// `\ufffd`; borrowed when there is nothing to replace (nearly always).
///
/// One pass over the bytes. Only escapes are examined, and an escape is always consumed whole
/// (`\\` then `u0000` is a backslash followed by the text `u0000`, not a NUL). A raw NUL byte is
/// not valid JSON anywhere, but is replaced too rather than failing the batch.
pub(crate) fn json(json: &str) -> Cow<'_, str> {
    let bytes = json.as_bytes();
    let mut out: Option<String> = None;
    // Bytes before `copied` are already in `out` (when it exists).
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if bytes.get(i + 1) == Some(&b'u') => {
                let unit = hex4(bytes, i + 2);
                let replace = match unit {
                    Some(0) => true,
                    // A high surrogate is fine only when a low one follows.
                    Some(0xD800..=0xDBFF) => {
                        let paired = bytes.get(i + 6) == Some(&b'\\')
                            && bytes.get(i + 7) == Some(&b'u')
                            && matches!(hex4(bytes, i + 8), Some(0xDC00..=0xDFFF));
                        if paired {
                            // Skip the pair whole, so its low half is not seen as unpaired.
                            i += 12;
                            continue;
                        }
                        true
                    }
                    Some(0xDC00..=0xDFFF) => true,
                    _ => false,
                };
                if replace {
                    let buffer = out.get_or_insert_with(|| String::with_capacity(json.len()));
                    buffer.push_str(&json[copied..i]);
                    buffer.push_str(REPLACEMENT_ESCAPE);
                    copied = i + 6;
                }
                i += 6;
            }
            // Any other escape: two bytes, consumed together.
            b'\\' => i += 2,
            b'\0' => {
                let buffer = out.get_or_insert_with(|| String::with_capacity(json.len()));
                buffer.push_str(&json[copied..i]);
                buffer.push_str(REPLACEMENT_ESCAPE);
                copied = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    match out {
        Some(mut buffer) => {
            // `copied` can pass the end only for a truncated escape at the very end, which is not
            // valid JSON; `get` keeps that from panicking.
            buffer.push_str(json.get(copied..).unwrap_or(""));
            Cow::Owned(buffer)
        }
        None => Cow::Borrowed(json),
    }
}

/// The value of the four hex digits at `at`, if there are four.
fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_replaces_nul_and_borrows_otherwise() {
        assert!(matches!(text("plain"), Cow::Borrowed("plain")));
        assert_eq!(text("a\0b\0"), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(text("\0"), "\u{FFFD}");
    }

    #[test]
    fn json_replaces_nul_escapes() {
        assert!(matches!(json(r#"{"a":"b"}"#), Cow::Borrowed(_)));
        assert_eq!(json(r#"{"a":"x\u0000y"}"#), r#"{"a":"x\ufffdy"}"#);
        assert_eq!(json(r#"{"\u0000":1}"#), r#"{"\ufffd":1}"#);
        // An escaped backslash followed by the text u0000 is not a NUL.
        assert!(matches!(json(r#"{"a":"\\u0000"}"#), Cow::Borrowed(_)));
        assert_eq!(
            json(r#"{"a":"\\\u0000"}"#),
            r#"{"a":"\\\ufffd"}"#,
            "escaped backslash, then a real NUL escape"
        );
        // Upper-case hex digits are read too.
        assert_eq!(json(r#"["\uD83D","\u00E9"]"#), r#"["\ufffd","\u00E9"]"#);
        // Raw NUL bytes (not valid JSON) are replaced rather than rejected.
        assert_eq!(json("[\"a\0\"]"), r#"["a\ufffd"]"#);
    }

    #[test]
    fn json_replaces_unpaired_surrogates_only() {
        let pair = r#"{"emoji":"\ud83d\ude00"}"#;
        assert!(matches!(json(pair), Cow::Borrowed(_)));
        assert_eq!(json(r#"["\ud83d"]"#), r#"["\ufffd"]"#);
        assert_eq!(json(r#"["\ude00x"]"#), r#"["\ufffdx"]"#);
        assert_eq!(
            json(r#"["\ud83d\ud83d\ude00"]"#),
            r#"["\ufffd\ud83d\ude00"]"#
        );
        // Other escapes pass untouched.
        assert!(matches!(json(r#"["\n\t\"\u00e9"]"#), Cow::Borrowed(_)));
    }

    #[test]
    fn sanitised_json_parses_to_the_replacement_character() {
        let fixed = json(r#"{"k":"a\u0000b","s":"\udc00"}"#);
        let value: serde_json::Value = serde_json::from_str(&fixed).unwrap();
        assert_eq!(value["k"], "a\u{FFFD}b");
        assert_eq!(value["s"], "\u{FFFD}");
    }
}
