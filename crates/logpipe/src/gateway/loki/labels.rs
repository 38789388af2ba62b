//! The label set of a Loki protobuf stream, written as a LogQL stream selector:
//! `{job="varlogs", filename="/var/log/a \"b\".log"}`. Only `=` matchers (a push names the
//! stream's labels, it does not select), values quoted the way Loki's parser takes them: double
//! quotes with Go escapes, or backticks with none.

/// The labels in the order written, or why the text is not a label set.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        at: 0,
    };
    p.skip_ws();
    p.expect(b'{')?;
    let mut labels = Vec::new();
    p.skip_ws();
    if p.peek() == Some(b'}') {
        p.at += 1;
    } else {
        loop {
            p.skip_ws();
            let name = p.name()?;
            p.skip_ws();
            p.expect(b'=')?;
            p.skip_ws();
            let value = p.value()?;
            labels.push((name, value));
            p.skip_ws();
            match p.bump() {
                Some(b',') => {
                    // A trailing comma before `}` is accepted, as Prometheus does.
                    p.skip_ws();
                    if p.peek() == Some(b'}') {
                        p.at += 1;
                        break;
                    }
                }
                Some(b'}') => break,
                _ => return Err(p.error("expected `,` or `}` after a label")),
            }
        }
    }
    p.skip_ws();
    if p.at != p.s.len() {
        return Err(p.error("unexpected text after `}`"));
    }
    Ok(labels)
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn error(&self, what: &str) -> String {
        let shown: String = self.text.chars().take(120).collect();
        format!("labels {shown:?}: {what} at byte {}", self.at)
    }

    fn expect(&mut self, want: u8) -> Result<(), String> {
        if self.bump() == Some(want) {
            Ok(())
        } else {
            self.at = self.at.saturating_sub(1);
            Err(self.error(&format!("expected `{}`", want as char)))
        }
    }

    /// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
    fn name(&mut self) -> Result<String, String> {
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            self.at += 1;
        }
        let name = &self.text[start..self.at];
        if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
            self.at = start;
            return Err(self.error("expected a label name ([a-zA-Z_][a-zA-Z0-9_]*)"));
        }
        Ok(name.to_owned())
    }

    fn value(&mut self) -> Result<String, String> {
        match self.bump() {
            Some(b'`') => {
                let start = self.at;
                let len = self.s[start..]
                    .iter()
                    .position(|&b| b == b'`')
                    .ok_or_else(|| self.error("unterminated `…` value"))?;
                self.at = start + len + 1;
                Ok(self.text[start..start + len].to_owned())
            }
            Some(b'"') => self.quoted(),
            _ => {
                self.at = self.at.saturating_sub(1);
                Err(self.error("expected a quoted value"))
            }
        }
    }

    /// The rest of a double-quoted value, with Go's escapes (`\xHH` and octal excepted: they
    /// can spell invalid UTF-8).
    fn quoted(&mut self) -> Result<String, String> {
        let mut out = String::new();
        loop {
            let rest = &self.text[self.at..];
            let Some(stop) = rest.find(['"', '\\']) else {
                return Err(self.error("unterminated quoted value"));
            };
            out.push_str(&rest[..stop]);
            self.at += stop;
            if self.bump() == Some(b'"') {
                return Ok(out);
            }
            let escaped = match self.bump() {
                Some(b'"') => '"',
                Some(b'\\') => '\\',
                Some(b'\'') => '\'',
                Some(b'n') => '\n',
                Some(b't') => '\t',
                Some(b'r') => '\r',
                Some(b'a') => '\u{7}',
                Some(b'b') => '\u{8}',
                Some(b'f') => '\u{c}',
                Some(b'v') => '\u{b}',
                Some(b'u') => self.code_point(4)?,
                Some(b'U') => self.code_point(8)?,
                _ => return Err(self.error("unsupported escape in a quoted value")),
            };
            out.push(escaped);
        }
    }

    fn code_point(&mut self, digits: usize) -> Result<char, String> {
        let hex = self
            .text
            .get(self.at..self.at + digits)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.error("expected hex digits after \\u or \\U"))?;
        self.at += digits;
        u32::from_str_radix(hex, 16)
            .ok()
            .and_then(char::from_u32)
            .ok_or_else(|| self.error("the escape is not a Unicode scalar value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    #[test]
    fn reads_promtail_selectors() {
        assert_eq!(
            pairs(r#"{filename="/var/log/syslog", job="varlogs"}"#),
            vec![
                ("filename".into(), "/var/log/syslog".into()),
                ("job".into(), "varlogs".into())
            ]
        );
        assert_eq!(pairs("{}"), vec![]);
        assert_eq!(
            pairs(" { a = `raw \\n` , } "),
            vec![("a".into(), "raw \\n".into())]
        );
    }

    #[test]
    fn decodes_escapes() {
        assert_eq!(
            pairs(r#"{msg="say \"hi\"\n\\ \u00e9\U0001F600", x="é,}"}"#),
            vec![
                ("msg".into(), "say \"hi\"\n\\ é😀".into()),
                ("x".into(), "é,}".into())
            ]
        );
    }

    #[test]
    fn refuses_what_is_not_a_label_set() {
        for bad in [
            "",
            "job=\"a\"",
            "{job=\"a\"",
            "{job=~\"a\"}",
            "{job=a}",
            "{1job=\"a\"}",
            "{job=\"a\" x=\"b\"}",
            "{job=\"a\"} extra",
            "{job=\"\\x41\"}",
            "{job=\"\\ud800\"}",
            "{job=\"open}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let err = parse("{job=~\"a\"}").unwrap_err();
        assert!(err.contains("expected a quoted value"), "{err}");
    }
}
