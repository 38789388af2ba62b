//! Message templates: a message with its variable parts masked, so similar messages group.
//!
//! [`message_template`] masks the variable parts of a message (quoted strings, ids, addresses,
//! timestamps, numbers), so `timeout after 31 ms` and `timeout after 7 ms` both become
//! `timeout after <num> ms`. [`fingerprint`](crate::fingerprint) then hashes the service and the
//! template into the [`Fingerprint`](crate::Fingerprint) that the stores and aggregates group by.
//!
//! Masking runs for every record, so it is one hand-written pass over the bytes rather than a
//! series of regular expressions: each position is looked at a bounded number of times, and the
//! text between masks is copied in whole slices.

/// Longest template kept, in bytes. Templates are shown in the top-errors list and stored once
/// per record; beyond this length two messages almost never differ only in what is cut.
pub const TEMPLATE_MAX_BYTES: usize = 512;

const STR: &str = "<str>";
const UUID: &str = "<uuid>";
const TS: &str = "<ts>";
const IP: &str = "<ip>";
const EMAIL: &str = "<email>";
const HEX: &str = "<hex>";
const NUM: &str = "<num>";
const ID: &str = "<id>";

/// The message with its variable parts replaced by placeholders, for grouping similar messages.
///
/// A *word* below is a maximal run of ASCII letters and digits; `_`, `-`, `.` and every
/// non-ASCII character separate words. Structured values (UUID, timestamp, address, email) must
/// start where a word starts and end where one ends, so `x10.0.0.1` is not an address. Tried in
/// this order at each position:
///
/// - `<str>`: `"..."` (backslash escapes skipped) and `'...'`. A `'` right after a letter or
///   digit is an apostrophe (`can't`), not an opening quote, and a `'` followed by one does not
///   close (`'don't'` is one string). A quote that never closes stays text, and scanning goes on
///   after it.
/// - `<uuid>`: 8-4-4-4-12 hex digits.
/// - `<ts>`: `2026-11-25`, optionally followed by `T` or a space and `12:00`, `12:00:00` or
///   `12:00:00.123` (or `,123`), then `Z` or an offset; also a bare time with seconds
///   (`12:00:00.5`). `12:30` alone is two numbers: it cannot be told from a ratio.
/// - `<ip>`: IPv4 (octets up to 255) with an optional `:port`; IPv6 with one `::` or eight
///   groups, with an optional IPv4 tail, containing a digit (so `Abc::Def` stays text).
/// - `<email>`: `local@domain.tld`.
/// - `<hex>`: `0x` and hex digits; a word of 8 or more hex digits with at least one digit and one
///   letter (`4bf92f35...`). Without a digit a word stays text: `deadbeef` cannot be told from
///   `effaced`. All-digit words are numbers.
/// - `<num>`: digits, with decimals and further dotted groups (so the version `1.2.3`, not being
///   an IPv4 address, is one `<num>`), an exponent, and a leading `-` that cannot be a hyphen
///   (not after a word, `_`, `.` or `-`). Letters after it are a unit and stay (`31ms` →
///   `<num>ms`); letters before it are a name and stay (`user42` → `user<num>`, `svc-3` →
///   `svc-<num>`, `order_1234` → `order_<num>`, `v1.2` → `v<num>`).
/// - `<id>`: any other word mixing letters and digits (`a1b2c3`, `6984f30`, `5m30s`): random ids
///   look like this, and masking them whole keeps one template per kind of message rather than
///   one per id. The price is that a few fixed names (`k8s`, `log4j`) read as `<id>`.
///
/// So no ASCII digit survives into a template, and messages that differ only in values share
/// one. Everything else, whitespace and punctuation included, is kept as is. The template is cut
/// to [`TEMPLATE_MAX_BYTES`] on a character boundary, never inside a placeholder and never
/// letting part of a masked value through.
pub fn message_template(message: &str) -> String {
    Masker::new(message).run()
}

/// A part of the message to replace: `start..end` becomes `placeholder`.
struct Mask {
    start: usize,
    end: usize,
    placeholder: &'static str,
}

