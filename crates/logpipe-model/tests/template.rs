//! Message templates from the outside: a table for every masking rule and its edge cases, pairs
//! of messages that must and must not share a template, a pseudo-random robustness test, and an
//! ignored micro-benchmark (`cargo test -p logpipe-model --release -- --ignored --nocapture`).

mod common;

use common::XorShift;
use logpipe_model::{fingerprint, message_template, TEMPLATE_MAX_BYTES};

/// Checks every `(message, template)` row, reporting all mismatches at once.
fn check_table(rows: &[(&str, &str)]) {
    let wrong: Vec<String> = rows
        .iter()
        .filter(|(message, expected)| message_template(message) != *expected)
        .map(|(message, expected)| {
            format!(
                "{message:?}: got {:?}, want {expected:?}",
                message_template(message)
            )
        })
        .collect();
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn quoted_strings() {
    check_table(&[
        (r#"user "bob" not found"#, "user <str> not found"),
        (r#"key "a \"quoted\" word" end"#, "key <str> end"),
        (
            r#"backslash at the end "a\\" ok"#,
            "backslash at the end <str> ok",
        ),
        ("can't open 'config.toml'", "can't open <str>"),
        ("name='bob', role='admin'", "name=<str>, role=<str>"),
        ("'don't' said", "<str> said"),
        (r#"empty "" and ''"#, "empty <str> and <str>"),
        (
            r#"{"user_id":42,"name":"bob"}"#,
            "{<str>:<num>,<str>:<str>}",
        ),
        // Unterminated: the quote stays text and what follows is still masked.
        (r#"unterminated "quote 42"#, r#"unterminated "quote <num>"#),
        (r#"escaped close "abc\""#, r#"escaped close "abc\""#),
        ("it's 5 o'clock", "it's <num> o'clock"),
        ("'open", "'open"),
        (r#"two "a" "b c" done"#, "two <str> <str> done"),
    ]);
}

#[test]
fn uuids() {
    check_table(&[
        (
            "request 123e4567-e89b-12d3-a456-426614174000 failed",
            "request <uuid> failed",
        ),
        ("ID=123E4567-E89B-12D3-A456-426614174000", "ID=<uuid>"),
        // No digit needed: the 8-4-4-4-12 shape is specific enough.
        ("abcdefab-abcd-abcd-abcd-abcdefabcdef.", "<uuid>."),
        // One group short is not a UUID; its parts are masked by the other rules.
        ("123e4567-e89b-12d3-a456", "<hex>-<id>-<id>-a<num>"),
    ]);
}

#[test]
fn timestamps() {
    check_table(&[
        ("at 2026-11-25T12:00:00Z retry", "at <ts> retry"),
        ("2026-11-25T12:00:00.123456+01:00", "<ts>"),
        ("2026-11-25 12:00:00,123 INFO start", "<ts> INFO start"),
        ("2026-11-25T12:00-0500", "<ts>"),
        ("on 2026-11-25.", "on <ts>."),
        ("at 12:30:45.5 done", "at <ts> done"),
        ("at 12:30:45Z", "at <ts>"),
        // Without seconds a bare time is not told from a ratio; both mask as numbers.
        ("at 12:30", "at <num>:<num>"),
        ("ratio 3:1", "ratio <num>:<num>"),
        // Apache's date is not recognised, but no digit survives.
        (
            "[25/Nov/2026:12:00:00 +0000]",
            "[<num>/Nov/<num>:<ts> +<num>]",
        ),
        ("epoch 1764072000000", "epoch <num>"),
    ]);
}

#[test]
fn ipv4_addresses() {
    check_table(&[
        ("connect to 10.0.0.1 failed", "connect to <ip> failed"),
        ("peer 10.0.0.1:8080 closed", "peer <ip> closed"),
        ("from 192.168.1.254.", "from <ip>."),
        ("net 10.0.0.0/8", "net <ip>/<num>"),
        ("(255.255.255.255)", "(<ip>)"),
        // Not addresses: an octet above 255, five groups, three groups (a version).
        ("256.1.1.1", "<num>"),
        ("1.2.3.4.5", "<num>"),
        ("upgraded to 1.2.3", "upgraded to <num>"),
        ("upgraded to v1.2.3", "upgraded to v<num>"),
        // A port that is not one stays outside the address.
        ("10.0.0.1:123456", "<ip>:<num>"),
        ("10.0.0.1:http", "<ip>:http"),
    ]);
}

#[test]
fn ipv6_addresses() {
    check_table(&[
        ("::1", "<ip>"),
        ("listen [::1]:443", "listen [<ip>]:<num>"),
        ("from 2001:db8::8a2e:370:7334 ok", "from <ip> ok"),
        ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "<ip>"),
        ("fe80::1: refused", "<ip>: refused"),
        ("fe80:: prefix", "<ip> prefix"),
        ("mapped ::ffff:192.168.0.1", "mapped <ip>"),
        // Paths in code and hex words are not addresses.
        ("std::io::Error", "std::io::Error"),
        ("Abc::Def", "Abc::Def"),
        ("1:2:3:4:5:6:7:8", "<ip>"),
        // Too few groups without `::` (a MAC address, a clock): not addresses.
        (
            "00:1a:2b:3c:4d:5e",
            "<num>:<num>a:<num>b:<num>c:<num>d:<num>e",
        ),
    ]);
}

#[test]
fn hex_ids() {
    check_table(&[
        ("ptr 0x1F", "ptr <hex>"),
        ("ptr 0xdeadBEEF, next", "ptr <hex>, next"),
        ("trace 4bf92f3577b34da6a3ce929d0e0e4736", "trace <hex>"),
        ("span=00f067aa0ba902b7", "span=<hex>"),
        ("cafe1234", "<hex>"),
        // Without a digit, a hex word cannot be told from an English one: it stays.
        ("deadbeef effaced", "deadbeef effaced"),
        // Shorter than 8: a mixed word.
        ("commit 6984f30", "commit <id>"),
        // All digits: a number.
        ("12345678", "<num>"),
        // `0x` glued to more letters is a mixed word, not hex then text.
        ("0x1fz9", "<id>"),
    ]);
}

#[test]
fn numbers() {
    check_table(&[
        ("timeout after 31 ms", "timeout after <num> ms"),
        ("took 31ms", "took <num>ms"),
        ("took 1.5s, 3rd try", "took <num>s, <num>rd try"),
        ("offset -5", "offset <num>"),
        ("temp=-3.5C", "temp=<num>C"),
        ("loss 1e-5 then 2.5E+10", "loss <num> then <num>"),
        ("exp 3em", "exp <num>em"),
        // A `-` after a word or number is a hyphen, not a sign.
        ("range 1-5", "range <num>-<num>"),
        ("svc-3", "svc-<num>"),
        ("user42 and order_1234", "user<num> and order_<num>"),
        ("x86_64", "x<num>_<num>"),
        (
            "GET /api/v1/users/42 HTTP/1.1 500",
            "GET /api/v<num>/users/<num> HTTP/<num> <num>",
        ),
        ("1,000,000", "<num>,<num>,<num>"),
        ("retrying in 5.", "retrying in <num>."),
        ("99.5%", "<num>%"),
    ]);
}

#[test]
fn mixed_words() {
    check_table(&[
        ("took 5m30s", "took <id>"),
        ("k8s pod a1b2c3 restarted", "<id> pod <id> restarted"),
        ("token aZ3k9Qx", "token <id>"),
        ("ch_3MmlLrLkdIwHu7ix0snN0B15", "ch_<id>"),
        ("user42x", "<id>"),
    ]);
}

#[test]
fn emails() {
    check_table(&[
        ("sent to alice.smith+x@example.co.uk", "sent to <email>"),
        ("from bob42@mail-1.example.com.", "from <email>."),
        // One label is not a domain; a bare handle is text.
        ("user@localhost", "user@localhost"),
        ("@handle 2 likes", "@handle <num> likes"),
    ]);
}

#[test]
fn edge_cases() {
    check_table(&[
        ("", ""),
        ("12345", "<num>"),
        ("-12", "<num>"),
        ("1 2 3", "<num> <num> <num>"),
        ("--5", "--<num>"),
        ("a\t 1\n b", "a\t <num>\n b"),
        ("disk full", "disk full"),
        ("température 42°C", "température <num>°C"),
        ("温度42度", "温度<num>度"),
        ("é5é 😀7😀", "é<num>é 😀<num>😀"),
        ("naïve1", "naïve<num>"),
        ("°-5", "°<num>"),
        ("\"é\" 'ü'", "<str> <str>"),
    ]);
}

#[test]
fn long_messages_are_cut_on_a_character_boundary() {
    let message = format!("{} 1 {}", "a".repeat(300), "é".repeat(300));
    let template = message_template(&message);
    assert!(template.len() <= TEMPLATE_MAX_BYTES);
    assert!(template.len() >= TEMPLATE_MAX_BYTES - 1);
    assert!(template.starts_with(&format!("{} <num> éé", "a".repeat(300))));
    // Masks shrink a message: a long one may still fit once masked.
    let numbers = "1234567890 ".repeat(100);
    assert_eq!(message_template(&numbers).len(), TEMPLATE_MAX_BYTES - 2);
}

/// Large inputs shaped to make a scanner rescan (unclosed quotes, address-like and email-like
/// chains), with the template they give. Their cost is measured in the benchmark.
fn pathological_messages() -> Vec<(String, String)> {
    let n = 32 * 1024 / 2;
    vec![
        (" 'x".repeat(n / 2), " 'x".repeat(512 / 3) + " '"),
        (
            "\"".to_owned() + &"\\\"".repeat(n),
            "\"".to_owned() + &"\\\"".repeat(255) + "\\",
        ),
        ("1:".repeat(n), "<num>:".repeat(85)),
        ("a.".repeat(n) + "@b.io", "a.".repeat(256)),
        ("1.".repeat(n), "<num>.".to_owned()),
        ("7".repeat(2 * n), "<num>".to_owned()),
        (format!("\"{}\"", "x".repeat(2 * n)), "<str>".to_owned()),
    ]
}

#[test]
fn pathological_messages_are_handled() {
    for (message, expected) in pathological_messages() {
        let template = message_template(&message);
        assert_eq!(template, expected, "{:?}...", &message[..12]);
    }
}

#[test]
fn email_parts_are_bounded() {
    let local = "a".repeat(64);
    assert_eq!(message_template(&format!("{local}@b.io")), "<email>");
    assert_eq!(
        message_template(&format!("{local}a@b.io")),
        format!("{local}a@b.io")
    );
    let domain = format!("{}.io", "b".repeat(252));
    assert_eq!(message_template(&format!("a@{domain}")), "<email>");
    let long = format!("a@b{domain}");
    assert_eq!(
        message_template(&long),
        &long[..TEMPLATE_MAX_BYTES.min(long.len())]
    );
}

#[test]
fn messages_differing_only_in_values_share_a_template() {
    for (a, b) in [
        ("timeout after 31 ms", "timeout after 7 ms"),
        (
            "user 42 logged in from 10.0.0.1",
            "user 1337 logged in from 192.168.1.7:5432",
        ),
        (
            "order 123e4567-e89b-12d3-a456-426614174000 not found",
            "order 00000000-0000-0000-0000-000000000000 not found",
        ),
        ("payment 'abc' failed", "payment 'xyz 123' failed"),
        ("GET /users/42 took 12.5ms", "GET /users/7 took 3ms"),
        ("session a1b2c3d4e5 expired", "session 9f8e7d6c5b expired"),
        ("token aZ3k9Qx invalid", "token b7Hq2Lm invalid"),
        ("commit 6984f30 deployed", "commit a1b2c3d deployed"),
        ("at 2026-11-25T12:00:00Z", "at 2027-01-01T00:00:00.5+02:00"),
        ("user42 denied", "user7 denied"),
        ("retry -1", "retry 3"),
        ("upgrade to 1.2.3", "upgrade to 10.20"),
        ("peer fe80::1 gone", "peer 2001:db8::42 gone"),
        (
            "mail to a@b.io bounced",
            "mail to carol.x@example.org bounced",
        ),
        ("worker-3 done", "worker-12 done"),
    ] {
        assert_eq!(message_template(a), message_template(b), "{a:?} vs {b:?}");
        assert_eq!(
            fingerprint("svc", &message_template(a)),
            fingerprint("svc", &message_template(b))
        );
    }
}

#[test]
fn different_messages_do_not_share_a_template() {
    for (a, b) in [
        ("disk full", "disk ok"),
        ("connection refused", "connection reset"),
        ("timeout after 31 ms", "timeout after 31 s"),
        ("user not found", "User not found"),
        ("deadbeef", "cafebabe"),
        ("error: a", "error:  a"),
        ("payment failed for order 1", "payment failed for user 1"),
        ("can't connect", "can connect"),
    ] {
        assert_ne!(message_template(a), message_template(b), "{a:?} vs {b:?}");
        assert_ne!(
            fingerprint("svc", &message_template(a)),
            fingerprint("svc", &message_template(b))
        );
    }
}

/// Pieces that make random input reach every rule, including multi-byte characters.
const PIECES: &[&str] = &[
    "1",
    "42",
    "-",
    ".",
    ":",
    "::",
    "\"",
    "'",
    "\\",
    "0x",
    "a",
    "f",
    "e",
    "T",
    "Z",
    "+",
    "@",
    "_",
    " ",
    "\n",
    "é",
    "温",
    "😀",
    "€",
    "2026-11-25",
    "12:00:00",
    "10.0.0.1",
    "fe80",
    "abc",
    ".io",
];

/// For any input: no panic, the cap holds, no digit survives, and a message with nothing to mask
/// comes back unchanged.
#[test]
fn template_never_panics_and_keeps_its_promises() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for round in 0..5_000 {
        let len = if round % 50 == 0 { 400 } else { rng.below(24) };
        let mut message = String::new();
        for _ in 0..len {
            if rng.below(4) == 0 {
                // Any character, multi-byte ones included.
                message.extend(char::from_u32(rng.below(0x1_0000) as u32));
            } else {
                message.push_str(PIECES[rng.below(PIECES.len())]);
            }
        }
        let template = message_template(&message);
        assert!(template.len() <= TEMPLATE_MAX_BYTES, "{message:?}");
        assert!(
            !template.bytes().any(|b| b.is_ascii_digit()),
            "{message:?} gave {template:?}"
        );
        let maskable = |c: char| c.is_ascii_digit() || "\"'@-".contains(c);
        if !message.contains(maskable) && message.len() <= TEMPLATE_MAX_BYTES {
            assert_eq!(template, message);
        }
        let _ = fingerprint("svc", &template);
    }
}