/// What to do at a position: replace something, or keep the text up to the next position worth
/// looking at.
enum Step {
    Mask(Mask),
    Text { next: usize },
}

fn mask(start: usize, end: usize, placeholder: &'static str) -> Step {
    Step::Mask(Mask {
        start,
        end,
        placeholder,
    })
}

/// The state of one pass over a message.
struct Masker<'a> {
    text: &'a str,
    bytes: &'a [u8],
    out: String,
    /// Where the text not yet copied to `out` starts. Always a character boundary: masks start at
    /// an ASCII byte and end just after one.
    copied: usize,
    /// Set once a search for a closing `"` has failed: no later `"` can find one either, so later
    /// ones are text without searching again. Keeps a message full of unmatched quotes linear.
    double_quote_unclosed: bool,
    /// The same for `'`.
    single_quote_unclosed: bool,
    /// Whether the message has an `@` at all; emails are only looked for when it has.
    has_at: bool,
}

impl<'a> Masker<'a> {
    fn new(text: &'a str) -> Self {
        Masker {
            text,
            bytes: text.as_bytes(),
            out: String::with_capacity(text.len().min(TEMPLATE_MAX_BYTES)),
            copied: 0,
            double_quote_unclosed: false,
            single_quote_unclosed: false,
            has_at: text.as_bytes().contains(&b'@'),
        }
    }

    fn run(mut self) -> String {
        let mut at = 0;
        while at < self.bytes.len() {
            // The text since the last mask already fills the template: nothing after matters.
            if self.out.len() + (at - self.copied) >= TEMPLATE_MAX_BYTES {
                return self.finish(at);
            }
            match self.step(at) {
                Step::Text { next } => at = next,
                Step::Mask(mask) => {
                    if self.out.len() + (mask.start - self.copied) + mask.placeholder.len()
                        > TEMPLATE_MAX_BYTES
                    {
                        return self.finish(mask.start);
                    }
                    self.out.push_str(&self.text[self.copied..mask.start]);
                    self.out.push_str(mask.placeholder);
                    self.copied = mask.end;
                    at = mask.end;
                }
            }
        }
        let end = self.bytes.len();
        self.finish(end)
    }

    /// Copies the text from `copied` up to `end` (all of it unmasked), as much as fits.
    fn finish(mut self, end: usize) -> String {
        let rest = &self.text[self.copied..];
        let mut cut = (end - self.copied).min(TEMPLATE_MAX_BYTES - self.out.len());
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        self.out.push_str(&rest[..cut]);
        self.out
    }

    fn step(&mut self, at: usize) -> Step {
        let bytes = self.bytes;
        let prev = at.checked_sub(1).map(|p| bytes[p]);
        let next = bytes.get(at + 1).copied();
        let after_word = prev.is_some_and(|p| p.is_ascii_alphanumeric());
        match bytes[at] {
            b'"' => self.quoted(at, b'"'),
            b'\'' if !after_word => self.quoted(at, b'\''),
            b'-' if next.is_some_and(|n| n.is_ascii_digit())
                && !prev.is_some_and(|p| p.is_ascii_alphanumeric() || b"_.-".contains(&p)) =>
            {
                match self.word(at + 1) {
                    Step::Mask(m) if m.placeholder == NUM && m.start == at + 1 => {
                        mask(at, m.end, NUM)
                    }
                    other => other,
                }
            }
            b':' if next == Some(b':') && !after_word && prev != Some(b':') => {
                match ipv6_end(bytes, at) {
                    Some(end) => mask(at, end, IP),
                    None => Step::Text { next: at + 2 },
                }
            }
            b if b.is_ascii_alphanumeric() && !after_word => self.word(at),
            _ => Step::Text { next: at + 1 },
        }
    }

    /// A quoted string opening at `open`, or the quote as text when it never closes.
    fn quoted(&mut self, open: usize, quote: u8) -> Step {
        let unclosed = match quote {
            b'"' => &mut self.double_quote_unclosed,
            _ => &mut self.single_quote_unclosed,
        };
        if !*unclosed {
            let bytes = self.bytes;
            let mut at = open + 1;
            while at < bytes.len() {
                match bytes[at] {
                    b'\\' => at += 2,
                    b if b == quote
                        && !(quote == b'\''
                            && bytes.get(at + 1).is_some_and(u8::is_ascii_alphanumeric)) =>
                    {
                        return mask(open, at + 1, STR);
                    }
                    _ => at += 1,
                }
            }
            *unclosed = true;
        }
        Step::Text { next: open + 1 }
    }

    /// A word starting at `start`: a structured value, or masks for its digits, or plain text.
    fn word(&self, start: usize) -> Step {
        let bytes = self.bytes;
        let first = bytes[start];
        if first.is_ascii_hexdigit() {
            if let Some(end) = uuid_end(bytes, start) {
                return mask(start, end, UUID);
            }
        }
        if first.is_ascii_digit() {
            if let Some(end) = timestamp_end(bytes, start) {
                return mask(start, end, TS);
            }
            if let Some(end) = ipv4_end(bytes, start) {
                return mask(start, with_port(bytes, end), IP);
            }
        }
        if first.is_ascii_hexdigit() {
            if let Some(end) = ipv6_end(bytes, start) {
                return mask(start, end, IP);
            }
        }
        if self.has_at {
            if let Some(end) = email_end(bytes, start) {
                return mask(start, end, EMAIL);
            }
        }
        if first == b'0' && matches!(bytes.get(start + 1), Some(b'x' | b'X')) {
            let end = run_end(bytes, start + 2, u8::is_ascii_hexdigit);
            if end > start + 2 && at_word_end(bytes, end) {
                return mask(start, end, HEX);
            }
        }

        let end = run_end(bytes, start, u8::is_ascii_alphanumeric);
        let word = &bytes[start..end];
        let Some(first_digit) = word.iter().position(u8::is_ascii_digit) else {
            return Step::Text { next: end };
        };
        if word.len() >= 8
            && word.iter().all(u8::is_ascii_hexdigit)
            && word.iter().any(u8::is_ascii_alphabetic)
        {
            return mask(start, end, HEX);
        }
        let number_start = start + first_digit;
        let number_end = number_end(bytes, number_start);
        let rest_end = run_end(bytes, number_end, u8::is_ascii_alphanumeric);
        let rest = &bytes[number_end..rest_end];
        let plain_number = if first_digit == 0 {
            // Letters after a leading number are a unit (`31ms`); digits after those are not.
            !rest.iter().any(u8::is_ascii_digit)
        } else {
            // Letters before a trailing number are a name (`user42`).
            rest.is_empty()
        };
        if plain_number {
            mask(number_start, number_end, NUM)
        } else {
            mask(start, rest_end, ID)
        }
    }
}

fn run_end(bytes: &[u8], start: usize, class: impl Fn(&u8) -> bool) -> usize {
    bytes[start..]
        .iter()
        .position(|b| !class(b))
        .map_or(bytes.len(), |len| start + len)
}

/// Whether a match ending at `end` ends a word too (is not followed by a letter or digit).
fn at_word_end(bytes: &[u8], end: usize) -> bool {
    !bytes.get(end).is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether `bytes[at..at + count]` are all ASCII digits.
fn digits(bytes: &[u8], at: usize, count: usize) -> bool {
    bytes
        .get(at..at + count)
        .is_some_and(|run| run.iter().all(u8::is_ascii_digit))
}

fn byte_is(bytes: &[u8], at: usize, wanted: u8) -> bool {
    bytes.get(at) == Some(&wanted)
}

/// Digits, then any `.digits` groups, then an exponent when one follows and ends the word.
fn number_end(bytes: &[u8], start: usize) -> usize {
    let mut end = run_end(bytes, start, u8::is_ascii_digit);
    while byte_is(bytes, end, b'.') && digits(bytes, end + 1, 1) {
        end = run_end(bytes, end + 1, u8::is_ascii_digit);
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
        if digits(bytes, end + 1 + sign, 1) {
            let exponent_end = run_end(bytes, end + 1 + sign, u8::is_ascii_digit);
            if at_word_end(bytes, exponent_end) {
                end = exponent_end;
            }
        }
    }
    end
}

fn uuid_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    for (index, len) in [8, 4, 4, 4, 12].into_iter().enumerate() {
        if index > 0 {
            if !byte_is(bytes, at, b'-') {
                return None;
            }
            at += 1;
        }
        let group = bytes.get(at..at + len)?;
        if !group.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        at += len;
    }
    at_word_end(bytes, at).then_some(at)
}

/// A date with an optional time, or a bare time of day with seconds.
fn timestamp_end(bytes: &[u8], start: usize) -> Option<usize> {
    let end = match date_end(bytes, start) {
        Some(date_end) => match bytes.get(date_end) {
            Some(b'T' | b't' | b' ') => match time_end(bytes, date_end + 1, false) {
                Some(time_end) => zone_end(bytes, time_end),
                None => date_end,
            },
            _ => date_end,
        },
        None => zone_end(bytes, time_end(bytes, start, true)?),
    };
    at_word_end(bytes, end).then_some(end)
}

/// `YYYY-MM-DD`.
fn date_end(bytes: &[u8], start: usize) -> Option<usize> {
    let date = digits(bytes, start, 4)
        && byte_is(bytes, start + 4, b'-')
        && digits(bytes, start + 5, 2)
        && byte_is(bytes, start + 7, b'-')
        && digits(bytes, start + 8, 2);
    date.then_some(start + 10)
}

/// `hh:mm`, `hh:mm:ss` or `hh:mm:ss.fraction` (or `,fraction`); seconds required if asked.
fn time_end(bytes: &[u8], start: usize, need_seconds: bool) -> Option<usize> {
    if !(digits(bytes, start, 2) && byte_is(bytes, start + 2, b':') && digits(bytes, start + 3, 2))
    {
        return None;
    }
    let minutes_end = start + 5;
    if !(byte_is(bytes, minutes_end, b':') && digits(bytes, minutes_end + 1, 2)) {
        return (!need_seconds).then_some(minutes_end);
    }
    let seconds_end = minutes_end + 3;
    if matches!(bytes.get(seconds_end), Some(b'.' | b',')) && digits(bytes, seconds_end + 1, 1) {
        return Some(run_end(bytes, seconds_end + 1, u8::is_ascii_digit));
    }
    Some(seconds_end)
}

/// `Z`, `+hh`, `+hhmm` or `+hh:mm` (or `-`) after a time, if there is one.
fn zone_end(bytes: &[u8], start: usize) -> usize {
    match bytes.get(start) {
        Some(b'Z' | b'z') => start + 1,
        Some(b'+' | b'-') if digits(bytes, start + 1, 2) => {
            let hours_end = start + 3;
            if byte_is(bytes, hours_end, b':') && digits(bytes, hours_end + 1, 2) {
                hours_end + 3
            } else if digits(bytes, hours_end, 2) {
                hours_end + 2
            } else {
                hours_end
            }
        }
        _ => start,
    }
}

/// Four dotted octets (0 to 255) that are not part of a longer dotted number or word.
fn ipv4_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    for octet in 0..4 {
        if octet > 0 {
            if !byte_is(bytes, at, b'.') {
                return None;
            }
            at += 1;
        }
        let octet_start = at;
        let mut value = 0u32;
        while at - octet_start < 3 && digits(bytes, at, 1) {
            value = value * 10 + u32::from(bytes[at] - b'0');
            at += 1;
        }
        if at == octet_start || value > 255 {
            return None;
        }
    }
    let longer = byte_is(bytes, at, b'.') && digits(bytes, at + 1, 1);
    (at_word_end(bytes, at) && !longer).then_some(at)
}

/// Extends an address ending at `end` over a `:port` (1 to 5 digits) if one follows.
fn with_port(bytes: &[u8], end: usize) -> usize {
    if !byte_is(bytes, end, b':') {
        return end;
    }
    let port_end = run_end(bytes, end + 1, u8::is_ascii_digit);
    if (1..=5).contains(&(port_end - end - 1)) && at_word_end(bytes, port_end) {
        port_end
    } else {
        end
    }
}

/// An IPv6 address: hex groups of 1 to 4 digits separated by `:`, either eight of them or fewer
/// with one `::`, optionally ending in an IPv4 address; with at least one decimal digit so that
/// `Abc::Def` (a path in code) is not one.
fn ipv6_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    let mut groups = 0;
    let mut compressed = false;
    let mut has_digit = false;
    let mut end = start;
    if bytes[at..].starts_with(b"::") {
        compressed = true;
        at += 2;
        end = at;
    }
    loop {
        let group_start = at;
        while at - group_start < 5 && bytes.get(at).is_some_and(u8::is_ascii_hexdigit) {
            has_digit |= bytes[at].is_ascii_digit();
            at += 1;
        }
        match at - group_start {
            0 => break,
            5 => return None,
            _ => {}
        }
        if byte_is(bytes, at, b'.') {
            // The last group was the first octet of an IPv4 tail.
            end = ipv4_end(bytes, group_start)?;
            groups += 2;
            break;
        }
        groups += 1;
        if groups > 8 {
            // Stop early: a long `1:2:3:...` chain would otherwise be rescanned from every word.
            return None;
        }
        end = at;
        if bytes[at..].starts_with(b"::") {
            if compressed {
                return None;
            }
            compressed = true;
            at += 2;
            end = at;
        } else if byte_is(bytes, at, b':') && bytes.get(at + 1).is_some_and(u8::is_ascii_hexdigit) {
            at += 1;
        } else {
            break;
        }
    }
    let complete = if compressed { groups <= 7 } else { groups == 8 };
    (complete && has_digit && at_word_end(bytes, end)).then_some(end)
}

/// `local@domain.tld`, with the usual characters in the local part and at least two labels in the
/// domain.
///
/// Both parts are bounded as in RFC 5321 (64 and 255 bytes), which also bounds the work: this is
/// tried at every word of a message with an `@`, and `a.a.a.a...` would otherwise be rescanned
/// from each of its words.
fn email_end(bytes: &[u8], start: usize) -> Option<usize> {
    const LOCAL_MAX: usize = 64;
    const DOMAIN_MAX: usize = 255;
    let local = &bytes[..bytes.len().min(start + LOCAL_MAX)];
    let local_end = run_end(local, start, |b| {
        b.is_ascii_alphanumeric() || b"._%+-".contains(b)
    });
    if !byte_is(bytes, local_end, b'@') {
        return None;
    }
    let domain = &bytes[..bytes.len().min(local_end + 1 + DOMAIN_MAX)];
    let label = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-';
    let mut at = local_end + 1;
    let mut labels = 0;
    loop {
        let label_end = run_end(domain, at, label);
        if label_end == at {
            return None;
        }
        labels += 1;
        at = label_end;
        if byte_is(domain, at, b'.') && domain.get(at + 1).is_some_and(label) {
            at += 1;
        } else {
            break;
        }
    }
    // A label still going on past the bound means the domain is too long.
    (labels >= 2 && !bytes.get(at).is_some_and(label)).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_at_the_limit_without_splitting_a_character_or_a_placeholder() {
        let long = "é".repeat(TEMPLATE_MAX_BYTES);
        let template = message_template(&long);
        assert_eq!(template.len(), TEMPLATE_MAX_BYTES);
        let odd = format!("x{long}");
        assert_eq!(message_template(&odd).len(), TEMPLATE_MAX_BYTES - 1);
        // 508 bytes of text, then a number: `<num>` does not fit, and its digits must not leak.
        let text = "z".repeat(TEMPLATE_MAX_BYTES - 4);
        assert_eq!(
            message_template(&format!("{text} 12345")),
            format!("{text} ")
        );
        assert_eq!(message_template(&format!("{text}12 x")), text.clone());
    }
}
